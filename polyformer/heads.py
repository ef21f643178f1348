"""Task heads that sit on a body's hidden states.

MLM (BERT's transform + tied vocabulary decoder), NSP, the LM head (tied or untied, optional
bias), sequence classification (pooled), token classification, extractive-QA spans and BERT's
pooler. Each is a small module; `HEAD_KINDS`, the one table of head names, says what each name
builds and how its logits are read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from polyformer.core.linear import Linear
from polyformer.core.mlp import activation
from polyformer.core.norms import make_norm
from polyformer.core.pooling import pool

if TYPE_CHECKING:
    from polyformer.config import HeadName, ModelConfig


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


Output = Literal["tokens", "pooled", "spans"]


@dataclass(frozen=True)
class HeadKind:
    """What a head name means: the module it builds, how its logits are read, what else comes with it."""

    build: Callable[[ModelConfig], nn.Module] | None  # the main head (None: hidden states only)
    output: Output | None = None  # logits per token, from the pooled sequence vector, or start/end spans
    vocabulary: bool = False  # projects onto the vocabulary (`proj`, tied to the embeddings when configured)
    nsp: bool = False  # also BERT's next-sentence classifier on the pooler output


HEAD_KINDS: dict[HeadName, HeadKind] = {
    "none": HeadKind(None),
    "mlm": HeadKind(MLMHead, "tokens", vocabulary=True),
    "pretraining": HeadKind(MLMHead, "tokens", vocabulary=True, nsp=True),
    "lm": HeadKind(LMHead, "tokens", vocabulary=True),
    "sequence-classification": HeadKind(lambda config: Classifier(config, config.num_labels), "pooled"),
    "token-classification": HeadKind(lambda config: Classifier(config, config.num_labels), "tokens"),
    "question-answering": HeadKind(lambda config: Classifier(config, 2), "spans"),  # (B, T, 2) start/end
}
HEAD_PARAMETERS = ("head.", "nsp.")  # state-dict prefixes of the head modules (a new head starts fresh)


def head_kind(config: ModelConfig) -> HeadKind:
    return HEAD_KINDS[config.head]


def build_head(config: ModelConfig) -> nn.Module | None:
    """The main head for config.head (NSP, the second pretraining head, is built separately)."""
    build = head_kind(config).build
    return build(config) if build is not None else None


def pooled_for_classification(
    config: ModelConfig, hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooled: torch.Tensor | None
) -> torch.Tensor:
    """The sequence vector a classifier reads: BERT's pooler output, else config.classifier_pooling."""
    if pooled is not None and config.classifier_pooling == "cls":
        return pooled
    return pool(hidden, attention_mask, config.classifier_pooling)
