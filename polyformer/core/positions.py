"""Position encodings: learned tables, fixed sinusoids (Vaswani et al.) and rotary (RoPE).

Learned and sinusoidal encodings are added to the token embeddings; rotary encodings rotate
queries and keys inside attention, so they are computed once per forward by the stack and handed
to every block as a (cos, sin) pair.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim) table: sines in the first half, cosines in the second (Marian layout)."""
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = positions * freqs  # (P, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class Rotary(nn.Module):
    """Rotary position embedding with the half-split ("rotate_half") layout Llama uses."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape (B, 1, T, head_dim) for position_ids (B, T)."""
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, head_dim/2)
        angles = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, T, head_dim)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, head_dim) by the angles in cos/sin (B, 1, T, head_dim)."""
    return x * cos + _rotate_half(x) * sin
