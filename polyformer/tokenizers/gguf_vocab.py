"""Tokenizers from the vocabulary stored inside a GGUF file (llama.cpp's model format).

A GGUF carries no `tokenizer.json`; it stores the vocabulary as metadata under llama.cpp's keys
(`tokenizer.ggml.model`, `.tokens`, `.token_type`, `.merges`, `.scores`, special ids, the
`add_bos_token` flag and `tokenizer.chat_template`). This module reads those with the `gguf`
package into a `GGUFVocab` record and rebuilds the equivalent `tokenizers.Tokenizer`:

- `gpt2` (byte-level BPE; SmolLM, Llama 3, Qwen 2, ...): tokens are already spelled in GPT-2's
  byte alphabet; the pre-tokenizer split follows `tokenizer.ggml.pre` as llama.cpp does
  (e.g. `smollm`/`starcoder` isolate digits; `llama-bpe` uses the Llama 3 regex).
- `llama` (SentencePiece-style BPE with byte fallback; Llama 1/2, Mistral, TinyLlama): `▁` marks
  spaces, merges come from the file or are derived from the token scores.

Token types decide added tokens: CONTROL tokens become special added tokens (matched whole, skipped
by `decode(skip_special_tokens=True)`), USER_DEFINED ones plain added tokens. BOS is prepended when
the file says so (`llama` files without the flag default to yes, as llama.cpp does).

Results match `transformers.AutoTokenizer.from_pretrained(dir, gguf_file=...)`; where transformers
differs from llama.cpp and the original tokenizer (digit splitting for `smollm`, the file's
`add_space_prefix`), this module follows the original — see the notes at each choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, pre_tokenizers
from tokenizers.models import BPE

from polyformer.errors import TokenizerError
from polyformer.gguf_file import open_gguf_file
from polyformer.tokenizers.pipelines import (
    add_special_tokens,
    byte_level_pipeline,
    byte_to_unicode,
    template_processor,
)
from polyformer.tokenizers.special import SpecialTokens
from polyformer.tokenizers.tokenizer import Tokenizer

# llama.cpp token types (gguf.TokenType), spelled here to keep `gguf` an import of reading only.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# `tokenizer.ggml.pre` values whose llama.cpp split differs from GPT-2's regex.
_SPLIT_REGEX = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx", "pixtral"), _LLAMA3_SPLIT),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT),
}
# llama.cpp isolates every digit (`\p{N}`) before GPT-2's regex for these; transformers does not,
# which changes nothing for vocabularies that were trained this way (they hold no multi-digit tokens).
_DIGIT_SPLIT = frozenset(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"))


@dataclass(frozen=True)
class GGUFVocab:
    """The tokenizer metadata of one GGUF file, under llama.cpp's meaning."""

    model: str  # tokenizer.ggml.model: "gpt2" | "llama" | ...
    pre: str | None  # tokenizer.ggml.pre: the pre-tokenizer flavour of a "gpt2" model
    tokens: tuple[str, ...]
    token_types: tuple[int, ...]
    scores: tuple[float, ...] | None
    merges: tuple[str, ...] | None
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool | None
    add_eos: bool | None
    add_space_prefix: bool | None
    chat_template: str | None
    context_length: int | None
    hf_json: str | None  # tokenizer.huggingface.json, when the converter embedded one

    def token(self, index: int | None) -> str | None:
        return self.tokens[index] if index is not None and 0 <= index < len(self.tokens) else None


def load_gguf_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer a GGUF file describes; TokenizerError naming the file when it cannot be built."""
    return build_gguf_tokenizer(read_gguf_vocab(path), str(path))


def read_gguf_vocab(path: str | os.PathLike[str]) -> GGUFVocab:
    """The tokenizer metadata of a GGUF file (cached per file version: parsing a vocabulary is slow).

    TokenizerError naming the file when it is missing, truncated or damaged.
    """
    file = Path(path)
    stat = _stat(file)
    return _read_cached(str(file.resolve()), stat.st_mtime_ns, stat.st_size)


def build_gguf_tokenizer(vocab: GGUFVocab, source: str = "GGUF") -> Tokenizer:
    """A `Tokenizer` equivalent to the one `vocab` describes."""
    if not vocab.hf_json and vocab.model not in ("gpt2", "llama"):
        raise TokenizerError(
            f"{source}: tokenizer.ggml.model {vocab.model!r} is not supported (supported: 'gpt2', 'llama')"
        )
    try:
        if vocab.hf_json:
            backend = Backend.from_str(vocab.hf_json)
        elif vocab.model == "gpt2":
            backend = _byte_level_backend(vocab, source)
        else:
            backend = _sentencepiece_backend(vocab, source)
    except TokenizerError:
        raise
    except Exception as error:  # the Rust library raises plain Exception (e.g. a merge of unknown tokens)
        raise TokenizerError(f"{source}: the GGUF vocabulary does not make a tokenizer ({error}); "
                             "the file is damaged; re-download or re-convert it") from None
    special = SpecialTokens(
        bos=vocab.token(vocab.bos_id), eos=vocab.token(vocab.eos_id),
        unk=vocab.token(vocab.unk_id), pad=vocab.token(vocab.pad_id),
    )
    if not vocab.hf_json:
        _add_marked_tokens(backend, vocab)
        add_bos = vocab.add_bos if vocab.add_bos is not None else vocab.model == "llama"
        backend.post_processor = template_processor(
            backend, special.bos if add_bos else None, special.eos if vocab.add_eos else None
        )
    return Tokenizer(backend, special, chat_template=vocab.chat_template, model_max_length=vocab.context_length)


def _byte_level_backend(vocab: GGUFVocab, source: str) -> Backend:
    """GPT-2-style BPE; tokens outside the byte alphabet are re-spelled byte by byte (as transformers does)."""
    spelling = byte_to_unicode()
    alphabet = set(spelling.values())
    ids: dict[str, int] = {}
    for index, token in enumerate(vocab.tokens):
        if not set(token) <= alphabet and vocab.token_types[index] not in (CONTROL, USER_DEFINED):
            token = "".join(spelling[byte] for byte in token.encode("utf-8"))
        ids[token] = index
    model = BPE(ids, _merges(vocab, source), fuse_unk=False)
    if vocab.pre in _SPLIT_REGEX:
        return byte_level_pipeline(model, split_regex=_SPLIT_REGEX[vocab.pre])
    return byte_level_pipeline(model, split_digits=vocab.pre in _DIGIT_SPLIT)


def _sentencepiece_backend(vocab: GGUFVocab, source: str) -> Backend:
    """SentencePiece-style BPE: `▁` for spaces, `<0xNN>` byte fallback, optional leading space."""
    ids = {token: index for index, token in enumerate(vocab.tokens)}
    merges = _merges(vocab, source) if vocab.merges else derive_merges(ids, vocab.scores or ())
    model = BPE(ids, merges, unk_token=vocab.token(vocab.unk_id), fuse_unk=True, byte_fallback=True)
    backend = Backend(model)
    # transformers always prepends the space; the file's add_space_prefix is honoured here.
    prefix = vocab.add_space_prefix is not False
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="\u2581", prepend_scheme="first" if prefix else "never", split=False
    )
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    backend.decoder = decoders.Sequence([*steps, decoders.Strip(" ", 1, 0)] if prefix else steps)
    return backend


def derive_merges(ids: dict[str, int], scores: tuple[float, ...] | list[float]) -> list[tuple[str, str]]:
    """Merges a SentencePiece vocabulary implies: every split of a token into two tokens, best score first."""
    if len(scores) < len(ids):
        raise TokenizerError("a 'llama' GGUF vocabulary without merges needs tokenizer.ggml.scores")
    candidates: list[tuple[float, int, int, str, str]] = []
    for token, index in ids.items():
        pairs = [(token[:cut], token[cut:]) for cut in range(1, len(token))
                 if token[:cut] in ids and token[cut:] in ids]
        pairs.sort(key=lambda pair: (ids[pair[0]], ids[pair[1]]))
        candidates.extend((scores[index], len(left), len(right), left, right) for left, right in pairs)
    candidates.sort(key=lambda c: (-c[0], -c[1], -c[2]))  # stable: ties keep vocabulary order
    return [(left, right) for _, _, _, left, right in candidates]


def _merges(vocab: GGUFVocab, source: str) -> list[tuple[str, str]]:
    pairs = [tuple(merge.split(" ")) for merge in vocab.merges or ()]
    bad = next((i for i, pair in enumerate(pairs) if len(pair) != 2), None)
    if bad is not None:
        raise TokenizerError(f"{source}: tokenizer.ggml.merges[{bad}] is not two space-separated tokens")
    if not pairs and vocab.model == "gpt2":
        raise TokenizerError(f"{source}: a 'gpt2' vocabulary needs tokenizer.ggml.merges")
    return pairs  # type: ignore[return-value]


def _add_marked_tokens(backend: Backend, vocab: GGUFVocab) -> None:
    """CONTROL tokens become special added tokens, USER_DEFINED ones plain added tokens."""
    vocabulary = backend.get_vocab()
    by_type = {CONTROL: [], USER_DEFINED: []}  # type: dict[int, list[str]]
    for token, kind in zip(vocab.tokens, vocab.token_types):
        if kind in by_type and token in vocabulary:
            by_type[kind].append(token)
    add_special_tokens(backend, by_type[CONTROL], special=True)
    add_special_tokens(backend, by_type[USER_DEFINED], special=False)


def _stat(file: Path) -> os.stat_result:
    if not file.is_file():
        raise TokenizerError(f"{file}: GGUF file not found")
    return file.stat()


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> GGUFVocab:
    import gguf

    file = open_gguf_file(path, TokenizerError)  # bounds-checked; values decoded and type-checked on request
    keys = gguf.Keys.Tokenizer
    tokens = file.value(keys.LIST, str)
    if not tokens:
        raise TokenizerError(f"{path}: no {keys.LIST} metadata; this GGUF carries no vocabulary")
    architecture = file.value(gguf.Keys.General.ARCHITECTURE, str)
    types = file.value(keys.TOKEN_TYPE, int) or [NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise TokenizerError(f"{path}: {len(tokens)} tokens but {len(types)} token types; the file is corrupt")
    scores = file.value(keys.SCORES, float)
    merges = file.value(keys.MERGES, str)
    return GGUFVocab(
        model=file.value(keys.MODEL, str) or "",
        pre=file.value(keys.PRE, str),
        tokens=tuple(tokens),
        token_types=tuple(types),
        scores=tuple(scores) if scores else None,
        merges=tuple(merges) if merges else None,
        bos_id=file.value(keys.BOS_ID, int),
        eos_id=file.value(keys.EOS_ID, int),
        unk_id=file.value(keys.UNK_ID, int),
        pad_id=file.value(keys.PAD_ID, int),
        add_bos=file.value(keys.ADD_BOS, bool),
        add_eos=file.value(keys.ADD_EOS, bool),
        add_space_prefix=file.value(keys.ADD_PREFIX, bool),
        chat_template=file.value(keys.CHAT_TEMPLATE, str),
        context_length=file.value(gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=architecture), int) if architecture else None,
        hf_json=file.value(keys.HF_JSON, str),
    )
