"""Model steps for continuous batching: independent sequences of different lengths decoded together.

`SlotSteps` is the whole model surface a continuous-batching loop needs, kept in this one module:

- `prefill(slot, ids)` runs one sequence as a batch of one — a decoder's prompt, or an
  encoder–decoder's source and then its start token — storing its keys/values in the slot, and
  returns the next-token logits (V,). It is the call `ModelSteps.prefill` makes for a one-row
  request, so a row's first token is the one `generate` gives for that prompt alone.
- `step(slots, tokens)` feeds one token to each busy slot, every row at its own position, in one
  forward (`polyformer.generation.step.decode_step` over a `SlotKVCache`), and returns their
  logits (B, V). The forward covers slots 0..highest busy one: a free slot below it takes a dummy
  token at column 0 and its logits are dropped. On a CPU the linear layers of a decode step read
  every weight once whatever the batch, so such a hole costs next to nothing, and sequences
  never move between slots.
- `acquire()` / `release(slot)` hand out the lowest free slot and take it back.

A row attends to the columns it has written (a key mask built once per step), so what other
rows hold, or whether they are there at all, does not change its result beyond floating-point
rounding of the batched products.
"""

from __future__ import annotations

import torch

from polyformer.core import Mask
from polyformer.core.cache import SlotKVCache
from polyformer.errors import ConfigError
from polyformer.generation.step import decode_step
from polyformer.models import PolyformerModel


class SlotSteps:
    """`slots` sequences of one model, each in its own slot of a `SlotKVCache`."""

    def __init__(self, model: PolyformerModel, slots: int, capacity: int = 64) -> None:
        if model.config.head != "lm" or model.config.arch == "encoder":
            raise ConfigError(f"continuous batching needs a decoder or encoder-decoder with an LM head, "
                              f"got arch={model.config.arch!r} head={model.config.head!r}")
        self.model = model
        self.encoder_decoder = model.config.arch == "encoder-decoder"
        self.device = model.device
        self.cache = SlotKVCache.for_model(model.config, slots, model.dtype, self.device, capacity)
        self.lengths = [0] * slots  # decoder positions cached per slot
        self.source_lengths = [0] * slots
        self.busy = [False] * slots

    @property
    def slots(self) -> int:
        return len(self.busy)

    def acquire(self) -> int | None:
        """The lowest free slot (now busy), or None when all are taken."""
        for slot, taken in enumerate(self.busy):
            if not taken:
                self.busy[slot] = True
                return slot
        return None

    def release(self, slot: int) -> None:
        self.busy[slot] = False
        self.lengths[slot] = self.source_lengths[slot] = 0

    def in_use(self) -> int:
        return sum(self.busy)

    @torch.inference_mode()
    def prefill(self, slot: int, input_ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Next-token logits (V,) after the prompt (or source); with all_logits, every position's (T, V)."""
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)  # (1, T)
        mask = torch.ones_like(ids)
        body, config = self.model.body, self.model.config
        row = self.cache.row(slot)
        if self.encoder_decoder:
            self.cache.reserve(1, ids.shape[1])
            start = config.decoder_start_token_id
            start = config.pad_token_id if start is None else start
            first = torch.full((1, 1), start or 0, dtype=torch.long, device=self.device)
            memory = body.encode(ids, mask)  # (1, S, hidden)
            hidden = body.decode(first, memory, mask, None, row)
            self.lengths[slot], self.source_lengths[slot] = 1, ids.shape[1]
        else:
            self.cache.reserve(ids.shape[1])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (1, T), as ModelSteps counts them
            hidden = body(ids, mask, positions, row)
            self.lengths[slot] = ids.shape[1]
        if all_logits and not self.encoder_decoder:
            return self.model.head(hidden[0])  # (T, V)
        return self.model.head(hidden[:, -1])[0]

    @torch.inference_mode()
    def step(self, slots: list[int], tokens: list[int]) -> torch.Tensor:
        """Feed tokens[i] to slots[i] (all busy, distinct); their next-token logits (len(slots), V)."""
        width = max(slots) + 1
        lengths = torch.zeros(width, dtype=torch.long)
        step_ids = torch.zeros(width, 1, dtype=torch.long)
        sources = torch.ones(width, dtype=torch.long)  # free slots attend to one (dummy) source column
        for slot, token in zip(slots, tokens):
            lengths[slot], step_ids[slot, 0] = self.lengths[slot], token
            sources[slot] = max(1, self.source_lengths[slot])
        key_length = int(lengths.max()) + 1
        self.cache.reserve(key_length)
        columns = torch.arange(key_length)
        allowed = columns[None, :] <= lengths[:, None]  # (W, K): the row's cached columns and this step's
        key_mask = torch.zeros(width, 1, 1, key_length, dtype=self.model.dtype)
        key_mask.masked_fill_(~allowed[:, None, None, :], float("-inf"))  # (W, 1, 1, K) additive
        positions = lengths.to(self.device)
        memory_mask = None
        source_length = 0
        if self.encoder_decoder:
            source_length = int(sources.max())
            memory_mask = Mask((torch.arange(source_length)[None, :] < sources[:, None])[:, None, None, :].to(self.device))
        self.cache.begin_step(positions, key_length, source_length)
        logits = decode_step(self.model, self.cache, step_ids.to(self.device), positions[:, None],
                             key_mask.to(self.device), memory_mask)  # (W, V)
        for slot in slots:
            self.lengths[slot] += 1
        return logits[torch.tensor(slots, device=logits.device)]
