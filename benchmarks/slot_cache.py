"""Why continuous batching uses a slot KV cache: its decode step against gathering per-row caches.

Rows of different lengths can share one decode step in two ways: keep every sequence in its own
slot of pre-allocated buffers and write each row at its own position (`SlotKVCache`, what the
server does), or keep one growing cache per sequence and gather them, padded, into a batch for
every step, then split the new keys back out. Both run the same forward; the second also copies
every cached key and value of every layer each step. On SmolLM2-135M shapes (random weights,
rows of `base_length` + 7·i tokens) this times the slot step and, separately, that gather.

    python -m benchmarks.slot_cache
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class SlotCacheSettings:
    rows: list[int] = field(default_factory=lambda: [1, 4, 16])
    base_length: int = 150
    repeats: int = 5
    threads: int = 2


def _median_ms(fn, repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return 1000 * statistics.median(runs)


def _gather_step(caches: list[list[tuple[torch.Tensor, torch.Tensor]]], layers: int) -> None:
    """Pad and stack every row's keys/values per layer, then append each row's new column back."""
    width = max(cache[0][0].shape[2] for cache in caches) + 1
    for layer in range(layers):
        keys = torch.cat([F.pad(c[layer][0], (0, 0, 0, width - c[layer][0].shape[2])) for c in caches])
        values = torch.cat([F.pad(c[layer][1], (0, 0, 0, width - c[layer][1].shape[2])) for c in caches])
        for row, cache in enumerate(caches):
            new_key, new_value = keys[row: row + 1, :, -1:], values[row: row + 1, :, -1:]
            cache[layer] = (torch.cat([cache[layer][0], new_key], 2)[:, :, :-1],
                            torch.cat([cache[layer][1], new_value], 2)[:, :, :-1])


def run(settings: SlotCacheSettings) -> dict:
    from polyformer.config import preset
    from polyformer.generation.slots import SlotSteps
    from polyformer.models import PolyformerModel

    torch.set_num_threads(settings.threads)
    config = preset("smollm2-135m")
    model = PolyformerModel(config).eval()
    results = []
    for rows in settings.rows:
        lengths = [settings.base_length + 7 * i for i in range(rows)]
        steps = SlotSteps(model, rows, capacity=max(lengths) + 2 * settings.repeats + 4)
        for slot, length in enumerate(lengths):
            steps.acquire()
            steps.lengths[slot] = length
        slots = list(range(rows))
        slot_ms = _median_ms(lambda: steps.step(slots, [5] * rows), settings.repeats)
        shape = (1, config.kv_heads, 0, config.dim_head)
        caches = [[(torch.randn(*shape[:2], n, shape[3]), torch.randn(*shape[:2], n, shape[3]))
                   for _ in range(config.num_layers)] for n in lengths]
        gather_ms = _median_ms(lambda: _gather_step(caches, config.num_layers), settings.repeats)
        results.append({"rows": rows, "slot_step_ms": slot_ms, "gather_only_ms": gather_ms,
                        "gathered_step_ms": slot_ms + gather_ms})
    return {"settings": asdict(settings), "rows": results}


def rows(record: dict) -> list[list[object]]:
    return [[f"decode step, {r['rows']} rows of different lengths (SmolLM2 shapes)",
             f"{r['slot_step_ms']:.1f} ms (slot cache)",
             f"{r['gathered_step_ms']:.1f} ms (per-row caches gathered: +{r['gather_only_ms']:.1f} ms of copies)",
             f"{r['gathered_step_ms'] / r['slot_step_ms']:.2f}x", ""] for r in record["rows"]]


if __name__ == "__main__":
    from polyformer.bench.timing import markdown_table

    print(markdown_table(["work", "polyformer", "alternative", "ratio", "note"], rows(run(SlotCacheSettings()))))
