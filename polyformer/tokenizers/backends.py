"""The `tokenizers` backends polyformer assembles itself, shared by loading and training.

A `tokenizers.Tokenizer` is a model (WordPiece, BPE) plus a normalizer, a pre-tokenizer, a
post-processor and a decoder. Loading a bare `vocab.txt`, loading GPT-2 `vocab.json` +
`merges.txt`, reading a GGUF vocabulary and training from scratch all need the same few
assemblies, so they live here once:

- `bert_pipeline`: BERT's WordPiece setup (BertNormalizer, BertPreTokenizer, `##` decoder,
  `[CLS] A [SEP] B [SEP]` template with segment ids).
- `byte_level_pipeline`: GPT-2's byte-level BPE setup (ByteLevel pre-tokenizer and decoder).
- `template_processor`: the BOS/EOS template transformers builds for decoder tokenizers.
- `byte_to_unicode`: GPT-2's printable spelling of the 256 byte values.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import Model


@dataclass(frozen=True)
class BertOptions:
    """BERT normalisation switches, as `tokenizer_config.json` names them."""

    lowercase: bool = True
    strip_accents: bool | None = None  # None: strip exactly when lowercasing (BERT's rule)
    handle_chinese_chars: bool = True
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"


def bert_pipeline(model: Model, options: BertOptions = BertOptions()) -> Backend:
    """A WordPiece backend normalised, split, post-processed and decoded the way BERT does."""
    backend = Backend(model)
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=options.handle_chinese_chars,
        strip_accents=options.strip_accents,
        lowercase=options.lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    cls_id = backend.token_to_id(options.cls_token)
    sep_id = backend.token_to_id(options.sep_token)
    if cls_id is not None and sep_id is not None:
        cls, sep = options.cls_token, options.sep_token
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, cls_id), (sep, sep_id)],
        )
    return backend


def byte_level_pipeline(model: Model, split_regex: str | None = None, split_digits: bool = False) -> Backend:
    """A byte-level BPE backend: GPT-2's regex split (or `split_regex`), bytes spelled as printable chars.

    `split_digits` isolates every digit first, as StarCoder / SmolLM tokenizers do.
    """
    backend = Backend(model)
    if split_regex is not None:
        steps = [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    else:
        steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if split_digits:
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    backend.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    backend.decoder = decoders.ByteLevel()
    return backend


def template_processor(
    backend: Backend, bos_token: str | None, eos_token: str | None
) -> processors.TemplateProcessing:
    """`[BOS] $A [EOS]` / `[BOS] $A [EOS] [BOS] $B [EOS]`, each part present only when given."""
    single = " ".join(filter(None, [f"{bos_token}:0" if bos_token else None, "$A:0",
                                    f"{eos_token}:0" if eos_token else None]))
    pair_b = " ".join(filter(None, [f"{bos_token}:1" if bos_token else None, "$B:1",
                                    f"{eos_token}:1" if eos_token else None]))
    specials = [(token, backend.token_to_id(token)) for token in dict.fromkeys([bos_token, eos_token]) if token]
    return processors.TemplateProcessing(single=single, pair=f"{single} {pair_b}", special_tokens=specials)


def add_special_tokens(backend: Backend, tokens: list[str], special: bool = True) -> None:
    """Register `tokens` so they are matched whole in raw text (`special`: dropped by skip-special decode)."""
    added = [AddedToken(token, normalized=False, special=special) for token in tokens]
    if not added:
        return
    if special:
        backend.add_special_tokens(added)
    else:
        backend.add_tokens(added)


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (printable Latin-1 bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping
