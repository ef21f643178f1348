"""Pool per-token hidden states into one vector per sequence, respecting padding.

Used by classification heads and sentence encoders alike: CLS (first token), mean, max,
last (the last non-padding token, whichever side the padding is on) and weighted-mean
(position-weighted, as in SGPT for decoder models).
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "max", "last", "weighted-mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """hidden (B, T, D), attention_mask (B, T) with 1 = token → (B, D)."""
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    mask = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":  # the first token that is not padding, so left padding works too
        return hidden[rows, attention_mask.bool().int().argmax(dim=1)]
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "weighted-mean":
        weights = mask * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)[None, :, None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    # last: the highest index holding a token, so left and right padding both work
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]  # (1, T)
    last = (positions * attention_mask.bool()).amax(dim=1)  # (B,)
    return hidden[rows, last]
