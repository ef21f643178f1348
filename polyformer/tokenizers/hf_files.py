"""Reading Hugging Face tokenizer files: `tokenizer.json`, BERT `vocab.txt`, GPT-2 `vocab.json` + `merges.txt`.

`tokenizer.json` already is a serialised `tokenizers.Tokenizer`; what it lacks (which token is pad,
bos, ...; the context length; the chat template; lowercasing overrides) lives beside it in
`tokenizer_config.json` and `special_tokens_map.json`, read here the way transformers reads them.
The older one-file formats carry only a vocabulary, so the pipeline around it is rebuilt from
`backends.py` with the defaults BERT and GPT-2 were trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as Backend
from tokenizers import normalizers
from tokenizers.models import BPE, WordPiece

from polyformer import runtime
from polyformer.errors import TokenizerError
from polyformer.tokenizers.backends import BertOptions, bert_pipeline, byte_level_pipeline, template_processor
from polyformer.tokenizers.special import BERT_SPECIAL_TOKENS, GPT2_END_OF_TEXT, SpecialTokens, infer_special_tokens
from polyformer.tokenizers.tokenizer import CHAT_TEMPLATE_FILE, CONFIG_FILE, Tokenizer

SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
_UNBOUNDED_LENGTH = 10**12  # transformers writes int(1e30) for "no limit"
_CLASSES_WITHOUT_SEGMENTS = ("DistilBert",)


def read_json(file: Path) -> Any:
    """Parsed JSON; TokenizerError naming the file and the position of a syntax error."""
    return runtime.read_json(file, TokenizerError)


def read_hf_config(directory: Path) -> dict[str, Any]:
    """`tokenizer_config.json` with `special_tokens_map.json` over it; `{}` when neither exists."""
    config: dict[str, Any] = {}
    for name in (CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
        if (directory / name).is_file():
            loaded = read_json(directory / name)
            if not isinstance(loaded, dict):
                raise TokenizerError(f"{directory / name}: expected a JSON object, got {type(loaded).__name__}")
            config.update(loaded)
    return config


def load_tokenizer_json(file: Path) -> Tokenizer:
    """A serialised `tokenizers.Tokenizer` plus the HF configs in its directory."""
    if not isinstance(read_json(file), dict):
        raise TokenizerError(f"{file}: expected a JSON object describing a tokenizer")
    try:
        backend = Backend.from_file(str(file))
    except Exception as error:  # the Rust library raises plain Exception
        raise TokenizerError(
            f"{file}: not a valid tokenizers file ({error}); replace it or re-save it with tokenizer.save()"
        ) from None
    config = read_hf_config(file.parent)
    _apply_lowercase(backend, config)
    special = SpecialTokens.from_config(config)
    if not special.all_tokens():
        special = infer_special_tokens(backend.get_vocab(with_added_tokens=True))
    return Tokenizer(
        backend,
        special,
        chat_template=read_chat_template(file.parent, config),
        model_max_length=model_max_length(config),
        token_type_ids=_has_segments(backend, config),
    )


def load_wordpiece_vocab(file: Path) -> Tokenizer:
    """A BERT tokenizer from `vocab.txt` (one token per line), honouring a `tokenizer_config.json` beside it."""
    config = read_hf_config(file.parent)
    vocab = _read_lines(file)
    special = SpecialTokens.from_config(config).merged_over(
        SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]")
    )
    special = _only_present(special, set(vocab))
    if special.unk is None:
        raise TokenizerError(f"{file}: the vocabulary has no unknown token ({BERT_SPECIAL_TOKENS[1]}); add one")
    ids = {token: index for index, token in enumerate(vocab)}
    model = WordPiece(ids, unk_token=special.unk, max_input_chars_per_word=100)
    options = BertOptions(
        lowercase=bool(config.get("do_lower_case", True)),
        strip_accents=config.get("strip_accents"),
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        cls_token=special.cls or "[CLS]",
        sep_token=special.sep or "[SEP]",
    )
    return Tokenizer(
        bert_pipeline(model, options),
        special,
        chat_template=read_chat_template(file.parent, config),
        model_max_length=model_max_length(config),
        token_type_ids=True,
    )


def load_gpt2_bpe(vocab_file: Path, merges_file: Path) -> Tokenizer:
    """A GPT-2 byte-level BPE tokenizer from `vocab.json` (or `encoder.json`) + `merges.txt` (or `vocab.bpe`)."""
    vocab = read_json(vocab_file)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerError(f"{vocab_file}: expected a JSON object mapping tokens to integer ids")
    merges = [tuple(line.split(" ")) for line in _read_lines(merges_file)
              if line and not line.startswith("#version")]
    bad = next((i for i, merge in enumerate(merges) if len(merge) != 2), None)
    if bad is not None:
        raise TokenizerError(f"{merges_file}: merge {bad + 1} is not two space-separated tokens: {merges[bad]}")
    try:
        model = BPE(vocab, merges, fuse_unk=False)
    except Exception as error:
        raise TokenizerError(f"{merges_file}: merges do not match {vocab_file.name} ({error})") from None
    config = read_hf_config(vocab_file.parent)
    default = SpecialTokens(bos=GPT2_END_OF_TEXT, eos=GPT2_END_OF_TEXT, unk=GPT2_END_OF_TEXT)
    special = _only_present(SpecialTokens.from_config(config).merged_over(default), set(vocab))
    backend = byte_level_pipeline(model)
    backend.post_processor = template_processor(backend, None, None)
    return Tokenizer(
        backend,
        special,
        chat_template=read_chat_template(vocab_file.parent, config),
        model_max_length=model_max_length(config),
    )


def model_max_length(config: dict[str, Any]) -> int | None:
    """The context length a config states; None for absent or transformers' "unbounded" sentinel."""
    value = config.get("model_max_length")
    return value if isinstance(value, int) and 0 < value < _UNBOUNDED_LENGTH else None


def read_chat_template(directory: Path, config: dict[str, Any]) -> str | None:
    """`chat_template` from the config (a string, or the "default" of named templates) or `chat_template.jinja`."""
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if isinstance(template, str) and template:
        return template
    jinja = directory / CHAT_TEMPLATE_FILE
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def _apply_lowercase(backend: Backend, config: dict[str, Any]) -> None:
    """`do_lower_case` in the config overrides a BertNormalizer's setting, as transformers does."""
    lower = config.get("do_lower_case")
    if isinstance(lower, bool) and isinstance(backend.normalizer, normalizers.BertNormalizer):
        backend.normalizer.lowercase = lower


def _has_segments(backend: Backend, config: dict[str, Any]) -> bool:
    """Whether models of this tokenizer take `token_type_ids` (config first, else the post-processor)."""
    names = config.get("model_input_names")
    if isinstance(names, list):
        return "token_type_ids" in names
    if str(config.get("tokenizer_class", "")).startswith(_CLASSES_WITHOUT_SEGMENTS):
        return False
    processor = json.loads(backend.to_str()).get("post_processor") or {}
    return _processor_has_segments(processor)


def _processor_has_segments(processor: dict[str, Any]) -> bool:
    kind = processor.get("type")
    if kind == "BertProcessing":
        return True
    if kind == "Sequence":
        return any(_processor_has_segments(p) for p in processor.get("processors", []))
    if kind == "TemplateProcessing":
        pieces = processor.get("pair", [])
        return any(p.get("SpecialToken", {}).get("type_id", 0) != 0 for p in pieces)
    return False


def _only_present(special: SpecialTokens, vocabulary: set[str]) -> SpecialTokens:
    """Drop roles whose token the vocabulary does not have (a bare vocab file cannot grow new ids)."""
    roles = {role: token for role, token in special.named().items() if token in vocabulary}
    return SpecialTokens(**roles, extra=tuple(t for t in special.extra if t in vocabulary))


def _read_lines(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenizerError(f"{file}: file not found") from None
    except UnicodeDecodeError as error:
        raise TokenizerError(f"{file}: not UTF-8 text ({error.reason}); replace the file") from None
    # split on "\n" only: vocabularies contain tokens such as U+2028 that str.splitlines would cut
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise TokenizerError(f"{file}: empty file")
    return lines
