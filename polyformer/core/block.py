"""The one Transformer block: self-attention [+ cross-attention] + MLP, each a residual sublayer.

Pre-norm (GPT-2, Llama): x + f(norm(x)). Post-norm (BERT, the original Transformer, Marian):
norm(x + f(x)). The same class is the encoder layer, the decoder layer and the GPT block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from polyformer.core.attention import Attention, Mask
from polyformer.core.mlp import MLP
from polyformer.core.norms import make_norm

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.core.cache import KVCache


class Block(nn.Module):
    def __init__(self, config: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.attn = Attention(config)
        self.attn_norm = make_norm(config)
        self.cross_attn = Attention(config, cross=True) if cross else None
        self.cross_norm = make_norm(config) if cross else None
        self.mlp = MLP(config)
        self.mlp_norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def _residual(self, x: torch.Tensor, norm: nn.Module, sublayer_out) -> torch.Tensor:
        """Add a sublayer's output to the stream; post-norm normalises the sum."""
        if self.training and self.dropout.p > 0:  # at inference dropout is the identity: no call per sublayer
            sublayer_out = self.dropout(sublayer_out)
        x = x + sublayer_out
        return x if self.pre_norm else norm(x)

    def _input(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(x) if self.pre_norm else x

    def forward(
        self,
        x: torch.Tensor,
        mask: Mask,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        memory: torch.Tensor | None = None,
        memory_mask: Mask | None = None,
    ) -> torch.Tensor:
        """x: (B, T, hidden) → (B, T, hidden)."""
        h = self.attn(self._input(x, self.attn_norm), mask, rotary, cache, layer)
        x = self._residual(x, self.attn_norm, h)
        if self.cross_attn is not None:
            h = self.cross_attn(self._input(x, self.cross_norm), memory_mask or Mask(), None, cache, layer, memory)
            x = self._residual(x, self.cross_norm, h)
        h = self.mlp(self._input(x, self.mlp_norm))
        return self._residual(x, self.mlp_norm, h)
