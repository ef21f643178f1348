"""Task heads that sit on a body's hidden states.

MLM (BERT's transform + tied vocabulary decoder), NSP, the LM head (tied or untied, optional
bias), sequence classification (pooled), token classification, extractive-QA spans and BERT's
pooler. Each is a small module; `build_head` picks the one a config names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from polyformer.core.linear import Linear
from polyformer.core.mlp import activation
from polyformer.core.norms import make_norm
from polyformer.core.pooling import pool

if TYPE_CHECKING:
    from polyformer.config import ModelConfig


class Pooler(nn.Module):
    """BERT's pooler: dense + tanh over the first ([CLS]) token."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MLMHead(nn.Module):
    """Transform (dense, activation, norm) then the vocabulary projection, usually tied."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.activation)
        self.norm = make_norm(config)
        self.proj = Linear(config.hidden_size, config.vocab_size, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.act(self.dense(hidden))))


class LMHead(nn.Module):
    """Next-token logits: a projection onto the vocabulary (tied to the embeddings or not)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.proj = Linear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


class Classifier(nn.Module):
    """dropout + linear; applied to a pooled vector or to every token."""

    def __init__(self, config: ModelConfig, num_outputs: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.dropout)
        self.proj = Linear(config.hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(hidden))


def build_head(config: ModelConfig) -> nn.Module | None:
    """The main head for config.head (NSP, the second pretraining head, is built separately)."""
    if config.head in ("mlm", "pretraining"):
        return MLMHead(config)
    if config.head == "lm":
        return LMHead(config)
    if config.head in ("sequence-classification", "token-classification"):
        return Classifier(config, config.num_labels)
    if config.head == "question-answering":
        return Classifier(config, 2)
    return None


def pooled_for_classification(
    config: ModelConfig, hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooled: torch.Tensor | None
) -> torch.Tensor:
    """The sequence vector a classifier reads: BERT's pooler output, else config.classifier_pooling."""
    if pooled is not None and config.classifier_pooling == "cls":
        return pooled
    return pool(hidden, attention_mask, config.classifier_pooling)
