"""Block-quantized weights kept quantized in memory: GGUF's Q4_0, Q4_1 and Q8_0 run as they are.

A GGUF file stores most weights in blocks of 32 values along the input dimension, each block
with its own float16 scale d (and, for Q4_1, an offset m):

- Q4_0: w = d * (q - 8), q in 0..15;
- Q4_1: w = d * q + m,   q in 0..15;
- Q8_0: w = d * q,       q in -128..127.

`Int4Linear` multiplies with torch's packed 4-bit CPU kernel (`torch._weight_int4pack_mm_for_cpu`,
group size 32), which computes w = (q - 8) * scale + zero per group, so the three formats map
onto it exactly: Q4_0 is scale d, zero 0; Q4_1 is scale d, zero m + 8d. A Q8_0 block is split into
its high and low nibbles, q = 16 * hi + lo, which are two 4-bit groups (scale 16d, zero 0 for
hi + 8; scale d, zero 8d for lo) laid side by side along the input dimension; the input is
repeated to match, so one product of twice the depth gives d * q exactly. The kernel reads the
codes (half a byte each) and one bfloat16 scale and zero per group: 0.625 bytes per weight, the
size of a Q4_1 file, instead of 4 for float32.

The kernel runs on bfloat16 activations with bfloat16 scales and zeros, so the only rounding
beyond the file's own is that of d and m (float16) to bfloat16, and of the activations to
bfloat16 at each product, as in `polyformer.precision`'s bfloat16 mode. Off the CPU, or where
the kernel is missing, the layer multiplies with its dequantized weight instead.

`QuantizedEmbedding` keeps a quantized token table the same way and dequantizes only the rows
it looks up (exactly, in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GROUP = 32  # values per block in every supported format
KINDS = ("q4_0", "q4_1", "q8_0")
_HAS_INT4_KERNEL = hasattr(torch, "_weight_int4pack_mm_for_cpu") and hasattr(torch, "_convert_weight_to_int4pack_for_cpu")
_PACK_ROWS = 2048  # rows packed at a time (the kernel's layout is blocked by 64 rows), so loading needs little extra memory


@dataclass
class Blocks:
    """One quantized matrix (rows, cols) in PyTorch orientation, blocks of GROUP along cols.

    codes: (rows, cols) uint8 0..15 for the 4-bit kinds, int8 for q8_0;
    scale: (rows, cols / GROUP) float32 (d); offset: the same for q4_1 (m), else None.
    """

    kind: str
    codes: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor | None = None

    def dequantize(self) -> torch.Tensor:
        """The float32 matrix the file describes, (rows, cols)."""
        rows, cols = self.codes.shape
        codes = self.codes.float().view(rows, cols // GROUP, GROUP)  # (rows, groups, GROUP)
        if self.kind == "q4_0":
            codes = codes - 8
        values = codes * self.scale[..., None]
        if self.offset is not None:
            values = values + self.offset[..., None]
        return values.view(rows, cols)


def _int4_groups(blocks: Blocks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes 0..15 (rows, depth), scale and zero (rows, depth / GROUP) for the 4-bit kernel."""
    d = blocks.scale
    if blocks.kind == "q4_0":
        return blocks.codes, d, torch.zeros_like(d)
    if blocks.kind == "q4_1":
        return blocks.codes, d, blocks.offset + 8 * d
    high = (blocks.codes >> 4) + 8  # q = 16 * hi + lo, hi in -8..7 stored as hi + 8 (int8 arithmetic shift)
    low = blocks.codes & 15
    codes = torch.cat([high, low], dim=1)  # (rows, 2 * cols): the input is repeated to match
    return codes, torch.cat([16 * d, d], dim=1), torch.cat([torch.zeros_like(d), 8 * d], dim=1)


def _pack(codes: torch.Tensor) -> torch.Tensor:
    """(rows, depth) codes 0..15 → the kernel's packed (rows, depth / 2) uint8, a block of rows at a time."""
    return torch.cat([torch._convert_weight_to_int4pack_for_cpu(codes[start : start + _PACK_ROWS].int().contiguous(), 1)
                      for start in range(0, codes.shape[0], _PACK_ROWS)])


class Int4Linear(nn.Module):
    """y = x W^T + b with W held as packed 4-bit codes and a bfloat16 scale and zero per 32 values."""

    @staticmethod
    def supports(rows: int, cols: int) -> bool:
        """Whether the kernel takes a (rows, cols) weight: rows a multiple of 16, cols of GROUP."""
        return _HAS_INT4_KERNEL and rows % 16 == 0 and cols % GROUP == 0

    def __init__(self, blocks: Blocks, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if blocks.kind not in KINDS:
            raise ValueError(f"block kind {blocks.kind!r} is not one of {', '.join(KINDS)}")
        self.kind = blocks.kind
        self.out_features, self.in_features = blocks.codes.shape
        self.repeat_input = blocks.kind == "q8_0"
        codes, scale, zero = _int4_groups(blocks)
        self.register_buffer("packed", _pack(codes))  # (out, depth / 2) uint8
        scales_zeros = torch.stack([scale.t(), zero.t()], dim=-1)  # (depth / GROUP, out, 2)
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16).contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    def _codes(self) -> torch.Tensor:
        """The unpacked codes (out, depth) 0..15, read back from the kernel's own layout."""
        depth = self.scales_zeros.shape[0] * GROUP
        eye = torch.eye(depth, dtype=torch.bfloat16)
        ones = torch.ones_like(self.scales_zeros)  # scale 1, zero 1: (q - 8) + 1 = q - 7
        return (torch._weight_int4pack_mm_for_cpu(eye, self.packed.cpu(), GROUP, ones).t() + 7).round()

    def dequantized(self) -> torch.Tensor:
        """The float32 weight (out, in) this layer multiplies with (scales rounded to bfloat16)."""
        codes = self._codes().float()  # (out, depth)
        scale, zero = self.scales_zeros.float().unbind(-1)  # (depth / GROUP, out) each
        groups = codes.view(self.out_features, -1, GROUP)
        weight = ((groups - 8) * scale.t()[..., None] + zero.t()[..., None]).view(self.out_features, -1)
        if self.repeat_input:
            weight = weight[:, : self.in_features] + weight[:, self.in_features :]
        return weight.to(self.packed.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)  # (N, in)
        if x.device.type != "cpu" or not _HAS_INT4_KERNEL:
            out = F.linear(rows, self.dequantized().to(x.dtype))
        else:
            rows = rows.to(torch.bfloat16)
            if self.repeat_input:
                rows = torch.cat([rows, rows], dim=1)  # (N, 2 * in): the high and the low nibbles
            out = torch._weight_int4pack_mm_for_cpu(rows, self.packed, GROUP, self.scales_zeros).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}, bias={self.bias is not None}"


class QuantizedEmbedding(nn.Module):
    """A token table kept block-quantized; looked-up rows are dequantized in float32, exactly."""

    dtype = torch.float32  # what lookups return (the model's activation dtype)

    def __init__(self, blocks: Blocks) -> None:
        super().__init__()
        self.kind = blocks.kind
        self.num_embeddings, self.embedding_dim = blocks.codes.shape
        self.register_buffer("codes", blocks.codes)
        self.register_buffer("scale", blocks.scale.float())
        self.register_buffer("offset", None if blocks.offset is None else blocks.offset.float())

    @property
    def device(self) -> torch.device:
        return self.codes.device

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...) → (..., embedding_dim) float32."""
        rows = Blocks(self.kind, self.codes[ids.reshape(-1)], self.scale[ids.reshape(-1)],
                      None if self.offset is None else self.offset[ids.reshape(-1)])
        return rows.dequantize().view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, kind={self.kind}"


def quantized_layers(model: nn.Module) -> dict[str, int]:
    """How many quantized layers of each block kind a model holds, e.g. {"q4_1": 210, "q8_0": 2}."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, (Int4Linear, QuantizedEmbedding)):
            counts[module.kind] = counts.get(module.kind, 0) + 1
    return counts
