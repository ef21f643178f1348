"""SmolLM2-135M prefill (one full forward) on CPU: polyformer vs transformers on the same GGUF.

Both models are built from the one Q4_1 GGUF file, dequantized to float32 (polyformer with
`load_gguf`, transformers with `from_pretrained(dir, gguf_file=name)`), and run the same random
token batches; the result reports milliseconds and tokens/s per shape, the ratio, and the largest
logit difference as a check that both computed the same thing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import partial

import torch

from polyformer.bench.timing import log, peak_rss_mb, time_alternating

MODEL = "SmolLM2-135M-Instruct"


@dataclass
class ForwardSettings:
    shapes: list[tuple[int, int]] = field(default_factory=lambda: [(1, 128), (8, 64), (1, 512)])
    repeats: int = 7


def _forward(model, ids: torch.Tensor, outputs: dict[str, torch.Tensor], name: str) -> None:
    with torch.inference_mode():
        outputs[name] = model(ids).logits  # (B, T, V)


def run(settings: ForwardSettings | None = None) -> dict:
    """Time both models on each (batch, length); returns a JSON-ready record."""
    settings = settings or ForwardSettings()
    if importlib.util.find_spec("accelerate") is None:
        return {"skipped": "transformers reads GGUF files only with accelerate installed (pip install accelerate)"}
    from transformers import AutoModelForCausalLM

    from polyformer.data import catalog
    from polyformer.io.gguf import load_gguf

    path = catalog.fetch(MODEL)
    ours = load_gguf(path)
    theirs = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch, length in settings.shapes:
        ids = torch.randint(0, ours.config.vocab_size, (batch, length), generator=generator)
        outputs: dict[str, torch.Tensor] = {}
        log(f"prefill: batch {batch} x {length} tokens, {settings.repeats} repeats")
        timings = time_alternating(
            {name: partial(_forward, model, ids, outputs, name) for name, model in (("polyformer", ours), ("transformers", theirs))},
            settings.repeats,
        )
        rows.append({
            "batch": batch,
            "length": length,
            "ms": {name: timing.median_s * 1000 for name, timing in timings.items()},
            "tokens_per_s": {name: batch * length / timing.median_s for name, timing in timings.items()},
            "ratio": timings["transformers"].median_s / timings["polyformer"].median_s,
            "ratio_best": timings["transformers"].best_s / timings["polyformer"].best_s,
            "max_logit_diff": (outputs["polyformer"] - outputs["transformers"]).abs().max().item(),
            "timings": {name: timing.as_dict() for name, timing in timings.items()},
        })
    return {"work": f"{MODEL} prefill from the Q4_1 GGUF, fp32", "shapes": rows, "peak_rss_mb": peak_rss_mb()}
