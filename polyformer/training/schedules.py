"""Learning-rate schedules as pure functions of the optimizer step.

A schedule that is a function of the step alone has no state to save: a resumed run recomputes
the same rate for the same step, which is half of what makes resume bit-exact. Steps are
0-based (`step` = number of updates already taken). Warmup is linear, `lr * (step + 1) / warmup`,
so the first update is not wasted at rate 0 and update number `warmup_steps` runs at the peak;
decay then starts from the peak at `step == warmup_steps` and reaches `min_lr` at `max_steps`
(the last update, step `max_steps - 1`, is just above it).

- `constant`: linear warmup, then `lr`.
- `cosine`: linear warmup, then half a cosine from `lr` down to `min_lr` at `max_steps`
  (nanoGPT, GPT-3).
- `linear`: linear warmup, then a straight line to `min_lr` at `max_steps` (BERT fine-tuning).
- `inverse_sqrt`: linear warmup, then `lr * sqrt(warmup / (step + 1))` (the original Transformer).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from polyformer.errors import ConfigError

SCHEDULES = ("cosine", "linear", "inverse_sqrt", "constant")


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Fraction of the peak rate during warmup; 1.0 once it is over."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def decay_progress(step: int, warmup_steps: int, max_steps: int) -> float:
    """0 at the end of warmup, 1 at max_steps (clamped)."""
    return min(1.0, max(0.0, (step - warmup_steps) / max(1, max_steps - warmup_steps)))


def constant(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    return lr * warmup_factor(step, warmup_steps)


def cosine(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    if step < warmup_steps:
        return lr * warmup_factor(step, warmup_steps)
    progress = decay_progress(step, warmup_steps, max_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def linear(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    if step < warmup_steps:
        return lr * warmup_factor(step, warmup_steps)
    return lr + decay_progress(step, warmup_steps, max_steps) * (min_lr - lr)


def inverse_sqrt(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    if step < warmup_steps:
        return lr * warmup_factor(step, warmup_steps)
    return max(min_lr, lr * math.sqrt(max(1, warmup_steps) / (step + 1)))


_BY_NAME: dict[str, Callable[[int, float, float, int, int], float]] = {
    "cosine": cosine,
    "linear": linear,
    "inverse_sqrt": inverse_sqrt,
    "constant": constant,
}


def get_schedule(name: str) -> Callable[[int, float, float, int, int], float]:
    """The schedule function called `name`, or a ConfigError listing the choices."""
    if name not in _BY_NAME:
        raise ConfigError(f"schedule={name!r} is not one of {', '.join(SCHEDULES)}")
    return _BY_NAME[name]


def depends_on_max_steps(name: str) -> bool:
    """Whether changing max_steps changes the rates (so a resumed run must keep it)."""
    return name in ("cosine", "linear")


def learning_rate(name: str, step: int, lr: float, min_lr: float = 0.0, warmup_steps: int = 0, max_steps: int = 1) -> float:
    """The rate of schedule `name` for the update after `step` updates."""
    return get_schedule(name)(step, lr, min_lr, warmup_steps, max_steps)
