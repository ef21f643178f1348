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

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyformer.config import ModelConfig
from polyformer.errors import CheckpointError, ConfigError, UnknownModelError
from polyformer.gguf_file import GGUFFile, open_gguf_file
from polyformer.io.gguf_blocks import block_kind, quantized_model, raw_rows
from polyformer.io.hf.common import Family, Rule, halves, import_state, load_into, qkv_sizes, rule
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
def open_gguf(path: str | Path) -> GGUFFile:
    """The parsed file (bounds-checked, cached while unchanged; see polyformer/gguf_file.py).

    CheckpointError naming the file when it is missing, truncated or damaged.
    """
    return open_gguf_file(path, CheckpointError)


def _metadata(file: GGUFFile) -> dict[str, Any]:
    return {key: file.value(key) for key in file.keys()}


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
        return torch.from_numpy(np.require(values, np.float32, ["C", "W"]).reshape(shape))
    except (NotImplementedError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path}: cannot dequantize tensor {tensor.name} of type {tensor.tensor_type.name} ({err})"
        ) from None


def _read_tensors(stored: list, path: Path, head_dim: int, keep_blocks: bool = False) -> dict[str, torch.Tensor]:
    """All tensors, with query/key rows back in Llama's rotary layout: dequantized, or with
    `keep_blocks` the Q4_0 / Q4_1 / Q8_0 ones as their rows of block bytes (whole rows move)."""
    tensors: dict[str, torch.Tensor] = {}
    for tensor in stored:
        value = raw_rows(tensor) if keep_blocks and block_kind(tensor) else _dequantize(tensor, path)
        if tensor.name.endswith(_ROTARY_PERMUTED):
            if value.ndim == 0 or value.shape[0] % head_dim or head_dim % 2:
                raise CheckpointError(f"{path}: tensor {tensor.name} of shape {tuple(value.shape)} does not hold "
                                      f"heads of {head_dim} rows; the file is damaged")
            value = unpermute_rotary(value, head_dim)
        tensors[tensor.name] = value
    return tensors


# ---- configuration -----------------------------------------------------------------------------
_REQUIRED = object()


def _number(meta: dict[str, Any], key: str, path: Path, default: Any = _REQUIRED, kind: type = int) -> Any:
    """A numeric metadata value as `kind` (default when absent); CheckpointError when missing or not a number."""
    if key not in meta:
        if default is _REQUIRED:
            raise CheckpointError(f"{path}: GGUF metadata has no {key!r}; the file is incomplete")
        return default
    value = meta[key]
    exact = kind is not int or (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not exact:
        raise CheckpointError(f"{path}: GGUF metadata {key!r} = {str(value)[:40]!r} is not {'an integer' if kind is int else 'a number'}; "
                              "the file is damaged; re-download or re-convert it")
    return kind(value)


def config_from_gguf(meta: dict[str, Any], tensor_names: set[str], path: Path) -> ModelConfig:
    """A Llama-shaped ModelConfig from GGUF metadata (the `llama.*` and `tokenizer.ggml.*` keys)."""
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise UnknownModelError(
            f"{path}: GGUF architecture {str(arch)[:40]!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
        )
    hidden = _number(meta, "llama.embedding_length", path)
    heads = _number(meta, "llama.attention.head_count", path)
    if hidden < 1 or heads < 1:
        raise CheckpointError(f"{path}: GGUF metadata gives {hidden} hidden units in {heads} heads; the file is damaged")
    head_dim = _number(meta, "llama.attention.key_length", path, hidden // heads)
    rotary_dim = _number(meta, "llama.rope.dimension_count", path, head_dim)
    if rotary_dim != head_dim or "llama.rope.scaling.type" in meta or "rope_freqs.weight" in tensor_names:
        raise ConfigError(f"{path}: rotary scaling or partial rotary dimensions are not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if isinstance(tokens, list) and tokens else _number(meta, "llama.vocab_size", path)
    try:
        return ModelConfig(
            arch="decoder", norm="rmsnorm", norm_placement="pre", position="rotary", activation="swiglu",
            attention_bias=False, mlp_bias=False, head="lm", dropout=0.0, attention_dropout=0.0,
            vocab_size=vocab,
            hidden_size=hidden,
            num_layers=_number(meta, "llama.block_count", path),
            num_heads=heads,
            num_kv_heads=_number(meta, "llama.attention.head_count_kv", path, heads),
            head_dim=head_dim if head_dim * heads != hidden else None,
            intermediate_size=_number(meta, "llama.feed_forward_length", path),
            max_positions=_number(meta, "llama.context_length", path, 2048),
            rope_theta=_number(meta, "llama.rope.freq_base", path, 10000.0, float),
            norm_eps=_number(meta, "llama.attention.layer_norm_rms_epsilon", path, kind=float),
            tie_word_embeddings="output.weight" not in tensor_names,
            **{short: _number(meta, key, path, None) for short, key in _TOKEN_ID_KEYS.items() if short != "unk_token_id"},
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _check_size(config: ModelConfig, tensors, path: Path) -> None:
    """Refuse metadata that implies more layers or weights than the file holds (a damaged size must not allocate)."""
    layers = {name.split(".")[1] for name in (tensor.name for tensor in tensors) if name.startswith("blk.")}
    if config.num_layers > len(layers):
        raise CheckpointError(f"{path}: the GGUF metadata describes {config.num_layers} layers but the file holds "
                              f"tensors of {len(layers)}; the file is damaged; re-download or re-convert it")
    with torch.device("meta"):  # sizes without memory
        wanted = PolyformerModel(config).num_parameters()
    stored = sum(int(tensor.n_elements) for tensor in tensors)
    if wanted > stored:
        raise CheckpointError(f"{path}: the GGUF metadata describes a model of {wanted:,} weights but the file holds "
                              f"{stored:,}; the file is damaged; re-download or re-convert it")


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


def _import(config: ModelConfig, tensors: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Our state dict from the file's tensors; CheckpointError when their shapes do not fit together."""
    try:
        return import_state(FAMILY, config, tensors, str(path))
    except RuntimeError as err:  # torch.cat of pieces whose shapes do not fit together
        raise CheckpointError(f"{path}: tensor shapes do not fit the GGUF metadata ({err}); the file is damaged") from None


def load_gguf(path: str | Path, dtype: str | None = None) -> PolyformerModel:
    """A PolyformerModel (decoder + LM head) in eval mode from a llama-architecture GGUF file.

    dtype None (or "native") keeps Q4_0 / Q4_1 / Q8_0 weights quantized in memory and multiplies
    them with packed 4-bit CPU kernels (see `polyformer.io.gguf_blocks`); "float32" dequantizes
    every tensor; "bfloat16" / "int8" dequantize, then convert as `polyformer.precision` does.
    """
    path = Path(path)
    file = open_gguf(path)
    config = config_from_gguf(_metadata(file), {tensor.name for tensor in file.tensors}, path)
    _check_size(config, file.tensors, path)
    native = dtype in (None, "native")
    state = _import(config, _read_tensors(file.tensors, path, config.dim_head, keep_blocks=native), path)
    if native:
        return quantized_model(config, state, path)
    from polyformer.precision import apply_precision, parse_precision

    precision = parse_precision(dtype)
    model = PolyformerModel(config)
    load_into(model, state, set(), str(path))
    return apply_precision(model.eval(), precision)


__all__ = ["FAMILY", "config_from_gguf", "gguf_metadata", "load_gguf", "open_gguf", "unpermute_rotary"]
