"""Position-wise feed-forward networks: plain (GELU / ReLU / SiLU) and gated (SwiGLU / GeGLU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from polyformer.core.linear import Linear, gelu_of

if TYPE_CHECKING:
    from polyformer.config import Activation, ModelConfig

_ACTIVATIONS: dict[Activation, Callable[[torch.Tensor], torch.Tensor]] = {  # one per config.ACTIVATIONS name
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swiglu": F.silu,
    "geglu": F.gelu,
}
_GELU_APPROXIMATION = {"gelu": "none", "gelu_new": "tanh"}


def activation(name: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise function for an activation name of config.ACTIVATIONS."""
    return _ACTIVATIONS[name]


class MLP(nn.Module):
    """hidden → intermediate → hidden; gated variants fuse gate and up projections in one matmul."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gated = config.gated_mlp
        self.act = activation(config.activation)
        self.gelu = _GELU_APPROXIMATION.get(config.activation) if not self.gated else None  # fused into `up` when set
        width = config.ffn_size
        self.up = Linear(config.hidden_size, 2 * width if self.gated else width, bias=config.mlp_bias)
        self.down = Linear(width, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)  # the first half gates the second
            return self.down(self.act(gate) * up)
        if self.gelu is not None:
            return self.down(gelu_of(self.up, x, self.gelu))  # fused into the product where the layer allows
        return self.down(self.act(self.up(x)))
