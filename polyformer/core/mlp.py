"""Position-wise feed-forward networks: plain (GELU / ReLU / SiLU) and gated (SwiGLU / GeGLU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polyformer.config import ModelConfig

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swiglu": F.silu,
    "geglu": F.gelu,
}


def activation(name: str):
    """The elementwise function for an activation name from ModelConfig.ACTIVATIONS."""
    return _ACTIVATIONS[name]


class MLP(nn.Module):
    """hidden → intermediate → hidden; gated variants fuse gate and up projections in one matmul."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gated = config.gated_mlp
        self.act = activation(config.activation)
        width = config.ffn_size
        self.up = nn.Linear(config.hidden_size, 2 * width if self.gated else width, bias=config.mlp_bias)
        self.down = nn.Linear(width, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)  # the first half gates the second
            return self.down(self.act(gate) * up)
        return self.down(self.act(self.up(x)))
