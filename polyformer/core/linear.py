"""The core's linear layer: `nn.Linear` with a faster CPU kernel (inference and training).

Linear layers are most of a Transformer's time on a CPU, and PyTorch's CPU `F.linear` calls the
BLAS it was built with (MKL on x86), whose float32 GEMM on some CPUs reaches well under what
oneDNN's kernels do (benchmarks/cpu_linear.py measures both; README, Benchmarks, has figures).

`Linear` keeps the `nn.Linear` interface, parameters and state-dict names, and on CPU routes
float32 and bfloat16 products through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the kernel
`torch.compile` itself emits for CPU linears): in inference directly, in training through a
small autograd function whose backward products (grad_x = g W, grad_W = g^T x) are oneDNN
products too. GPUs, other dtypes and autocast regions (autocast picks the dtype through
`F.linear`) use `F.linear`. Under torch.compile the inference product is an opaque custom op
(`polyformer::onednn_linear`), so a compiled decode step keeps oneDNN's products; compiled
training uses `F.linear`.

The results match `F.linear` to float32 rounding (a different summation order), not bit for bit.
`set_cpu_kernel("blas")` (or the environment variable POLYFORMER_CPU_LINEAR=blas, read at
import) switches the fast path off, e.g. to compare the two.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from polyformer.errors import ConfigError

CPU_KERNELS = ("onednn", "blas")
ENVIRONMENT_VARIABLE = "POLYFORMER_CPU_LINEAR"
_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)
# Training products with fewer input or output features than this run faster through F.linear
# (MKL): at nanoGPT's 128-wide shakespeare-char shapes oneDNN's per-call cost outweighs its
# faster kernel, at GPT-2 / BERT widths (768+) oneDNN wins (benchmarks/cpu_linear.py, cpu_nanogpt.py).
TRAINING_ONEDNN_MIN_FEATURES = 512


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str, algorithm: str) -> torch.Tensor:
    """The oneDNN product x W^T + b, with an optional fused activation (`attr`, e.g. "gelu")."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, attr, [], algorithm)


def _runs_here(dtype: torch.dtype) -> bool:
    """Whether oneDNN's product runs in `dtype` on this CPU, plain and with a packed weight (bfloat16
    needs AVX512 or AVX-NE-CONVERT: without them oneDNN refuses it and `F.linear` computes it)."""
    x, weight = torch.ones(1, 2, dtype=dtype), torch.ones(3, 2, dtype=dtype)
    try:
        plain = _pointwise(x, weight, None, "none", "")
        packed = _pointwise(x, torch.ops.mkldnn._reorder_linear_weight(weight), None, "none", "")
    except RuntimeError:  # e.g. a CPU or build without the kernel
        return False
    expected = torch.full((1, 3), 2.0, dtype=dtype)
    return bool(torch.equal(plain, expected) and torch.equal(packed, expected))


@functools.cache
def _onednn_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes whose products this torch build runs through oneDNN here (probed once)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return ()
    return tuple(dtype for dtype in _ONEDNN_DTYPES if _runs_here(dtype))


def _onednn_available() -> bool:
    """Whether this torch build runs the oneDNN linear op here at all (float32 at least)."""
    return torch.float32 in _onednn_dtypes()


def _kernel_from_environment() -> str:
    name = os.environ.get(ENVIRONMENT_VARIABLE, "onednn").lower()
    if name not in CPU_KERNELS:
        warnings.warn(f"{ENVIRONMENT_VARIABLE}={name!r} is not one of {', '.join(CPU_KERNELS)}; using onednn", stacklevel=2)
        return "onednn"
    return name


_use_onednn = _onednn_available() and _kernel_from_environment() == "onednn"
_FAST_DTYPES = _onednn_dtypes()


def set_cpu_kernel(name: str) -> None:
    """Choose the CPU kernel of every `Linear`: "onednn" (the default where it runs) or "blas" (`F.linear`)."""
    global _use_onednn
    if name not in CPU_KERNELS:
        raise ConfigError(f"CPU linear kernel {name!r} is not one of {', '.join(CPU_KERNELS)}")
    _use_onednn = name == "onednn" and _onednn_available()


def cpu_kernel() -> str:
    """The CPU kernel `Linear` uses now: "onednn" or "blas"."""
    return "onednn" if _use_onednn else "blas"


def _takes_fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _use_onednn
        and x.device.type == "cpu"
        and x.dtype in _FAST_DTYPES
        and weight.dtype == x.dtype
        and type(weight) in (torch.Tensor, nn.Parameter)  # not a tensor subclass (DTensor, fake, ...)
        and not torch.is_autocast_enabled("cpu")  # autocast decides the dtype through F.linear
    )


@torch.library.custom_op("polyformer::onednn_linear", mutates_args=())
def _onednn_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str, algorithm: str) -> torch.Tensor:
    """`_pointwise` as an opaque op for torch.compile (inductor's own lowering of
    `mkldnn._linear_pointwise` needs weights frozen into constants)."""
    return _pointwise(x, weight, bias, attr, algorithm)


@_onednn_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str, algorithm: str) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, attr: str = "none", algorithm: str = "") -> torch.Tensor:
    if torch.compiler.is_compiling():
        return _onednn_op(x, weight, bias, attr, algorithm)
    return _pointwise(x, weight, bias, attr, algorithm)  # eager: no custom-op dispatch overhead


def _records_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _OneDNNLinear(torch.autograd.Function):
    """x W^T + b with oneDNN products forward and backward (the op itself has no derivative)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(rows, weight.t(), None).view(x.shape)  # (N, out) @ (out, in)
        if ctx.needs_input_grad[1]:
            grad_w = _onednn(rows.t(), x.reshape(-1, x.shape[-1]).t(), None)  # (out, N) @ (N, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b


def pack_weight(weight: torch.Tensor) -> torch.Tensor | None:
    """The weight (out, in) in oneDNN's own blocked layout, for inference on CPU; None where oneDNN does not run.

    A plain float32 / bfloat16 weight is reordered into that layout inside every oneDNN call
    whenever its kernel wants another one (bfloat16 on AVX512-BF16 CPUs always does); a packed
    weight is reordered once. `packed.to_dense()` gives the weight back exactly.
    """
    if not (_use_onednn and weight.device.type == "cpu" and weight.dtype in _FAST_DTYPES):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b with W from `pack_weight` (inference on CPU; x in W's dtype)."""
    return _onednn(x, packed, bias)


def training_kernel(weight: torch.Tensor) -> str:
    """The CPU kernel of a product that records gradients: "onednn" for wide layers, else "blas"."""
    return "onednn" if min(weight.shape) >= TRAINING_ONEDNN_MIN_FEATURES else "blas"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b like `F.linear`; oneDNN on CPU for float32 / bfloat16 (inference; training on wide layers)."""
    if not _takes_fast_path(x, weight):
        return F.linear(x, weight, bias)
    if _records_grad(x, weight, bias):
        if torch.compiler.is_compiling() or training_kernel(weight) == "blas":  # compiled: inductor's own products
            return F.linear(x, weight, bias)
        return _OneDNNLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """gelu(x W^T + b); in oneDNN inference the GELU is fused into the product's output."""
    if _takes_fast_path(x, weight) and not _records_grad(x, weight, bias):
        return _onednn(x, weight, bias, "gelu", approximate)
    return F.gelu(linear(x, weight, bias), approximate=approximate)


def gelu_of(layer: nn.Module, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """gelu(layer(x)): one fused product when `layer` is this module's `Linear`; any other layer
    (another implementation of the product) runs its own forward, then the GELU."""
    if type(layer) is Linear:
        return linear_gelu(x, layer.weight, layer.bias, approximate)
    return F.gelu(layer(x), approximate=approximate)


class Linear(nn.Linear):
    """`nn.Linear` whose forward is `linear` (oneDNN products on CPU, `F.linear` elsewhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
