"""GGUF models with their block-quantized weights kept as they are (Q4_0, Q4_1, Q8_0).

`load_gguf(path)` keeps the blocks by default (`polyformer.io.gguf` reads them as raw rows and
hands the state dict to `quantized_model`): every linear layer whose GGUF
tensor is Q4_0 / Q4_1 / Q8_0 becomes a `polyformer.quantized.Int4Linear`, a quantized token
table a `QuantizedEmbedding` (a tied LM head gets its own packed copy), and everything else
(norms, float tensors, other block types) is dequantized to float32 as usual.

The raw blocks travel through the same name rules as float tensors (`import_state`): each tensor
is its rows of block bytes, (rows, bytes per row) uint8, so fused projections (q/k/v, gate/up)
are concatenated rows and the rotary row permutation applies unchanged. The kind of a fused
tensor follows from its bytes per row. The model is built on the meta device and only its
unquantized tensors are materialised, so loading never holds a float32 copy of the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from polyformer.core.positions import Rotary
from polyformer.errors import CheckpointError
from polyformer.models import PolyformerModel
from polyformer.quantized import GROUP, Blocks, Int4Linear, QuantizedEmbedding

if TYPE_CHECKING:
    from polyformer.config import ModelConfig

_BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34}  # fp16 d [+ fp16 m] + the codes of 32 values
_TYPE_KINDS = {"Q4_0": "q4_0", "Q4_1": "q4_1", "Q8_0": "q8_0"}


def block_kind(tensor) -> str | None:
    """"q4_0" / "q4_1" / "q8_0" for a GGUF tensor kept quantized, None for one to dequantize."""
    return _TYPE_KINDS.get(tensor.tensor_type.name)


def raw_rows(tensor) -> torch.Tensor:
    """A quantized GGUF tensor's bytes as (rows, bytes per row) uint8, in PyTorch's row order."""
    data = np.array(tensor.data, dtype=np.uint8)  # a copy: the memory map stays read-only
    return torch.from_numpy(data.reshape(int(np.prod(tensor.shape[1:])), -1))


def _half(raw: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 at byte `start` of every block, as float32 (rows, blocks)."""
    return raw[..., start : start + 2].contiguous().view(torch.float16)[..., 0].float()


def decode_blocks(raw: torch.Tensor, cols: int) -> Blocks:
    """(rows, bytes per row) block bytes of a matrix with `cols` columns → its `Blocks`."""
    groups = cols // GROUP
    per_block = raw.shape[1] // groups if groups and raw.shape[1] % groups == 0 else 0
    kind = next((k for k, size in _BLOCK_BYTES.items() if size == per_block), None)
    if kind is None:
        raise CheckpointError(f"{raw.shape[1]} bytes per row do not hold {cols} values in Q4_0, Q4_1 or Q8_0 blocks")
    blocks = raw.view(raw.shape[0], groups, per_block)  # (rows, groups, bytes per block)
    if kind == "q8_0":
        codes = blocks[..., 2:].contiguous().view(torch.int8)
    else:
        nibbles = blocks[..., 4:] if kind == "q4_1" else blocks[..., 2:]  # 16 bytes: values j and j + 16
        codes = torch.cat([nibbles & 15, nibbles >> 4], dim=-1)
    offset = _half(blocks, 2) if kind == "q4_1" else None
    return Blocks(kind, codes.reshape(raw.shape[0], cols), _half(blocks, 0), offset)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _quantized_modules(model: PolyformerModel, state: dict[str, torch.Tensor]) -> None:
    """Replace each module whose weight arrived as raw blocks by its quantized layer."""
    for name in [n for n, value in state.items() if value.dtype == torch.uint8]:
        module_name = name.removesuffix(".weight")
        module = model.get_submodule(module_name)
        blocks = decode_blocks(state.pop(name), module.weight.shape[1])
        if not isinstance(module, nn.Embedding) and not Int4Linear.supports(*module.weight.shape):
            state[name] = blocks.dequantize()  # a shape the kernel does not take: float32 as before
            continue
        if isinstance(module, nn.Embedding):
            _set_module(model, module_name, QuantizedEmbedding(blocks))
            if model.config.tie_word_embeddings and model.vocab_projection() is not None:
                _set_module(model, "head.proj", Int4Linear(blocks))
        else:
            _set_module(model, module_name, Int4Linear(blocks, state.pop(module_name + ".bias", None)))


def _materialise(model: PolyformerModel, state: dict[str, torch.Tensor], path: Path) -> None:
    """Real tensors for what is still on the meta device: the file's float tensors and the rotary table."""
    meta = {name for name, value in model.state_dict(keep_vars=True).items() if value.is_meta}
    for module in model.modules():
        for key, value in module._parameters.items():
            if value is not None and value.is_meta:
                module._parameters[key] = nn.Parameter(torch.empty_like(value, device="cpu"), requires_grad=value.requires_grad)
        for key, value in module._buffers.items():
            if value is not None and value.is_meta:
                module._buffers[key] = torch.empty_like(value, device="cpu")
    tied = {"head.proj.weight"} if model.config.tie_word_embeddings else set()
    missing = sorted(meta - set(state) - tied)
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} weight(s) missing, e.g. {', '.join(missing[:3])}; the file is incomplete")
    model.load_state_dict(state, strict=False)
    if isinstance(model.embeddings.tokens, nn.Embedding):
        model.tie_weights()
    for name, module in list(model.named_modules()):
        if isinstance(module, Rotary):  # a non-persistent buffer: computed, not stored
            _set_module(model, name, Rotary(model.config.dim_head, model.config.rope_theta))


def quantized_model(config: ModelConfig, state: dict[str, torch.Tensor], path: Path) -> PolyformerModel:
    """The model of a GGUF file's state dict whose Q4_0 / Q4_1 / Q8_0 weights are still raw block rows."""
    with torch.device("meta"):
        model = PolyformerModel(config)
    _quantized_modules(model, state)
    _materialise(model, state, path)
    return model.eval()
