"""`Tokenizer`: the one tokenizer interface of polyformer, over a Hugging Face `tokenizers.Tokenizer`.

Every source (tokenizer.json, vocab.txt, GPT-2 vocab/merges, GGUF, training) ends up as a
`tokenizers.Tokenizer` backend plus a little metadata: which tokens play which special role, the
chat template, the context length and whether the model takes segment ids. This class adds the
batch API models need (padding, truncation, masks, offsets, tensors), input validation and
save/load, and leaves the actual tokenization to the Rust library.

Input rules (see `SPEC.md` §6, "bad input never crashes"):
- items must be `str`; `bytes` are decoded as UTF-8 with invalid sequences replaced by U+FFFD;
  anything else raises TokenizerError naming the index;
- empty strings are fine; surrogate pairs are joined and lone surrogates replaced by U+FFFD;
- `__call__` truncates to `max_length` (default: `model_max_length`) when `truncation=True`, so a
  2M-character input gives a bounded sequence; `encode` never truncates.
- Truncating a single text much longer than needed (over 32 characters per allowed token) first
  tokenises only a prefix cut at whitespace, and keeps that result when the prefix overflowed the
  limit with the kept tokens ending in its first half; otherwise the whole text is tokenised.
  The ids are the same either way; a 2M-character request costs milliseconds instead of seconds.
- Padding uses the pad token, or the eos / unk token when there is none (the attention mask
  hides padded positions, so only the mask matters to a model).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer as Backend

from polyformer.errors import TokenizerError
from polyformer.tokenizers.chat import render_chat
from polyformer.tokenizers.hf_export import VOCAB_FILE, class_config, wordpiece_vocab
from polyformer.tokenizers.pipelines import add_special_tokens
from polyformer.tokenizers.special import SpecialTokens

Padding = bool | Literal["longest", "max_length", "do_not_pad"]
TensorType = Literal["pt", "np"] | None
TextInput = str | bytes

_CLIP_CHARS_PER_TOKEN = 32
_CLIP_MIN_CHARS = 16_384
_WHITESPACE = re.compile(r"\s")

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


class BatchEncoding(dict):
    """Model inputs by name (`input_ids`, `attention_mask`, ...); keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> BatchEncoding:
        """Move every torch tensor to `device` (other values are kept as they are)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


class Tokenizer:
    """Text to ids and back, batched for models. Build with `load_tokenizer`, `train_*` or directly."""

    def __init__(
        self,
        backend: Backend,
        special: SpecialTokens = SpecialTokens(),
        *,
        chat_template: str | None = None,
        model_max_length: int | None = None,
        token_type_ids: bool = False,
    ) -> None:
        add_special_tokens(backend, special.all_tokens())  # as HF does: matched whole, new ids if absent
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.special = special
        self.chat_template = chat_template or None
        self.model_max_length = model_max_length
        self.returns_token_type_ids = token_type_ids
        self._lock = threading.Lock()  # truncation/padding are backend state, set per call

    # ----------------------------------------------------------------- vocabulary & special ids
    @property
    def backend(self) -> Backend:
        """The wrapped `tokenizers.Tokenizer` (do not change its truncation/padding; calls set them)."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def _role_id(self, role: str) -> int | None:
        token = getattr(self.special, role)
        return None if token is None else self._backend.token_to_id(token)

    @property
    def pad_token_id(self) -> int | None:
        return self._role_id("pad")

    @property
    def bos_token_id(self) -> int | None:
        return self._role_id("bos")

    @property
    def eos_token_id(self) -> int | None:
        return self._role_id("eos")

    @property
    def unk_token_id(self) -> int | None:
        return self._role_id("unk")

    @property
    def cls_token_id(self) -> int | None:
        return self._role_id("cls")

    @property
    def sep_token_id(self) -> int | None:
        return self._role_id("sep")

    @property
    def mask_token_id(self) -> int | None:
        return self._role_id("mask")

    @property
    def special_ids(self) -> set[int]:
        """Ids of every special token: named roles and added tokens marked special."""
        added = {i for i, token in self._backend.get_added_tokens_decoder().items() if token.special}
        named = {self._backend.token_to_id(t) for t in self.special.all_tokens()}
        return added | {i for i in named if i is not None}

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """How many ids the post-processor adds around one text (or a pair)."""
        return self._backend.num_special_tokens_to_add(pair)

    # ----------------------------------------------------------------- encoding
    def encode(self, text: TextInput, add_special_tokens: bool = True) -> list[int]:
        """The ids of one text, never truncated."""
        (clean,), _ = _as_texts(text, "text")
        with self._lock:
            self._backend.no_truncation()
            self._backend.no_padding()
            return self._backend.encode(clean, add_special_tokens=add_special_tokens).ids

    def __call__(
        self,
        texts: TextInput | Sequence[TextInput],
        text_pair: TextInput | Sequence[TextInput] | None = None,
        *,
        padding: Padding = True,
        truncation: bool = True,
        max_length: int | None = None,
        padding_side: Literal["right", "left"] = "right",
        add_special_tokens: bool = True,
        return_offsets: bool = False,
        return_tensors: TensorType = "pt",
    ) -> BatchEncoding:
        """Tokenise a text or a batch (with optional second segments) into model inputs.

        Returns `input_ids`, `attention_mask`, `token_type_ids` (for tokenizers with segments) and
        `offset_mapping` (character spans; `(0, 0)` for added specials and padding) when asked.
        A single string gives one row (2-D tensors, or flat lists when `return_tensors=None`).
        """
        batch, single = _as_texts(texts, "texts")
        inputs: list[Any] = batch
        if text_pair is not None:
            pairs, _ = _as_texts(text_pair, "text_pair")
            if len(pairs) != len(batch):
                raise TokenizerError(f"text_pair has {len(pairs)} items but texts has {len(batch)}")
            inputs = list(zip(batch, pairs))
        limit = self._truncation_limit(truncation, max_length)
        pad_to = self._padding_length(padding, max_length, limit)
        if padding_side not in ("right", "left"):
            raise TokenizerError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if return_tensors not in ("pt", "np", None):
            raise TokenizerError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        with self._lock:
            try:
                if limit is not None and text_pair is None:
                    self._configure(limit, None, padding_side)
                    inputs = self._clip_long(batch, limit, add_special_tokens)
                self._configure(limit, pad_to, padding_side)
                encodings = self._backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
            except Exception as error:  # the Rust library raises plain Exception
                raise TokenizerError(f"cannot tokenise the input: {error}") from error
        return self._collect(encodings, single, return_offsets, return_tensors)

    def _clip_long(self, texts: list[str], limit: int, add_special_tokens: bool) -> list[str]:
        """`texts` with very long items replaced by a prefix that truncates to the same ids."""
        budget = max(limit * _CLIP_CHARS_PER_TOKEN, _CLIP_MIN_CHARS)
        long = [index for index, text in enumerate(texts) if len(text) > budget]
        if not long:
            return texts
        prefixes = [_prefix(texts[index], budget) for index in long]
        encodings = self._backend.encode_batch(prefixes, add_special_tokens=add_special_tokens)
        clipped = list(texts)
        for index, prefix, encoding in zip(long, prefixes, encodings):
            kept_end = max((end for _, end in encoding.offsets), default=0)
            if encoding.overflowing and kept_end <= len(prefix) // 2:
                clipped[index] = prefix
        return clipped

    def _truncation_limit(self, truncation: bool, max_length: int | None) -> int | None:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise TokenizerError(f"max_length must be a positive int, got {max_length!r}")
        return (max_length or self.model_max_length) if truncation else None

    def _padding_length(self, padding: Padding, max_length: int | None, limit: int | None) -> int | None:
        """0: pad to the longest in the batch; n: pad to n; None: no padding."""
        if padding in (False, "do_not_pad"):
            return None
        if padding in (True, "longest"):
            return 0
        if padding == "max_length":
            length = max_length or limit or self.model_max_length
            if length is None:
                raise TokenizerError("padding='max_length' needs max_length (the tokenizer has no model_max_length)")
            return length
        raise TokenizerError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")

    def _configure(self, limit: int | None, pad_to: int | None, side: str) -> None:
        if limit is None:
            self._backend.no_truncation()
        else:
            self._backend.enable_truncation(limit, strategy="longest_first")
        if pad_to is None:
            self._backend.no_padding()
        else:
            pad_id, pad_token = self._pad()
            self._backend.enable_padding(direction=side, pad_id=pad_id, pad_token=pad_token, length=pad_to or None)

    def _pad(self) -> tuple[int, str]:
        for role in ("pad", "eos", "unk"):
            token_id = self._role_id(role)
            if token_id is not None:
                return token_id, getattr(self.special, role)
        return 0, self._backend.id_to_token(0) or ""

    def _collect(self, encodings: list[Any], single: bool, offsets: bool, tensors: TensorType) -> BatchEncoding:
        columns: dict[str, list[Any]] = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if self.returns_token_type_ids:
            columns["token_type_ids"] = [e.type_ids for e in encodings]
        if offsets:
            columns["offset_mapping"] = [[tuple(span) for span in e.offsets] for e in encodings]
        if tensors is None:
            return BatchEncoding({k: v[0] if single else v for k, v in columns.items()})
        if len({len(row) for row in columns["input_ids"]}) > 1:
            raise TokenizerError("sequences have different lengths; pass padding=True to return tensors")
        return BatchEncoding({k: _to_tensor(v, tensors) for k, v in columns.items()})

    # ----------------------------------------------------------------- decoding
    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        """Text of `ids` (list, 1-D tensor or array)."""
        return self._backend.decode(_as_ids(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True) -> list[str]:
        """Texts of a batch of id sequences (list of lists, 2-D tensor or array)."""
        rows = sequences.tolist() if hasattr(sequences, "tolist") else list(sequences)
        return self._backend.decode_batch([_as_ids(row) for row in rows], skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | None | list[str | None]:
        if isinstance(ids, (int, np.integer)):
            return self._backend.id_to_token(int(ids))
        return [self._backend.id_to_token(i) for i in _as_ids(ids)]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self._backend.token_to_id(tokens)
        return [self._backend.token_to_id(t) for t in tokens]

    # ----------------------------------------------------------------- chat
    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False, tokenize: bool = False
    ) -> str | list[int]:
        """The prompt the chat template makes of `messages` (its ids when `tokenize`, no extra specials)."""
        if not self.chat_template:
            raise TokenizerError("this tokenizer has no chat template")
        prompt = render_chat(
            self.chat_template, messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.special.bos, eos_token=self.special.eos,
        )
        return self.encode(prompt, add_special_tokens=False) if tokenize else prompt

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `tokenizer.json` and `tokenizer_config.json` (+ `vocab.txt` for WordPiece) that
        polyformer and transformers' `AutoTokenizer` both load; returns the directory."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        backend_json = self._serialised()
        _write_atomic(out / TOKENIZER_FILE, backend_json)
        _write_atomic(out / CONFIG_FILE, json.dumps(self.config(), indent=2, ensure_ascii=False))
        vocab = wordpiece_vocab(json.loads(backend_json))
        if vocab is not None:
            _write_atomic(out / VOCAB_FILE, "".join(f"{token}\n" for token in vocab))
        return out

    def config(self) -> dict[str, Any]:
        """The metadata `save` writes: tokenizer class, special tokens, chat template, context length, input names."""
        names = ["input_ids", "token_type_ids", "attention_mask"] if self.returns_token_type_ids else \
            ["input_ids", "attention_mask"]
        backend = json.loads(self._serialised())
        config: dict[str, Any] = {**class_config(backend, self.special.cls, self.special.sep),
                                  **self.special.to_config(), "model_input_names": names,
                                  "clean_up_tokenization_spaces": False}
        if self.model_max_length is not None:
            config["model_max_length"] = self.model_max_length
        if self.chat_template:
            config["chat_template"] = self.chat_template
        return config

    def _serialised(self) -> str:
        """The backend as `tokenizer.json` text, without per-call truncation or padding."""
        with self._lock:
            self._backend.no_truncation()
            self._backend.no_padding()
            return self._backend.to_str(pretty=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load from anything `load_tokenizer` accepts (a saved directory, HF files, GGUF, catalog name)."""
        from polyformer.tokenizers.load import load_tokenizer

        return load_tokenizer(path)

    def __repr__(self) -> str:
        roles = ", ".join(f"{role}={token!r}" for role, token in self.special.named().items())
        return f"Tokenizer(vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, {roles})"


def _as_texts(texts: Any, what: str) -> tuple[list[str], bool]:
    """`(clean texts, was a single text)`; TokenizerError naming the first bad item."""
    if isinstance(texts, (str, bytes)):
        return [_clean_text(texts, what)], True
    if not isinstance(texts, Sequence):
        raise TokenizerError(f"{what} must be a str or a list of str, got {type(texts).__name__}")
    return [_clean_text(item, f"{what}[{index}]") for index, item in enumerate(texts)], False


def _prefix(text: str, budget: int) -> str:
    """The first `budget` characters of `text`, extended to the next whitespace when one is near."""
    space = _WHITESPACE.search(text, budget, budget + 1024)
    return text[: space.start() if space else budget]


def _clean_text(item: Any, where: str) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    if not isinstance(item, str):
        raise TokenizerError(f"{where} is {type(item).__name__}, expected str")
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:  # surrogates cannot cross into Rust: join pairs, replace lone ones
        item = item.encode("utf-16", errors="surrogatepass").decode("utf-16", errors="replace")
    return item


def _as_ids(ids: Any) -> list[int]:
    values = ids.tolist() if hasattr(ids, "tolist") else ids
    if isinstance(values, int):
        values = [values]
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise TokenizerError("ids must be a sequence of non-negative ints")
    return list(values)


def _to_tensor(rows: list[Any], kind: str) -> Any:
    if kind == "np":
        return np.asarray(rows, dtype=np.int64)
    import torch  # imported on first use: tokenising alone should not pay for torch

    return torch.tensor(rows, dtype=torch.long)


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves half a file."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
