"""`SentenceEncoder`: texts → fixed-size vectors, the sentence-transformers pipeline on polyformer.

Transformer → Pooling → Normalize, as in Sentence-BERT: the model's last hidden states are pooled
over the real (unpadded) tokens with `polyformer.core.pooling.pool` and, by default, scaled to
unit length so that a dot product is a cosine similarity.

Any polyformer model can encode: a sentence-transformers folder brings its own pooling, maximum
length and normalisation; a plain Hugging Face folder defaults to mean pooling; a decoder (GPT,
Llama, a GGUF file) defaults to last-token pooling, the token that has seen the whole text.

Batching is what makes encoding fast on a CPU: all texts are tokenized in one call (the Rust
tokenizer runs in parallel), sorted by token count so every batch pads only to the length of its
own longest text, run under `torch.inference_mode`, and put back in input order. A batch holds
as many texts as fit a budget of padded tokens (`max_tokens`, by default `batch_size` ×
TOKENS_PER_TEXT), so short texts go in large batches and long ones in small batches of the same
cost: fewer, larger matrix products. The model's head (an LM or MLM projection over the
vocabulary) is skipped: only the body's hidden states are used.

Precision: `dtype="bfloat16"` runs the whole model in bfloat16, not only its linear layers, so
the normalisations, activations and attention between them run in bfloat16 too (README,
embeddings, has the measurements); "float16" is for GPUs; "int8" converts the linear layers with
`polyformer.precision.apply_precision` (weight-only int8). Pooling always runs in float32 and
vectors are returned as float32.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from polyformer.core.pooling import POOLING_MODES, pool
from polyformer.data.collators import pad_batch
from polyformer.errors import ConfigError, DataError
from polyformer.io.hf import load_hf
from polyformer.io.loader import load as load_model
from polyformer.io.sentence_transformers import is_sentence_transformers_folder, read_folder, write_folder
from polyformer.locations import resolve
from polyformer.runtime import DTYPES, DTypeName, dtype_named, resolve_device
from polyformer.tokenizers import Tokenizer, load_tokenizer

if TYPE_CHECKING:
    from polyformer.models import Headless, PolyformerModel

logger = logging.getLogger(__name__)

ConvertTo = Literal["numpy", "torch"]
_NO_LIMIT = 1_000_000  # tokenizers report "no maximum" as a huge number
PROGRESS_MIN_TEXTS = 1000  # with show_progress=None, a bar appears (on a terminal) from this many texts
TOKENS_PER_TEXT = 128  # default token budget per batch: batch_size texts of this length
INT8_GROUP_SIZE = 128  # int8 weights share a scale per this many columns (closer to float32 than a scale per row)


@dataclass
class SentenceEncoder:
    """A model, its tokenizer and how to turn token states into one vector per text."""

    model: PolyformerModel
    tokenizer: Tokenizer
    pooling: str = "mean"  # one of polyformer.core.pooling.POOLING_MODES
    normalize_module: bool = True  # whether the saved pipeline ends with a Normalize module
    max_seq_length: int | None = None  # tokens per text (specials included); longer texts are truncated
    do_lower_case: bool = False
    last_truncated: int = field(default=0, init=False)  # texts truncated by the latest encode()
    dtype: DTypeName = field(default="float32", init=False)  # the precision set by to(), a runtime.DTYPES name

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ConfigError(f"pooling={self.pooling!r} is not one of {', '.join(POOLING_MODES)}")
        self.max_seq_length = _length_limit(self.model, self.tokenizer, self.max_seq_length)
        self.model.eval()

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path_or_name: str | Path,
        *,
        pooling: str | None = None,
        max_seq_length: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> SentenceEncoder:
        """An encoder from a sentence-transformers folder, any model folder / GGUF file, a catalog name or a hub id.

        `pooling` and `max_seq_length` override what the folder says (or the defaults: mean pooling
        for encoders, last-token pooling for decoders). `device` and `dtype` are passed to `to()`.
        """
        path = resolve(path_or_name)
        if path.is_dir() and is_sentence_transformers_folder(path):
            folder = read_folder(path)
            encoder = cls(
                model=load_hf(folder.transformer),  # a Transformer module is always in HF layout
                tokenizer=load_tokenizer(folder.transformer),
                pooling=pooling or folder.pooling,
                normalize_module=folder.normalize,
                max_seq_length=max_seq_length or folder.max_seq_length,
                do_lower_case=folder.do_lower_case,
            )
        else:
            model = load_model(path, dtype="float32")  # a GGUF file dequantized: encoders can be trained
            default = "last" if model.config.arch == "decoder" else "mean"
            encoder = cls(model, load_tokenizer(path), pooling=pooling or default, max_seq_length=max_seq_length)
        return encoder.to(device, dtype)

    def to(self, device: str | torch.device | None = None, dtype: str | None = None) -> SentenceEncoder:
        """Move the model ('auto' picks CUDA when present) and/or set its precision; returns self.

        dtype: "float32"; "bfloat16" (the whole model, CPU or GPU); "float16" (GPU only); "int8"
        (CPU: int8 linear weights with a scale per INT8_GROUP_SIZE columns, `polyformer.precision`,
        computed in bfloat16 like the rest of the model). A reduced precision is not undone:
        load the encoder again for float32.
        """
        if device is not None:
            self.model.to(resolve_device(str(device)))
        if dtype is None or dtype == self.dtype:
            return self
        dtype = dtype_named(dtype)
        if self.dtype != "float32":
            raise ConfigError(f"the encoder already runs in {self.dtype}; load it again to change precision")
        if dtype == "float16" and self.model.device.type != "cuda":
            raise ConfigError("dtype='float16' needs a GPU; on a CPU use float32, bfloat16 or int8")
        if DTYPES[dtype].torch is not None:  # the whole model in that dtype
            self.model.to(DTYPES[dtype].torch)
        else:
            from polyformer.precision import apply_precision

            apply_precision(self.model, dtype, int8_group_size=INT8_GROUP_SIZE)  # from the float32 weights
            self.model.to(torch.bfloat16)  # norms, attention and the casts between layers in bfloat16 too
        self.dtype = dtype
        return self

    @property
    def dimension(self) -> int:
        return self.model.config.hidden_size

    # ---- encoding --------------------------------------------------------------------------
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        normalize: bool = True,
        convert_to: ConvertTo = "numpy",
        show_progress: bool | None = None,
        max_tokens: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Texts → (N, D) float32 embeddings, row i for texts[i].

        A batch holds as many texts as fit `max_tokens` padded tokens (at least one; default
        batch_size × TOKENS_PER_TEXT). Texts longer than `max_seq_length` tokens are truncated; how many
        were is logged as a warning and kept in `last_truncated`. `show_progress=None` shows a bar
        on a terminal from PROGRESS_MIN_TEXTS texts on.
        """
        texts = _checked_texts(texts)
        for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise DataError(f"{name} must be a positive integer, got {value!r}")
        if convert_to not in ("numpy", "torch"):
            raise DataError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        ids = self.token_ids(texts)
        out = torch.empty(len(ids), self.dimension, dtype=torch.float32)
        budget = max_tokens if max_tokens is not None else batch_size * TOKENS_PER_TEXT
        batches = plan_batches([len(row) for row in ids], batch_size, budget)
        with torch.inference_mode():
            for rows in _progress(batches, show_progress, len(texts)):
                input_ids, mask = pad_batch([ids[i] for i in rows], self.pad_id, device=self.model.device)
                vectors = embed(self.model, input_ids, mask, self.pooling, normalize)  # (B, D)
                out[rows] = vectors.float().cpu()
        return out if convert_to == "torch" else out.numpy()

    def token_ids(self, texts: list[str], report_truncation: bool = True) -> list[list[int]]:
        """Token ids per text, truncated to max_seq_length; counts and reports the truncations."""
        if self.do_lower_case:
            texts = [text.lower() for text in texts]
        batch = self.tokenizer(texts, padding=False, truncation=True, max_length=self.max_seq_length, return_tensors=None)
        # a text with no tokens at all (an empty string, for tokenizers that add no specials) is
        # encoded as the lone padding token, so attention always has a key to look at
        ids: list[list[int]] = [row or [self.pad_id] for row in batch["input_ids"]]
        if not report_truncation:
            return ids
        # only texts that filled the limit can have been cut; tokenize those again, untruncated
        at_limit = [texts[i] for i, row in enumerate(ids) if len(row) >= self.max_seq_length]
        full = self.tokenizer(at_limit, padding=False, truncation=False, return_tensors=None)["input_ids"] if at_limit else []
        self.last_truncated = sum(len(row) > self.max_seq_length for row in full)
        if self.last_truncated:
            logger.warning(
                "%d of %d texts were longer than max_seq_length=%d tokens and were truncated",
                self.last_truncated, len(texts), self.max_seq_length,
            )
        return ids

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else 0  # padded positions are masked out; any valid id works

    # ---- saving ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write a sentence-transformers folder (HF-layout model, tokenizer, pooling, normalize)."""
        return write_folder(
            directory, self.model, self.tokenizer, self.pooling,
            normalize=self.normalize_module, max_seq_length=self.max_seq_length, do_lower_case=self.do_lower_case,
        )

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(arch={self.model.config.arch!r}, dimension={self.dimension}, pooling={self.pooling!r}, "
            f"max_seq_length={self.max_seq_length}, normalize_module={self.normalize_module})"
        )


def _checked_texts(texts: Sequence[str]) -> list[str]:
    """A list of str; DataError naming the first item that is not a string."""
    if isinstance(texts, str):
        raise DataError("encode() takes a list of texts; wrap a single text as [text]")
    try:
        items = list(texts)
    except TypeError:
        raise DataError(f"encode() takes a list of texts, got {type(texts).__name__}") from None
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(f"texts[{index}] is {type(item).__name__}, expected str")
    return items


def _length_limit(model: PolyformerModel, tokenizer: Tokenizer, requested: int | None) -> int:
    """Tokens per text: the request, else the tokenizer's limit, never beyond the model's positions."""
    limits = [model.config.max_positions]
    if requested is not None:
        limits.append(requested)
    elif tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
        limits.append(tokenizer.model_max_length)
    limit = min(limits)
    if limit < 1:
        raise ConfigError(f"max_seq_length must be positive, got {limit}")
    return limit


def embed(model: PolyformerModel | Headless, input_ids: torch.Tensor, mask: torch.Tensor, pooling: str,
          normalize: bool = True) -> torch.Tensor:
    """(B, T) ids and mask → (B, D) pooled (and unit-length) sentence vectors, from the hidden states (no head)."""
    states = model.hidden_states(input_ids, attention_mask=mask)
    vectors = pool(states.float(), mask, pooling)  # pooled in float32 at any precision
    return F.normalize(vectors, dim=-1) if normalize else vectors


def plan_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches, longest texts first.

    Each batch holds `batch_size` indices, or with `max_tokens` as many as keep
    rows × (longest length in the batch) within the budget (at least one).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if max_tokens is None:
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        longest = max(1, lengths[order[start]])  # sorted: the first row is the longest of its batch
        rows = max(1, max_tokens // longest)
        batches.append(order[start:start + rows])
        start += rows
    return batches


def _progress(batches: list[list[int]], show: bool | None, texts: int) -> Iterable[list[int]]:
    if show is None:
        show = len(batches) > 1 and texts >= PROGRESS_MIN_TEXTS and sys.stderr.isatty()
    if not show:
        return batches
    from rich.progress import track

    return track(batches, description="Encoding", transient=True)


__all__ = ["SentenceEncoder", "embed", "plan_batches"]
