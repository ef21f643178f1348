"""Key/value caches for incremental decoding.

A cache holds, per layer, the self-attention keys and values seen so far and, for
encoder–decoders, the cross-attention keys and values computed once from the encoder output.
Both caches implement the same methods (`update`, `cross`, `set_cross`, `seq_length`,
`reorder`), so model code never knows which one it is given:

- `KVCache` grows by concatenation: no memory is reserved up front, every step reallocates.
- `StaticKVCache` pre-allocates (B, kv_heads, max_length, head_dim) buffers per layer and writes
  into them. Used through the model's forward it returns the filled prefix (views, no copies).
  For fixed-shape decode steps (the shapes CUDA graphs need) the caller sets `write_index` to a
  position tensor: `update` then writes there with `index_copy_` and returns the whole buffers,
  and the caller's attention mask hides the slots not written yet.
"""

from __future__ import annotations

import torch

from polyformer.errors import ConfigError


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


class StaticKVCache:
    """Pre-allocated cache: `num_layers` pairs of (B, kv_heads, max_length, head_dim) buffers."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        kv_heads: int,
        head_dim: int,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch, kv_heads, max_length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_length = max_length
        self.filled = [0] * num_layers  # positions written per layer (all equal between forwards)
        self.write_index: torch.Tensor | None = None  # (T,) long: fixed-shape mode when set
        self._cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_model(cls, config, batch: int, max_length: int, dtype: torch.dtype, device: torch.device | str) -> StaticKVCache:
        """A cache sized for the causal stack of a model config (the decoder of an encoder–decoder)."""
        return cls(config.decoder_layers, batch, config.kv_heads, config.dim_head, max_length, dtype, device)

    def seq_length(self) -> int:
        return self.filled[0]

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values (B, kv_heads, T, head_dim) for `layer`.

        Returns the filled prefix (B, kv_heads, filled, head_dim) as views, or in fixed-shape mode
        the whole buffers (B, kv_heads, max_length, head_dim).
        """
        keys, values = self.keys[layer], self.values[layer]
        length = key.shape[2]
        if self.write_index is not None:
            keys.index_copy_(2, self.write_index, key)
            values.index_copy_(2, self.write_index, value)
            return keys, values
        start = self.filled[layer]
        end = start + length
        if end > self.max_length:
            raise ConfigError(f"the static KV cache holds {self.max_length} positions; {end} were needed")
        keys[:, :, start:end].copy_(key)
        values[:, :, start:end].copy_(value)
        self.filled[layer] = end
        return keys[:, :, :end], values[:, :, :end]

    def advance(self, length: int = 1) -> None:
        """Count `length` positions written in fixed-shape mode (every layer)."""
        self.filled = [filled + length for filled in self.filled]

    def cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._cross.get(layer)

    def set_cross(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self._cross[layer] = (key, value)

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search) in place, so the buffers keep their addresses."""
        for buffer in (*self.keys, *self.values):
            buffer.copy_(buffer.index_select(0, index))
        for layer, (key, value) in self._cross.items():
            self._cross[layer] = (key.index_select(0, index), value.index_select(0, index))

    def buffers(self) -> list[torch.Tensor]:
        """Every pre-allocated tensor (to mark as static addresses for CUDA graphs)."""
        return [*self.keys, *self.values]
