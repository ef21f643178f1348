"""Reduced-precision weights for inference: one switch over every `nn.Linear` of a model.

Almost all the time of a Transformer's decode step (and most of an encoder's forward) goes into
its linear layers, and at batch 1 those are bound by how many weight bytes cross the memory bus.
`apply_precision(model, precision)` replaces each `nn.Linear` in place, so it works on any model
(decoders, encoders, sentence encoders, heads) without touching model code:

- ``"float32"``: nothing changes (the default; the reference for quality).
- ``"bfloat16"``: `BF16Linear` keeps the weight in bfloat16 and multiplies in bfloat16 (AMX /
  AVX512-BF16 on recent x86 CPUs through oneDNN, see `polyformer.core.linear`; tensor cores on
  GPUs). Inputs are cast to bfloat16 at the layer and outputs back to the input dtype, so norms,
  residuals, softmax and the KV cache stay float32.
- ``"int8"``: `Int8Linear` keeps weight-only int8 values with one scale per output channel
  (symmetric: scale = max |w| / 127 of the row). Products of up to INT8_KERNEL_MAX_ROWS rows
  (decode steps) run torch's int8-weight kernel with bfloat16 activations, reading a quarter of
  the float32 bytes. Larger products (prefill, big batches) use the bf16 matmul on the
  dequantized weight, which the layer keeps once it has been needed: the numbers are the int8
  ones either way, but from then on the layer holds 3 bytes per weight instead of 1.

Embedding tables are left alone (a lookup reads one row). A tied LM head gets its own converted
copy, the embedding table keeps float32. The conversion is one-way: reload to get float32 back.

    from polyformer.precision import apply_precision
    model = apply_precision(pf.load("SmolLM2-135M-Instruct"), "int8")
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from polyformer.core.linear import linear, pack_weight, packed_linear
from polyformer.runtime import WEIGHT_DTYPES, dtype_named

PRECISIONS = WEIGHT_DTYPES  # the runtime.DTYPES names inference weights can take
INT8_KERNEL_MAX_ROWS = 8  # up to this many rows the int8 kernel beats dequantize + bf16 matmul


def parse_precision(name: str) -> str:
    """The canonical precision name for `name` (aliases fp32, bf16 accepted); ConfigError otherwise."""
    return dtype_named(name, PRECISIONS, field="precision", aliases=True)


class BF16Linear(nn.Module):
    """y = x W^T + b with W (and b) stored in bfloat16; x and y keep their own dtype.

    On CPU with oneDNN the weight is held only in oneDNN's packed layout (`pack_weight`), so no
    product reorders it again; `weight` and the state dict give it back as a plain tensor.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().to(torch.bfloat16)
        self.packed = pack_weight(weight)
        self.plain = None if self.packed is not None else weight
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The plain (out, in) bfloat16 weight."""
        return self.plain if self.packed is None else self.packed.to_dense()

    def _save_to_state_dict(self, destination, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (N, in)
        if self.packed is not None and rows.device.type == "cpu":
            out = packed_linear(rows, self.packed, self.bias)
        else:
            out = linear(rows, self.weight.to(rows.device), self.bias)
        return out.to(x.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(nn.Module):
    """y = x (s * Q)^T + b with Q int8 (out, in) and a scale s per output row, or per `group_size`
    columns of each row (finer scales, closer to float; products always on the dequantized weight);
    b kept in float32."""

    def __init__(self, linear: nn.Linear, group_size: int | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size = group_size if group_size and self.in_features % group_size == 0 else None
        groups = self.in_features // (self.group_size or self.in_features)
        weight = linear.weight.detach().float().view(self.out_features, groups, -1)  # (out, groups, columns)
        scale = (weight.abs().amax(dim=-1, keepdim=True) / 127.0).clamp(min=1e-12)  # (out, groups, 1)
        quantized = (weight / scale).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", quantized.view(self.out_features, self.in_features))
        self.register_buffer("scale", scale.squeeze(-1).squeeze(-1).to(torch.bfloat16))  # (out,) or (out, groups)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self._dequantized: torch.Tensor | None = None  # the bf16 weight (packed on CPU), made by the first large product

    def dequantized(self) -> torch.Tensor:
        """The weight the layer computes with, (out, in) bfloat16."""
        scale = self.scale.reshape(self.out_features, -1, 1)  # (out, groups, 1)
        return (self.qweight.view(self.out_features, scale.shape[1], -1).to(torch.bfloat16) * scale).view(self.qweight.shape)

    def _large_product(self, rows: torch.Tensor) -> torch.Tensor:
        if self._dequantized is None or self._dequantized.device != self.qweight.device:
            weight = self.dequantized()
            self._dequantized = pack_weight(weight) if weight.device.type == "cpu" else None
            self._dequantized = weight if self._dequantized is None else self._dequantized
        if self._dequantized.is_mkldnn:
            return packed_linear(rows, self._dequantized)
        return linear(rows, self._dequantized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (N, in)
        small = rows.shape[0] <= INT8_KERNEL_MAX_ROWS and self.group_size is None
        if small and x.device.type == "cpu" and _HAS_INT8_KERNEL:
            out = torch._weight_int8pack_mm(rows, self.qweight, self.scale)
        else:
            out = self._large_product(rows)
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        groups = f", group_size={self.group_size}" if self.group_size else ""
        return f"in_features={self.in_features}, out_features={self.out_features}{groups}, bias={self.bias is not None}"


_HAS_INT8_KERNEL = hasattr(torch, "_weight_int8pack_mm")
_LAYERS = {"bfloat16": BF16Linear, "int8": Int8Linear}


@torch.no_grad()
def apply_precision(model: nn.Module, precision: str, exclude: Iterable[str] = (), int8_group_size: int | None = None) -> nn.Module:
    """Convert every `nn.Linear` of `model` in place (except modules named in `exclude`); returns it.

    `exclude` holds qualified module names (as in `model.named_modules()`); a name excludes its
    whole subtree. `int8_group_size`: int8 scales per that many input columns instead of per row.
    """
    precision = parse_precision(precision)
    if precision == "float32":
        return model
    layer = _LAYERS[precision] if precision != "int8" else lambda child: Int8Linear(child, int8_group_size)
    skipped = tuple(exclude)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            qualified = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(qualified == s or qualified.startswith(s + ".") for s in skipped):
                setattr(module, child_name, layer(child))
    return model


def prepare(model: nn.Module, device: torch.device | str, precision: str | torch.dtype | None = None) -> nn.Module:
    """Move `model` to `device` in eval mode and apply `precision`, as inference entry points do.

    On CUDA "bfloat16" casts the whole model (GPU kernels are native bfloat16 and the KV cache
    halves); elsewhere it converts the linear layers only. torch dtypes are accepted as names.
    """
    name = "float32" if precision is None else str(precision).removeprefix("torch.")
    name = parse_precision(name)
    model = model.to(device).eval()
    if name == "bfloat16" and torch.device(device).type == "cuda":
        return model.to(torch.bfloat16)
    return apply_precision(model, name)


def linear_precisions(model: nn.Module) -> dict[str, int]:
    """How many linear layers of each kind a model has, e.g. {"Int8Linear": 211}."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, (nn.Linear, BF16Linear, Int8Linear)):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts
