"""Fine-tuning objectives the trainer's set lacks: similarity regression and extractive-QA spans.

Like every objective (see `polyformer.training.objectives`) they return summed losses and the
counts that normalise them, so gradient accumulation stays exact. Class labels — sequence or
token — use the existing `Classification` objective.

- `Regression`: squared error of the single logit against a float `labels` score; one count per row.
- `SpanExtraction`: cross-entropy of the start logits against `start_positions` plus that of the
  end logits against `end_positions`, halved (as transformers' *ForQuestionAnswering); one count
  per window. A window without the answer points both at position 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from polyformer.training.objectives import TermValues, _Base, _require, model_inputs, token_loss


@dataclass
class Regression(_Base):
    """Mean squared error of logits (B, 1) against scores (B,)."""

    name: ClassVar[str] = "regression"
    terms: ClassVar[tuple[str, ...]] = ("mse",)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        _require(batch, "labels", objective=self.name)
        return {"mse": torch.tensor(batch["labels"].shape[0])}

    def compute(self, model: nn.Module, batch: dict[str, torch.Tensor], with_metrics: bool = False) -> TermValues:
        _require(batch, "input_ids", "labels", objective=self.name)
        predicted = model(**model_inputs(batch)).logits.float().squeeze(-1)  # (B,)
        return TermValues({"mse": ((predicted - batch["labels"].float()) ** 2).sum()}, {})


@dataclass
class SpanExtraction(_Base):
    """Start/end cross-entropy of a question-answering head."""

    name: ClassVar[str] = "span-extraction"
    terms: ClassVar[tuple[str, ...]] = ("span",)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        _require(batch, "start_positions", objective=self.name)
        return {"span": torch.tensor(batch["start_positions"].shape[0])}

    def compute(self, model: nn.Module, batch: dict[str, torch.Tensor], with_metrics: bool = False) -> TermValues:
        _require(batch, "input_ids", "start_positions", "end_positions", objective=self.name)
        out = model(**model_inputs(batch))
        start, start_correct = token_loss(out.start_logits, batch["start_positions"], with_metrics=with_metrics)
        end, end_correct = token_loss(out.end_logits, batch["end_positions"], with_metrics=with_metrics)
        correct = {"span": (start_correct + end_correct) / 2} if with_metrics else {}
        return TermValues({"span": (start + end) / 2}, correct)
