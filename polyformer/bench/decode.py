"""Decode speed, measured one way for every contender: time to first token and decode tokens/s.

A contender is a function (prompts (B, T) int64, new tokens n) → the greedy tokens (B, n). Each
contender runs requests of 1 and of n new tokens, once to warm up and then `repeats` times in
alternation with the others (`time_alternating`), so background load hits all alike. From the
medians:

- TTFT: the time of a 1-token request (prefill and one choice);
- decode tokens/s: B * (n - 1) / (time of the n-token request - TTFT); the same from the fastest
  runs is reported too (the least disturbed on a shared machine);
- agreement: the fraction of rows identical to a reference contender's, and the mean share of
  each row before its first difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from polyformer.bench.timing import Timing, time_alternating

Decoder = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class DecodeResult:
    ttft_ms: float
    tokens_per_s: float
    tokens_per_s_best: float
    tokens: torch.Tensor  # (B, n) of the last timed run

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.tokens.shape[0] / self.tokens_per_s


def polyformer_decoder(model) -> Decoder:
    """Greedy decoding with polyformer's generation engine (every row decodes exactly n tokens)."""
    from polyformer.generation import generate, make_config

    def decode(prompts: torch.Tensor, new: int) -> torch.Tensor:
        config = make_config(max_new_tokens=new, min_new_tokens=new)
        return generate(model, prompts, torch.ones_like(prompts), config).sequences

    return decode


def measure_decode(decoders: dict[str, Decoder], prompts: torch.Tensor, new_tokens: int, repeats: int) -> dict[str, DecodeResult]:
    """Time every decoder on the same prompts, in alternation; results per name."""
    outputs: dict[tuple[str, int], torch.Tensor] = {}

    def call(name: str, new: int) -> Callable[[], None]:
        return lambda: outputs.__setitem__((name, new), decoders[name](prompts, new))

    fns = {(name, new): call(name, new) for name in decoders for new in (1, new_tokens)}
    timings: dict = time_alternating(fns, repeats)
    return {name: _result(timings[(name, 1)], timings[(name, new_tokens)], prompts.shape[0], new_tokens,
                          outputs[(name, new_tokens)]) for name in decoders}


def _result(first: Timing, full: Timing, batch: int, new: int, tokens: torch.Tensor) -> DecodeResult:
    steps = batch * (new - 1)
    return DecodeResult(
        ttft_ms=1000 * first.median_s,
        tokens_per_s=steps / max(full.median_s - first.median_s, 1e-9),
        tokens_per_s_best=steps / max(full.best_s - first.best_s, 1e-9),
        tokens=tokens,
    )


def agreement(rows: torch.Tensor, reference: torch.Tensor) -> dict:
    """Identical rows, and the mean fraction of each row before its first difference."""
    same = rows == reference  # (B, T)
    first_diff = torch.where(same.all(-1), same.shape[1], (~same).int().argmax(-1))
    return {"identical_rows": int(same.all(-1).sum()), "rows": rows.shape[0],
            "prefix_fraction": float(first_diff.float().mean() / same.shape[1])}
