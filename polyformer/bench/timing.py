"""Timing and reporting helpers shared by `benchmarks/` and `polyformer bench`.

Every measurement follows the same protocol: warm up (so one-time costs such as allocator growth
and kernel selection for each shape are paid before the clock starts), then time several repeats
and report the median, which is robust to the odd slow run on a busy machine. Implementations
being compared are timed in alternation, so background load affects both alike.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Timing:
    median_s: float
    best_s: float  # the fastest run: the least disturbed by other work on a shared machine
    runs_s: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def time_alternating(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Warm each function up, then time them round-robin `repeats` times; medians per name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(values), min(values), values) for name, values in runs.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux the kernel's high-water mark of this program (VmHWM, reset when a process execs);
    getrusage's maximum also counts the parent a subprocess was forked from.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return peak_rss_mb()
    return pages * resource.getpagesize() / (1024 * 1024)


def memory_added(build: Callable[[], object]) -> tuple[object, float]:
    """(what `build` returns, the resident MiB it added): load and warm one contender inside `build`.

    A lower bound: memory that earlier work freed is reused without the resident size growing
    (`polyformer.bench.rss` measures one contender in a process of its own).
    """
    before = rss_mb()
    value = build()
    return value, rss_mb() - before


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured markdown table; floats printed with sensible precision."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
