"""A stack of blocks: the whole encoder or decoder body after the embeddings.

The stack builds the attention masks and rotary angles once and hands them to every block. It
is the one block loop: full forwards, cached decode steps and fixed-shape (compiled) steps all
run through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from polyformer.core.attention import Mask, padding_mask, self_attention_mask
from polyformer.core.block import Block
from polyformer.core.norms import make_norm
from polyformer.core.positions import Rotary

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.core.cache import KVCache


class Stack(nn.Module):
    def __init__(self, config: ModelConfig, num_layers: int, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.causal = causal
        self.blocks = nn.ModuleList(Block(config, cross=cross) for _ in range(num_layers))
        self.final_norm = make_norm(config) if config.final_norm else None
        self.rotary = Rotary(config.dim_head, config.rope_theta) if config.position == "rotary" else None

    def forward(
        self,
        x: torch.Tensor,
        *,
        attention_mask: torch.Tensor | Mask | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        memory: torch.Tensor | None = None,
        memory_attention_mask: torch.Tensor | Mask | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, hidden) embedded inputs → (B, T, hidden) final hidden states.

        attention_mask: (B, past + T) 0/1 over the cached and new positions, or a ready `Mask`
        (a fixed-shape decode step builds one per step); memory_attention_mask likewise (B, S).
        """
        mask = attention_mask
        if not isinstance(mask, Mask):
            past = cache.seq_length() if cache is not None else 0
            mask = self_attention_mask(attention_mask, x.shape[1], past, self.causal, document_ids)
        memory_mask = memory_attention_mask
        if not isinstance(memory_mask, Mask):
            memory_mask = padding_mask(memory_attention_mask) if memory is not None else None
        rotary = self.rotary(position_ids, x.dtype) if self.rotary is not None else None
        for index, block in enumerate(self.blocks):
            x = block(x, mask, rotary, cache, index, memory, memory_mask)
        return self.final_norm(x) if self.final_norm is not None else x
