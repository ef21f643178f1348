"""Key/value caches for incremental decoding.

A cache holds, per layer, the self-attention keys and values seen so far and, for
encoder–decoders, the cross-attention keys and values computed once from the encoder output.
`KVCache` grows by concatenation; a pre-allocated static cache can implement the same three
methods (`update`, `cross`, `seq_length`) without changing any model code.
"""

from __future__ import annotations

import torch


class KVCache:
    """Dynamic cache: self-attention keys/values are (B, kv_heads, T, head_dim) per layer."""

    def __init__(self) -> None:
        self._self: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def seq_length(self) -> int:
        """How many positions are cached (0 before the first forward)."""
        if not self._self:
            return 0
        return next(iter(self._self.values()))[0].shape[2]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values for `layer`; return everything cached for it."""
        if layer in self._self:
            old_key, old_value = self._self[layer]
            key = torch.cat([old_key, key], dim=2)
            value = torch.cat([old_value, value], dim=2)
        self._self[layer] = (key, value)
        return key, value

    def cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._cross.get(layer)

    def set_cross(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self._cross[layer] = (key, value)

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search): every cached tensor is indexed along dim 0."""
        for store in (self._self, self._cross):
            for layer, (key, value) in store.items():
                store[layer] = (key.index_select(0, index), value.index_select(0, index))
