"""One linear layer on CPU: polyformer's `linear` (oneDNN) vs torch's `F.linear` (its default BLAS).

This is the measurement behind `polyformer.core.linear`: the same product with the same tensors,
timed in alternation (polyformer/bench/timing.py), at the shapes the other benchmarks spend their time
in — MiniLM's encoder products for a 4,096-token batch, SmolLM2-135M's decode-step products at
batch 1 (matrix-vector: bound by weight bytes), its vocabulary projection, and one training
product with its backward. Reported per shape: GFLOP/s, weight GB/s, the ratio, and the largest
difference from `F.linear`.

A decode step reads every weight once from memory, not from cache, and small matrices that stay
in cache time differently (there MKL's matrix-vector product can win by a few microseconds, yet
loses in the model). So products of up to DECODE_ROWS rows cycle through enough distinct copies
of the weight to fill STREAM_BYTES, and the time per product is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from polyformer.bench.timing import Timing, log, time_alternating

REFERENCE = "F.linear"
DECODE_ROWS = 32  # products of up to this many rows stream their weights from memory
STREAM_BYTES = 512 * 2**20  # larger than any CPU's last-level cache

# (label, rows M, in K, out N, training): M x K inputs times an N x K weight
SHAPES: list[tuple[str, int, int, int, bool]] = [
    ("MiniLM qkv, 4,096 tokens", 4096, 384, 1152, False),
    ("MiniLM MLP up, 4,096 tokens", 4096, 384, 1536, False),
    ("MiniLM MLP down, 4,096 tokens", 4096, 1536, 384, False),
    ("SmolLM2 gate/up, decode B1", 1, 576, 3072, False),
    ("SmolLM2 down, decode B1", 1, 1536, 576, False),
    ("SmolLM2 qkv, decode B1", 1, 576, 960, False),
    ("SmolLM2 vocabulary projection, decode B1", 1, 576, 49152, False),
    ("SmolLM2 gate/up, decode B32", 32, 576, 3072, False),
    ("BERT-base MLP up, 1,024 tokens, forward + backward", 1024, 768, 3072, True),
]


@dataclass
class LinearSettings:
    shapes: list[tuple[str, int, int, int, bool]] = field(default_factory=lambda: list(SHAPES))
    repeats: int = 30


def _product(fn: Callable, x: torch.Tensor, ws: list[torch.Tensor], b: torch.Tensor, training: bool) -> Callable[[], object]:
    if not training:
        def infer() -> object:
            with torch.inference_mode():
                for w in ws:
                    fn(x, w, b)
        return infer
    w = ws[0]
    xg, wg, bg = (t.detach().clone().requires_grad_(True) for t in (x, w, b))

    def train() -> object:
        fn(xg, wg, bg).sum().backward()
        xg.grad = wg.grad = bg.grad = None
    return train


def run_shape(label: str, m: int, k: int, n: int, training: bool, repeats: int) -> dict:
    """Time both kernels on one shape; returns a JSON-ready row."""
    from polyformer.core.linear import linear

    generator = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*shape, generator=generator) for shape in ((m, k), (n, k), (n,)))
    copies = -(-STREAM_BYTES // w.nbytes) if m <= DECODE_ROWS and not training else 1
    ws = [w] + [w.clone() for _ in range(copies - 1)]
    fns = {"polyformer": linear, REFERENCE: F.linear}
    timed = time_alternating({name: _product(fn, x, ws, b, training) for name, fn in fns.items()}, repeats, warmup=3)
    timings = {name: Timing(t.median_s / copies, t.best_s / copies, [r / copies for r in t.runs_s]) for name, t in timed.items()}
    with torch.inference_mode():
        diff = (linear(x, w, b) - F.linear(x, w, b)).abs().max().item()
    flops = 2 * m * k * n * (3 if training else 1)
    return {
        "work": label, "m": m, "k": k, "n": n, "training": training, "weight_copies": copies,
        "gflop_per_s": {name: flops / t.median_s / 1e9 for name, t in timings.items()},
        "weight_gb_per_s": {name: 4 * n * k / t.median_s / 1e9 for name, t in timings.items()},
        "ms": {name: t.median_s * 1e3 for name, t in timings.items()},
        "ratio": timings[REFERENCE].median_s / timings["polyformer"].median_s,
        "ratio_best": timings[REFERENCE].best_s / timings["polyformer"].best_s,
        "max_abs_diff": diff,
    }


def run(settings: LinearSettings | None = None) -> dict:
    """Every shape, both kernels; returns a JSON-ready record."""
    from polyformer.core.linear import cpu_kernel

    settings = settings or LinearSettings()
    log(f"linear: {len(settings.shapes)} shapes x {settings.repeats} repeats, polyformer kernel {cpu_kernel()}")
    rows = [run_shape(*shape, repeats=settings.repeats) for shape in settings.shapes]
    return {"kernel": cpu_kernel(), "threads": torch.get_num_threads(), "shapes": rows}
