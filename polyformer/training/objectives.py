"""Training objectives as summed losses plus the counts that normalise them.

An objective never returns a mean. It returns, per loss term, the SUM of per-example losses
(`sums`) and, separately, how many examples the term has (`counts`: label tokens that are not
-100, NSP rows). The trainer divides the sums of all micro-batches (and all ranks) by the
global counts, so k micro-batches give exactly the gradient of one batch k times larger even
when the micro-batches hold different numbers of label tokens — a mean per micro-batch would
weight a token in a sparse micro-batch more than one in a dense micro-batch.

Objectives (each a small dataclass; `describe()` is what a run directory records):
- `CausalLM`: next-token prediction; `labels` arrive already shifted (labels[t] is the target
  for position t), so the loss is a plain token cross-entropy.
- `MaskedLM`: masked-token prediction (BERT), optionally with next-sentence prediction
  (`nsp=True`: terms "mlm" and "nsp", each normalised by its own count, then added).
- `Seq2SeqLM`: encoder–decoder token prediction with label smoothing (ε spread uniformly over
  the vocabulary, exactly as `F.cross_entropy(label_smoothing=ε)`).
- `Classification`: sequence labels (B,) or token labels (B, T) against `logits`; used by
  fine-tuning recipes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from polyformer.errors import ConfigError, DataError

IGNORE_INDEX = -100
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "decoder_input_ids",
    "decoder_attention_mask",
    "document_ids",
)

Batch = dict[str, torch.Tensor]


@dataclass
class TermValues:
    """Per-term summed losses (differentiable) and, when asked for, correct-prediction counts."""

    sums: dict[str, torch.Tensor]
    correct: dict[str, torch.Tensor]


class Objective(Protocol):
    """What the trainer needs from an objective."""

    terms: tuple[str, ...]

    def counts(self, batch: Batch) -> dict[str, torch.Tensor]: ...

    def compute(self, model: nn.Module, batch: Batch, with_metrics: bool = False) -> TermValues: ...

    def sums(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]: ...

    def describe(self) -> dict[str, Any]: ...


def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    """The batch entries the model's forward takes (labels and extras are left out)."""
    return {key: batch[key] for key in MODEL_INPUTS if key in batch}


def label_count(labels: torch.Tensor) -> torch.Tensor:
    """Number of labels that take part in the loss (not IGNORE_INDEX), as an int64 tensor."""
    return (labels != IGNORE_INDEX).sum()


def token_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0, with_metrics: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Summed cross-entropy of logits (..., C) against labels (...); -100 is ignored.

    Computed in float32 whatever the autocast dtype. Returns (loss sum, correct count or None).
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1)
    if flat_logits.shape[0] != flat_labels.shape[0]:
        raise DataError(f"labels of shape {tuple(labels.shape)} do not match logits of shape {tuple(logits.shape)}")
    loss = F.cross_entropy(
        flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing
    )
    if not with_metrics:
        return loss, None
    with torch.no_grad():
        correct = ((flat_logits.argmax(dim=-1) == flat_labels) & (flat_labels != IGNORE_INDEX)).sum()
    return loss, correct


def _require(batch: Batch, *keys: str, objective: str) -> None:
    missing = [key for key in keys if key not in batch]
    if missing:
        raise DataError(f"the {objective} objective needs batch key(s) {', '.join(missing)}; got {', '.join(sorted(batch))}")


class _Base:
    """describe() and sums() shared by the dataclass objectives below."""

    name: ClassVar[str]
    terms: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    def sums(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return self.compute(model, batch).sums  # type: ignore[attr-defined]


@dataclass
class _TokenPrediction(_Base):
    """One term: cross-entropy of `logits` against `labels`, with optional label smoothing."""

    label_smoothing: float = 0.0
    term: ClassVar[str] = "lm"

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @property
    def terms(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.term,)

    def counts(self, batch: Batch) -> dict[str, torch.Tensor]:
        _require(batch, "labels", objective=self.name)
        return {self.term: label_count(batch["labels"])}

    def compute(self, model: nn.Module, batch: Batch, with_metrics: bool = False) -> TermValues:
        _require(batch, "input_ids", "labels", objective=self.name)
        out = model(**model_inputs(batch))
        loss, correct = token_loss(out.logits, batch["labels"], self.label_smoothing, with_metrics)
        return TermValues({self.term: loss}, {self.term: correct} if with_metrics else {})


@dataclass
class CausalLM(_TokenPrediction):
    """Next-token prediction; labels are already shifted by the data side."""

    name: ClassVar[str] = "causal-lm"


@dataclass
class Seq2SeqLM(_TokenPrediction):
    """Encoder–decoder target prediction; -100 marks target padding."""

    name: ClassVar[str] = "seq2seq"
    label_smoothing: float = 0.1

    def compute(self, model: nn.Module, batch: Batch, with_metrics: bool = False) -> TermValues:
        _require(batch, "decoder_input_ids", objective=self.name)
        return super().compute(model, batch, with_metrics)


@dataclass
class Classification(_TokenPrediction):
    """Sequence labels (B,) or token labels (B, T) against the classification head's logits."""

    name: ClassVar[str] = "classification"
    term: ClassVar[str] = "cls"


@dataclass
class MaskedLM(_Base):
    """BERT pretraining: masked-token prediction, plus next-sentence prediction when `nsp`."""

    nsp: bool = False
    name: ClassVar[str] = "masked-lm"

    @property
    def terms(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("mlm", "nsp") if self.nsp else ("mlm",)

    def counts(self, batch: Batch) -> dict[str, torch.Tensor]:
        _require(batch, "labels", *(("next_sentence_label",) if self.nsp else ()), objective=self.name)
        counts = {"mlm": label_count(batch["labels"])}
        if self.nsp:
            counts["nsp"] = label_count(batch["next_sentence_label"])
        return counts

    def compute(self, model: nn.Module, batch: Batch, with_metrics: bool = False) -> TermValues:
        _require(batch, "input_ids", "labels", objective=self.name)
        out = model(**model_inputs(batch))
        values = TermValues({}, {})
        loss, correct = token_loss(out.logits, batch["labels"], 0.0, with_metrics)
        values.sums["mlm"], values.correct["mlm"] = loss, correct
        if self.nsp:
            if out.nsp_logits is None:
                raise ConfigError("nsp=True needs a model with head='pretraining' (MLM + NSP heads)")
            loss, correct = token_loss(out.nsp_logits, batch["next_sentence_label"], 0.0, with_metrics)
            values.sums["nsp"], values.correct["nsp"] = loss, correct
        if not with_metrics:
            values.correct.clear()
        return values


OBJECTIVES: dict[str, type] = {
    cls.name: cls for cls in (CausalLM, MaskedLM, Seq2SeqLM, Classification)
}


def build_objective(description: dict[str, Any]) -> Objective:
    """The objective a `describe()` dict names (used by the CLI and run files)."""
    fields = dict(description)
    name = fields.pop("name", None)
    if name not in OBJECTIVES:
        raise ConfigError(f"objective name={name!r} is not one of {', '.join(OBJECTIVES)}")
    try:
        return OBJECTIVES[name](**fields)
    except TypeError as err:
        raise ConfigError(f"objective {name}: {err}") from None
