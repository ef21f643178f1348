"""A nanoGPT-architecture reference model and training step, written from nanoGPT's published description.

nanoGPT (Karpathy's minimal GPT trainer) is not a package, so this is its model as its README and
model.py describe it, not its code: token and learned position embeddings; pre-norm blocks of
LayerNorm (bias=False in the shakespeare-char config), causal self-attention through one fused
q/k/v projection and `scaled_dot_product_attention(is_causal=True)`, an output projection, and a
4x GELU MLP; a final LayerNorm and an LM head tied to the token embedding; no biases; weights
N(0, 0.02) with the residual projections scaled by 1/sqrt(2 * layers). Its optimizer is AdamW
with weight decay on the matrices only (betas 0.9 / 0.99 for shakespeare-char), and train.py
clips gradients to norm 1.0. Nothing here is compiled: nanoGPT's CPU recipe runs with --compile=False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NanoConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128


class SelfAttention(nn.Module):
    def __init__(self, config: NanoConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, config: NanoConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=False)
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    def __init__(self, config: NanoConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, param in self.named_parameters():
            if param.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                nn.init.normal_(param, std=std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def optimizer(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """nanoGPT's configure_optimizers on a CPU: decay on 2-D parameters, the default AdamW implementation."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def train_step(model: nn.Module, logits_of, opt: torch.optim.Optimizer, ids: torch.Tensor, targets: torch.Tensor,
               grad_clip: float = 1.0):
    """One step as a closure (train.py's loop body): forward, cross-entropy, backward, clip, AdamW, zero_grad.

    `logits_of(ids)` is the model's (B, T, V) logits; `opt` holds its parameters.
    """

    def step() -> None:
        loss = F.cross_entropy(logits_of(ids).flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return None  # train.py reads the loss only on logging steps

    return step
