"""Input embeddings: tokens [+ learned or sinusoidal positions] [+ token types], scaled, normed.

Rotary models add no position vector here; their positions act inside attention.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from polyformer.core.norms import make_norm
from polyformer.core.positions import sinusoidal_table

if TYPE_CHECKING:
    from polyformer.config import ModelConfig


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.positions = nn.Embedding(config.max_positions, config.hidden_size) if config.position == "learned" else None
        if config.position == "sinusoidal":
            self.register_buffer("sinusoids", sinusoidal_table(config.max_positions, config.hidden_size), persistent=False)
        else:
            self.sinusoids = None
        self.token_types = nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size else None
        self.norm = make_norm(config) if config.embedding_norm else None
        self.scale = math.sqrt(config.hidden_size) if config.scale_embeddings else 1.0
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids, position_ids, token_type_ids: (B, T) → (B, T, hidden)."""
        x = self.tokens(input_ids)
        if self.scale != 1.0:
            x = x * self.scale
        if self.positions is not None:
            x = x + self.positions(position_ids)
        elif self.sinusoids is not None:
            x = x + self.sinusoids[position_ids].to(x.dtype)
        if self.token_types is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_types(types)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(x)
