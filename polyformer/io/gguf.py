"""GGUF files (llama.cpp's single-file format) → PolyformerModel.

A GGUF file carries its own configuration as key/value metadata (`llama.embedding_length`, ...)
and its weights as ggml tensors, usually block-quantized (Q4_1, Q8_0, ...). Loading reads the
file with the `gguf` package, builds a `ModelConfig` from the metadata, dequantizes every tensor
to float32 and maps the names onto ours with the same rule engine the Hugging Face families use.

Two layout facts differ from Hugging Face checkpoints:
- ggml lists dimensions fastest-first, so a tensor's shape is the reverse of PyTorch's;
- llama.cpp's converter permutes the rows of the query and key projections so that ggml's
  rotary embedding, which rotates interleaved pairs (x0, x1), (x2, x3), ..., matches Llama's
  half-split layout, which rotates (x_i, x_{i + d/2}). `unpermute_rotary` undoes it.

Only the llama architecture is supported (Llama, SmolLM, Mistral-style models converted as llama).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyformer.config import ModelConfig
from polyformer.errors import CheckpointError, ConfigError, UnknownModelError
from polyformer.io.hf.common import (
    Family,
    Rule,
    halves,
    import_state,
    load_into,
    qkv_sizes,
    rule,
)
from polyformer.models import PolyformerModel

ARCHITECTURES = ("llama",)
_ROTARY_PERMUTED = ("attn_q.weight", "attn_k.weight")
_TOKEN_ID_KEYS = {
    "bos_token_id": "tokenizer.ggml.bos_token_id",
    "eos_token_id": "tokenizer.ggml.eos_token_id",
    "pad_token_id": "tokenizer.ggml.padding_token_id",
    "unk_token_id": "tokenizer.ggml.unknown_token_id",
}


# ---- reading -----------------------------------------------------------------------------------
def open_gguf(path: str | Path):
    """A `gguf.GGUFReader` over the file, shared while the file is unchanged.

    Parsing the metadata of a large vocabulary takes seconds, and the model loader and the
    tokenizer loader both need it, so readers are cached per (path, mtime, size). Tensor data
    stays memory-mapped. CheckpointError naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: GGUF file not found")
    stat = path.stat()
    return _open_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _open_cached(path: str, mtime_ns: int, size: int):
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except Exception as err:  # noqa: BLE001 -- the reader raises ValueError, IndexError, OSError ... on bad bytes
        raise CheckpointError(
            f"{path}: not a readable GGUF file, truncated or corrupted ({type(err).__name__}: {err}); "
            "re-download or re-convert it"
        ) from None


def _field_value(field) -> Any:
    """A metadata field as a Python value (str, int, float, bool or list)."""
    from gguf import GGUFValueType

    value = field.contents()
    if field.types and field.types[0] == GGUFValueType.ARRAY:
        return list(value)
    return value


def _metadata(reader) -> dict[str, Any]:
    return {name: _field_value(field) for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Every metadata key of a GGUF file, plus short names for what other modules need.

    Keys are GGUF's own (`general.architecture`, `llama.context_length`, `tokenizer.ggml.tokens`,
    ...). Added for convenience: `architecture`, `name`, `chat_template`, `context_length` and
    `bos_token_id` / `eos_token_id` / `pad_token_id` / `unk_token_id` (None when absent).
    """
    meta = _metadata(open_gguf(path))
    arch = meta.get("general.architecture")
    meta["architecture"] = arch
    meta["name"] = meta.get("general.name")
    meta["chat_template"] = meta.get("tokenizer.chat_template")
    meta["context_length"] = meta.get(f"{arch}.context_length")
    for short, key in _TOKEN_ID_KEYS.items():
        meta[short] = meta.get(key)
    return meta


def unpermute_rotary(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """ggml's interleaved-rotary row order → Llama's half-split order, per head.

    The converter writes, within each head, row 2j from Llama's row j and row 2j+1 from Llama's
    row j + head_dim/2. Rows (out_features, in) → same shape.
    """
    rows = weight.shape[0]
    pairs = weight.reshape(rows // head_dim, head_dim // 2, 2, *weight.shape[1:])  # (heads, d/2, 2, ...)
    return pairs.transpose(1, 2).reshape(weight.shape).contiguous()  # (heads, 2, d/2, ...) → rows


def _dequantize(tensor, path: Path) -> torch.Tensor:
    """One ggml tensor → float32 torch tensor in PyTorch's dimension order."""
    from gguf.quants import dequantize

    shape = tuple(int(n) for n in reversed(tensor.shape))  # ggml lists the fastest dimension first
    try:
        values = dequantize(np.asarray(tensor.data), tensor.tensor_type)  # plain array: memmap slicing is slow
    except (NotImplementedError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path}: cannot dequantize tensor {tensor.name} of type {tensor.tensor_type.name} ({err})"
        ) from None
    return torch.from_numpy(np.require(values, np.float32, ["C", "W"]).reshape(shape))


def _read_tensors(reader, path: Path, head_dim: int) -> dict[str, torch.Tensor]:
    """All tensors, dequantized, with query/key rows back in Llama's rotary layout."""
    tensors: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        value = _dequantize(tensor, path)
        if tensor.name.endswith(_ROTARY_PERMUTED):
            value = unpermute_rotary(value, head_dim)
        tensors[tensor.name] = value
    return tensors


# ---- configuration -----------------------------------------------------------------------------
def _require(meta: dict[str, Any], key: str, path: Path) -> Any:
    if key not in meta:
        raise CheckpointError(f"{path}: GGUF metadata has no {key!r}; the file is incomplete")
    return meta[key]


def config_from_gguf(meta: dict[str, Any], tensor_names: set[str], path: Path) -> ModelConfig:
    """A Llama-shaped ModelConfig from GGUF metadata (the `llama.*` and `tokenizer.ggml.*` keys)."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise UnknownModelError(
            f"{path}: GGUF architecture {arch!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
        )
    hidden = int(_require(meta, "llama.embedding_length", path))
    heads = int(_require(meta, "llama.attention.head_count", path))
    head_dim = int(meta.get("llama.attention.key_length", hidden // heads))
    rotary_dim = int(meta.get("llama.rope.dimension_count", head_dim))
    if rotary_dim != head_dim or "llama.rope.scaling.type" in meta or "rope_freqs.weight" in tensor_names:
        raise ConfigError(f"{path}: rotary scaling or partial rotary dimensions are not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens else int(_require(meta, "llama.vocab_size", path))
    try:
        return ModelConfig(
            arch="decoder", norm="rmsnorm", norm_placement="pre", position="rotary", activation="swiglu",
            attention_bias=False, mlp_bias=False, head="lm", dropout=0.0, attention_dropout=0.0,
            vocab_size=vocab,
            hidden_size=hidden,
            num_layers=int(_require(meta, "llama.block_count", path)),
            num_heads=heads,
            num_kv_heads=int(meta.get("llama.attention.head_count_kv", heads)),
            head_dim=head_dim if head_dim * heads != hidden else None,
            intermediate_size=int(_require(meta, "llama.feed_forward_length", path)),
            max_positions=int(meta.get("llama.context_length", 2048)),
            rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
            norm_eps=float(_require(meta, "llama.attention.layer_norm_rms_epsilon", path)),
            tie_word_embeddings="output.weight" not in tensor_names,
            **{short: _optional_int(meta.get(key)) for short, key in _TOKEN_ID_KEYS.items() if short != "unk_token_id"},
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# ---- names -------------------------------------------------------------------------------------
def _rules(config: ModelConfig) -> list[Rule]:
    block, layer = "body.stack.blocks.{i}.", "blk.{i}."
    rules = [
        rule("body.embeddings.tokens.weight", "token_embd.weight"),
        rule("body.stack.final_norm.weight", "output_norm.weight"),
        rule(block + "attn.qkv.weight", *(layer + f"attn_{p}.weight" for p in "qkv"), layers="encoder", split=qkv_sizes),
        rule(block + "attn.out.weight", layer + "attn_output.weight", layers="encoder"),
        rule(block + "attn_norm.weight", layer + "attn_norm.weight", layers="encoder"),
        rule(block + "mlp.up.weight", layer + "ffn_gate.weight", layer + "ffn_up.weight", layers="encoder", split=halves),
        rule(block + "mlp.down.weight", layer + "ffn_down.weight", layers="encoder"),
        rule(block + "mlp_norm.weight", layer + "ffn_norm.weight", layers="encoder"),
    ]
    if not config.tie_word_embeddings:
        rules.append(rule("head.proj.weight", "output.weight"))
    return rules


def _no_hf_config(_: Any) -> Any:
    raise ConfigError("GGUF models have no Hugging Face config of their own; save them with pf.save(..., format='hf')")


FAMILY = Family(
    name="GGUF llama",
    model_types=ARCHITECTURES,
    config_from_hf=_no_hf_config,
    config_to_hf=_no_hf_config,
    rules=_rules,
)


def load_gguf(path: str | Path, dtype: str | None = None) -> PolyformerModel:
    """A PolyformerModel (decoder + LM head) in eval mode from a llama-architecture GGUF file.

    dtype None (or "native") keeps Q4_0 / Q4_1 / Q8_0 weights quantized in memory and multiplies
    them with packed 4-bit CPU kernels (see `polyformer.io.gguf_blocks`); "float32" dequantizes
    every tensor; "bfloat16" / "int8" dequantize, then convert as `polyformer.precision` does.
    """
    path = Path(path)
    reader = open_gguf(path)
    meta = _metadata(reader)
    config = config_from_gguf(meta, {tensor.name for tensor in reader.tensors}, path)
    if dtype in (None, "native"):
        from polyformer.io.gguf_blocks import load_gguf_quantized

        return load_gguf_quantized(reader, config, path)
    from polyformer.precision import apply_precision, parse_precision

    precision = parse_precision(dtype)
    tensors = _read_tensors(reader, path, config.dim_head)
    state = import_state(FAMILY, config, tensors, str(path))
    model = PolyformerModel(config)
    load_into(model, state, set(), str(path))
    return apply_precision(model.eval(), precision)


__all__ = ["FAMILY", "config_from_gguf", "gguf_metadata", "load_gguf", "open_gguf", "unpermute_rotary"]
