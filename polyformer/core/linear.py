"""The core's linear layer: `nn.Linear` with a faster CPU inference kernel.

Linear layers are most of a Transformer's time on a CPU: about 80% of an encoder forward and
nearly all of a decode step. PyTorch's CPU `F.linear` calls the BLAS it was built with (MKL on
x86), whose float32 GEMM reaches well under half of what oneDNN's kernels do on some CPUs (on an
AVX-512 AMD EPYC: about 180 vs 400 GFLOP/s for encoder shapes, and 14 vs 36 GB/s of weights for a
vocabulary-sized matrix-vector product). `Linear` keeps the `nn.Linear` interface, parameters and
state-dict names, and under inference (no autograd graph to record) on CPU routes float32 and
bfloat16 products through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the kernel
`torch.compile` itself emits for CPU linears). Training, GPUs, other dtypes and code being
compiled use `F.linear`.

The results match `F.linear` to float32 rounding (a different summation order), not bit for bit.
`set_cpu_kernel("blas")` (or the environment variable POLYFORMER_CPU_LINEAR=blas) switches the
fast path off, e.g. to compare the two.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from polyformer.errors import ConfigError

CPU_KERNELS = ("onednn", "blas")
_FAST_DTYPES = (torch.float32, torch.bfloat16)


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _kernel_from_environment() -> str:
    name = os.environ.get("POLYFORMER_CPU_LINEAR", "onednn").lower()
    return name if name in CPU_KERNELS else "onednn"


_use_onednn = _onednn_available() and _kernel_from_environment() == "onednn"


def set_cpu_kernel(name: str) -> None:
    """Choose the CPU inference kernel of every `Linear`: "onednn" (default where built) or "blas"."""
    global _use_onednn
    if name not in CPU_KERNELS:
        raise ConfigError(f"CPU linear kernel {name!r} is not one of {', '.join(CPU_KERNELS)}")
    _use_onednn = name == "onednn" and _onednn_available()


def cpu_kernel() -> str:
    """The CPU inference kernel `Linear` uses now: "onednn" or "blas"."""
    return "onednn" if _use_onednn else "blas"


def _takes_fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _use_onednn
        and x.device.type == "cpu"
        and x.dtype in _FAST_DTYPES
        and weight.dtype == x.dtype
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.compiler.is_compiling()  # inductor lowers F.linear itself (and wants this op's weight prepacked)
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b like `F.linear`; oneDNN on CPU when no gradient is recorded."""
    if _takes_fast_path(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, approximate: str = "none") -> torch.Tensor:
    """gelu(x W^T + b); on the oneDNN path the GELU is fused into the product's output."""
    if _takes_fast_path(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "gelu", [], approximate)
    return F.gelu(F.linear(x, weight, bias), approximate=approximate)


class Linear(nn.Linear):
    """`nn.Linear` whose forward is `linear` (the oneDNN CPU inference path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
