"""Key/value caches for incremental decoding.

A cache holds, per layer, the self-attention keys and values seen so far and, for
encoder–decoders, the cross-attention keys and values computed once from the encoder output.
Every cache implements the same methods (`update`, `cross`, `set_cross`, `seq_length`,
`reorder`), so model code never knows which one it is given:

- `KVCache` grows by concatenation: no memory is reserved up front, every step reallocates.
- `StaticKVCache` pre-allocates (B, kv_heads, max_length, head_dim) buffers per layer and writes
  into them. Used through the model's forward it returns the filled prefix (views, no copies).
  For fixed-shape decode steps (the shapes CUDA graphs need) the caller sets `write_index` to a
  position tensor: `update` then writes there with `index_copy_` and returns the whole buffers,
  and the caller's attention mask hides the slots not written yet.
- `SlotKVCache` holds independent sequences of different lengths, one per slot, for continuous
  batching: sequences join and leave between steps and each row writes at its own position.
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


class SlotKVCache:
    """Per-row caches of different lengths in shared buffers: one slot per sequence, `slots` rows.

    Self-attention keys/values are (slots, kv_heads, capacity, head_dim) per layer, cross-attention
    ones (slots, kv_heads, source capacity, head_dim). Each slot holds one sequence from column 0;
    rows never share positions, so a sequence can join or leave between steps without touching
    the others. Capacity grows (by doubling, copying once) up to `max_length` as longer
    sequences arrive and is then kept for reuse.

    Two ways in, like `StaticKVCache`:
    - `row(slot)`: a cache for a forward over one sequence (a prefill); its keys are copied into
      the slot and returned unchanged, so the forward computes exactly what a fresh `KVCache` gives.
    - `begin_step(positions, key_length, source_length)` then a forward of one token per row
      through `update` / `cross`: row i writes at column positions[i] and attends over the first
      key_length columns (the caller's key mask hides what row i has not written).
    """

    def __init__(self, num_layers: int, slots: int, kv_heads: int, head_dim: int, max_length: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", capacity: int = 64) -> None:
        self.num_layers, self.slots, self.max_length = num_layers, slots, max_length
        self.kv_heads, self.head_dim, self.dtype, self.device = kv_heads, head_dim, dtype, device
        self.capacity = min(capacity, max_length)
        self.keys = self._buffers(self.capacity)
        self.values = self._buffers(self.capacity)
        self.source_capacity = 0
        self.cross_keys: list[torch.Tensor] = []
        self.cross_values: list[torch.Tensor] = []
        self._rows = torch.arange(slots, device=device)
        self._step: tuple[torch.Tensor, int, int] | None = None  # positions (B,), key length, source length

    @classmethod
    def for_model(cls, config, slots: int, dtype: torch.dtype, device: torch.device | str, capacity: int = 64) -> SlotKVCache:
        """A cache for the causal stack of a model config (the decoder of an encoder–decoder)."""
        return cls(config.decoder_layers, slots, config.kv_heads, config.dim_head, config.max_positions, dtype, device,
                   capacity)

    def _buffers(self, length: int) -> list[torch.Tensor]:
        shape = (self.slots, self.kv_heads, length, self.head_dim)
        return [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(self.num_layers)]

    def _grown(self, old: list[torch.Tensor], length: int) -> list[torch.Tensor]:
        new = self._buffers(length)
        for target, source in zip(new, old):
            target[:, :, : source.shape[2]].copy_(source)
        return new

    def reserve(self, length: int, source_length: int = 0) -> None:
        """Make room for `length` positions (and a source of `source_length` tokens) in every slot."""
        if length > self.max_length:
            raise ConfigError(f"the slot KV cache holds {self.max_length} positions; {length} were needed")
        if length > self.capacity:
            capacity = min(self.max_length, max(length, 2 * self.capacity))
            self.keys, self.values = self._grown(self.keys, capacity), self._grown(self.values, capacity)
            self.capacity = capacity
        if source_length > self.source_capacity:
            capacity = max(source_length, 2 * self.source_capacity)
            self.cross_keys, self.cross_values = self._grown(self.cross_keys, capacity), self._grown(self.cross_values, capacity)
            self.source_capacity = capacity

    def row(self, slot: int) -> _SlotRow:
        """The cache one sequence's forward writes through (it starts empty)."""
        return _SlotRow(self, slot)

    # ---- one token per row ------------------------------------------------------------------------
    def begin_step(self, positions: torch.Tensor, key_length: int, source_length: int = 0) -> None:
        """The next forward feeds one token to rows 0..B-1, row i at column positions[i] (B,)."""
        self._step = (positions, key_length, source_length)

    def seq_length(self) -> int:
        return 0 if self._step is None else self._step[1] - 1

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write key/value (B, kv_heads, 1, head_dim) at each row's position; (B, kv_heads, key_length, head_dim) back."""
        positions, key_length, _ = self._step  # type: ignore[misc]
        batch = key.shape[0]
        rows = self._rows[:batch]
        self.keys[layer][rows, :, positions] = key[:, :, 0]  # (B, kv_heads, head_dim) at (row, :, position)
        self.values[layer][rows, :, positions] = value[:, :, 0]
        return self.keys[layer][:batch, :, :key_length], self.values[layer][:batch, :, :key_length]

    def cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.cross_keys or self._step is None:
            return None
        batch, source_length = self._step[0].shape[0], self._step[2]
        return self.cross_keys[layer][:batch, :, :source_length], self.cross_values[layer][:batch, :, :source_length]

    def set_cross(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        raise ConfigError("cross-attention keys are written per slot, through row(slot)")

    def reorder(self, index: torch.Tensor) -> None:
        raise ConfigError("a slot cache does not reorder rows; each sequence keeps its slot")


class _SlotRow:
    """One slot of a SlotKVCache seen as the cache of a batch-of-one forward."""

    def __init__(self, parent: SlotKVCache, slot: int) -> None:
        self.parent, self.slot = parent, slot
        self._cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def seq_length(self) -> int:
        return 0

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = key.shape[2]
        self.parent.keys[layer][self.slot, :, :length].copy_(key[0])
        self.parent.values[layer][self.slot, :, :length].copy_(value[0])
        return key, value

    def cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self._cross.get(layer)

    def set_cross(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        length = key.shape[2]
        self.parent.cross_keys[layer][self.slot, :, :length].copy_(key[0])
        self.parent.cross_values[layer][self.slot, :, :length].copy_(value[0])
        self._cross[layer] = (key, value)
