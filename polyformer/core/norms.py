"""Normalisation layers: LayerNorm (BERT, GPT-2, Marian) and RMSNorm (Llama family)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from polyformer.config import ModelConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back as Llama does."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the same computation without two no-op casts (a decode step has 61 norms)
            return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    """The norm layer the config asks for, over the hidden size."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.hidden_size, config.norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
