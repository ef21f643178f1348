"""Batched decoding of sources into texts for the text-to-text tasks: beam search (or greedy) for both forms.

Sources are encoded by the task's `PairLayout`, sorted by length (so a batch pads little) and
decoded `batch_size` at a time with the token-level `model.generate`: an encoder–decoder reads
right-padded sources (its encoder positions start at 0 on every row, the padding masked), a
decoder left-padded prompts (positions count real tokens only), so every row decodes as it would
alone. Generation stops at EOS (the layout's end ids) or after `max_new_tokens`; for a decoder
the limit is also what the context leaves after the batch's longest prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from polyformer.generation.text import pad_batch

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tasks.formats import PairLayout


@dataclass(frozen=True)
class DecodeSettings:
    """How to generate: beam width, length penalty, the new-token limit and the batch size."""

    num_beams: int = 4
    length_penalty: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 32


@dataclass(frozen=True)
class Decoded:
    text: str
    token_ids: list[int]
    truncated: bool  # the source was cut to fit the context


def generation_room(layout: PairLayout, model: PolyformerModel, settings: DecodeSettings) -> int:
    """Positions a decoder prompt leaves free for the output (an encoder–decoder needs none)."""
    if model.config.arch == "encoder-decoder":
        return 0
    return max(1, min(settings.max_new_tokens, layout.max_length // 2))


@torch.inference_mode()
def decode(model: PolyformerModel, layout: PairLayout, sources: Sequence[str], settings: DecodeSettings) -> list[Decoded]:
    """The output text of every source, in input order."""
    model.eval()
    encoded = layout.sources(sources, generation_room(layout, model, settings))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].prompt))
    results: list[Decoded | None] = [None] * len(encoded)
    for start in range(0, len(order), settings.batch_size):
        rows = order[start: start + settings.batch_size]
        outputs = _generate(model, layout, [encoded[i].prompt for i in rows], settings)
        for row, ids in zip(rows, outputs):
            results[row] = Decoded(layout.decode(ids), ids, encoded[row].truncated)
    return [r for r in results if r is not None]


def _generate(model: PolyformerModel, layout: PairLayout, prompts: list[list[int]], settings: DecodeSettings) -> list[list[int]]:
    """New token ids (EOS excluded) for one batch of prompts."""
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else layout.eos
    encoder_decoder = model.config.arch == "encoder-decoder"
    ids, mask = pad_batch(prompts, pad, "right" if encoder_decoder else "left", model.device)
    limit = min(settings.max_new_tokens, model.config.max_positions - (1 if encoder_decoder else ids.shape[1]))
    out = model.generate(ids, mask, num_beams=settings.num_beams, length_penalty=settings.length_penalty,
                         max_new_tokens=max(1, limit), eos_token_id=layout.eos_ids)
    ends = set(layout.eos_ids)
    return [[t for t in row[:length] if t not in ends] for row, length in zip(out.sequences.tolist(), out.lengths)]
