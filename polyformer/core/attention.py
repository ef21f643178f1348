"""Multi-head / grouped-query attention through `scaled_dot_product_attention`.

One module serves self-attention (fused q/k/v projection; bidirectional or causal; rotary or
not; cached or not) and cross-attention (queries from the decoder, keys/values from the encoder
output, computed once per sequence when a cache is given). Masks are built once per stack by
`self_attention_mask` / `padding_mask` and shared by every layer.

SDPA is the only path in normal use. Inside `recording_attention(model)` every attention module
of the model takes an explicit path instead, softmax(QKᵀ/√d + mask)·V, which gives the same
output and also the weights, appended per call to the list the context manager yields (the
attention maps of `polyformer attention`; slower, and never used for training or serving).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from polyformer.core.linear import Linear
from polyformer.core.positions import apply_rotary

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.core.cache import KVCache


@dataclass
class Mask:
    """What SDPA needs: an explicit boolean mask (True = may attend) or the causal flag."""

    tensor: torch.Tensor | None = None  # (B, 1, T_query, T_key) bool
    is_causal: bool = False


def padding_mask(attention_mask: torch.Tensor | None) -> Mask:
    """Bidirectional attention that ignores padded keys; attention_mask is (B, S), 1 = token."""
    if attention_mask is None:
        return Mask()
    return Mask(attention_mask.bool()[:, None, None, :])  # (B, 1, 1, S)


def self_attention_mask(
    attention_mask: torch.Tensor | None,
    query_len: int,
    past_len: int,
    causal: bool,
    document_ids: torch.Tensor | None = None,
) -> Mask:
    """The self-attention mask for T=query_len new positions after past_len cached ones.

    attention_mask, when given, covers past and new positions: (B, past_len + query_len).
    document_ids (B, T), when given (packed training blocks, no cache), confines attention to
    positions of the same document.
    Rows that may attend to nothing (left padding under a causal mask) attend everywhere
    instead, so SDPA never produces NaN; those positions are padding and their outputs unused.
    """
    has_padding = attention_mask is not None and not bool(attention_mask.all())
    if document_ids is not None:
        return _document_mask(document_ids, attention_mask if has_padding else None, causal)
    if not causal:
        return padding_mask(attention_mask) if has_padding else Mask()
    if not has_padding:
        if past_len == 0:
            return Mask(is_causal=True)
        if query_len == 1:
            return Mask()
    key_len = past_len + query_len
    device = attention_mask.device if attention_mask is not None else None
    query_pos = torch.arange(past_len, key_len, device=device)[:, None]
    allowed = torch.arange(key_len, device=device)[None, :] <= query_pos  # (T, S)
    allowed = allowed[None, None]  # (1, 1, T, S)
    if has_padding:
        allowed = allowed & attention_mask.bool()[:, None, None, :]  # (B, 1, T, S)
    allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
    return Mask(allowed)


def _document_mask(document_ids: torch.Tensor, attention_mask: torch.Tensor | None, causal: bool) -> Mask:
    """Block-diagonal (and causal) mask: position i attends to j only within its own document."""
    allowed = document_ids[:, :, None] == document_ids[:, None, :]  # (B, T, T)
    if causal:
        length = document_ids.shape[1]
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    allowed = allowed[:, None]  # (B, 1, T, T)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    return Mask(allowed | ~allowed.any(dim=-1, keepdim=True))


@dataclass
class AttentionRecord:
    """The weights of one attention call: which module, and (B, H, T_query, T_key) probabilities."""

    module: "Attention"
    weights: torch.Tensor


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask,
                       dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA written out: q (B, H, T, hd), k/v (B, H_kv, S, hd) → output (B, H, T, hd) and weights (B, H, T, S)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    allowed = mask.tensor
    if mask.is_causal:  # SDPA's is_causal: query i sees keys 0..i
        allowed = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.float().softmax(dim=-1).to(q.dtype)
    return F.dropout(weights, dropout) @ v if dropout else weights @ v, weights


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[list[AttentionRecord]]:
    """Run `model`'s attention modules on the explicit path, recording the weights of every call in order."""
    records: list[AttentionRecord] = []
    modules = [module for module in model.modules() if isinstance(module, Attention)]
    for module in modules:
        module.recorder = records
    try:
        yield records
    finally:
        for module in modules:
            module.recorder = None


class Attention(nn.Module):
    """Self- or cross-attention with `num_kv_heads` key/value heads shared by query groups."""

    recorder: list[AttentionRecord] | None = None  # set by `recording_attention`

    def __init__(self, config: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.kv_heads
        self.head_dim = config.dim_head
        self.cross = cross
        self.dropout = config.attention_dropout
        q_size = self.num_heads * self.head_dim
        kv_size = self.num_kv_heads * self.head_dim
        bias = config.attention_bias
        if cross:
            self.q = Linear(config.hidden_size, q_size, bias=bias)
            self.kv = Linear(config.hidden_size, 2 * kv_size, bias=bias)
        else:
            self.qkv = Linear(config.hidden_size, q_size + 2 * kv_size, bias=bias)
        self.out = Linear(q_size, config.hidden_size, bias=bias)

    def _heads(self, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def _project_self(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kv_size = self.num_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.num_heads * self.head_dim, kv_size, kv_size], dim=-1)
        return self._heads(q, self.num_heads), self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)

    def _project_memory(self, memory: torch.Tensor, cache: KVCache | None, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        cached = cache.cross(layer) if cache is not None else None
        if cached is not None:
            return cached
        k, v = self.kv(memory).chunk(2, dim=-1)
        k, v = self._heads(k, self.num_kv_heads), self._heads(v, self.num_kv_heads)
        if cache is not None:
            cache.set_cross(layer, k, v)
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        mask: Mask,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        memory: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, hidden) → (B, T, hidden). memory: encoder output for cross-attention."""
        if self.cross:
            q = self._heads(self.q(x), self.num_heads)
            k, v = self._project_memory(memory, cache, layer)
        else:
            q, k, v = self._project_self(x)
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
            if cache is not None:
                k, v = cache.update(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        if self.recorder is not None:
            out, weights = explicit_attention(q, k, v, mask, dropout)
            self.recorder.append(AttentionRecord(self, weights.detach()))
        else:
            out = F.scaled_dot_product_attention(
                q, k, v,
                attn_mask=mask.tensor,
                is_causal=mask.is_causal,
                dropout_p=dropout,
                enable_gqa=self.num_kv_heads != self.num_heads,
            )  # (B, H, T, hd)
        batch, _, length, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(batch, length, -1))
