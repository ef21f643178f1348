"""AdamW with weight-decay parameter groups.

Weight decay pulls weights towards zero; that regularises matrices but only hurts biases, norm
gains and embeddings (decaying an embedding row that a rare token seldom updates erases it).
So parameters are split into two groups: matrices of linear layers decay, everything with fewer
than two dimensions (biases, LayerNorm/RMSNorm weights) and every embedding table does not.
Tied weights (an LM head sharing the token embedding) are one parameter and land in the
no-decay group once.

The fused kernel (one call for all parameters instead of about ten small operations per parameter)
is used when every parameter lives on the CPU or on a CUDA device, torch's two fused AdamW
implementations; elsewhere torch picks its default implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@dataclass
class ParamGroups:
    decay: list[nn.Parameter]
    no_decay: list[nn.Parameter]
    decay_names: list[str]
    no_decay_names: list[str]


def _embedding_params(model: nn.Module) -> set[int]:
    """ids of parameters owned by an nn.Embedding anywhere in the model."""
    return {id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters(recurse=False)}


def split_decay(model: nn.Module) -> ParamGroups:
    """Split trainable parameters into decay (matrices) and no-decay (vectors, embeddings)."""
    embeddings = _embedding_params(model)
    groups = ParamGroups([], [], [], [])
    for name, param in model.named_parameters():  # shared parameters are yielded once
        if not param.requires_grad:
            continue
        if param.ndim < 2 or id(param) in embeddings:
            groups.no_decay.append(param)
            groups.no_decay_names.append(name)
        else:
            groups.decay.append(param)
            groups.decay_names.append(name)
    return groups


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over the model's decay / no-decay groups; fused when everything is on the CPU or CUDA."""
    groups = split_decay(model)
    params = groups.decay + groups.no_decay
    devices = {p.device.type for p in params}
    fused = bool(params) and (devices == {"cpu"} or devices == {"cuda"}) and all(p.dtype in _FUSED_DTYPES for p in params)
    return torch.optim.AdamW(
        [
            {"params": groups.decay, "weight_decay": weight_decay},
            {"params": groups.no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=tuple(betas),
        eps=eps,
        fused=fused or None,
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
