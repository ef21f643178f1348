"""Sequence tasks: one text or a text pair → a class (classify, pair) or a similarity score (pair).

`classify` reads single texts: the built-in `rotten_tomatoes` (12,808 review snippets, fresh /
rotten; deterministic stratified 80/10/10 train/dev/test split, seed 1234, so the test split is
1,280 snippets) or any csv / jsonl with `text` and `label` columns. `pair` reads `text_a` /
`text_b` with a `label` (cross-encoder classification) or a `score` (similarity regression, one
output, squared-error loss; chosen when the data has scores and no labels, or with
`regression=True`); its built-in data is Shakespeare's real-vs-random next line (see pair.py).

Both put a sequence-classification head on any body (pooled as `polyformer.tasks.models`
describes); pairs are encoded as the tokenizer's pair template ([CLS] a [SEP] b [SEP] with token
types for BERT). Metrics: accuracy, macro-F1 and the confusion matrix; Pearson / Spearman for scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from polyformer.data.readers import read_rotten_tomatoes
from polyformer.errors import DataError
from polyformer.tasks import datasets
from polyformer.tasks.base import Evaluation, TaskOptions, label_index, report_truncation
from polyformer.tasks.batches import Feature, batched_outputs, feature
from polyformer.tasks.metrics import classification_scores, confusion_matrix, correlation_scores
from polyformer.tasks.objectives import Regression
from polyformer.training.objectives import Classification

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tasks.encoding import Encoded, TaskTokenizer

REGRESSION = "regression"


@dataclass
class TextExample:
    """A text (or pair) with its class label or score; `where` names its source line."""

    text: str
    text_b: str | None = None
    label: str | None = None
    score: float | None = None
    where: str = ""


def is_regression(model: PolyformerModel) -> bool:
    return model.config.extra.get("problem_type") == REGRESSION


@functools.lru_cache(maxsize=1)
def _rotten_tomatoes() -> tuple[TextExample, ...]:
    return tuple(TextExample(row["text"], label=row["label"], where=f"rotten_tomatoes[{i}]")
                 for i, row in enumerate(read_rotten_tomatoes()))


def rotten_tomatoes(split: str) -> list[TextExample]:
    """The built-in sentiment data: one split of Rotten Tomatoes, stratified by label."""
    examples = _rotten_tomatoes()
    return datasets.take_split(examples, split, [e.label or "" for e in examples], source="rotten_tomatoes")


class SequenceTask:
    """The classify / pair recipe (`pairs` says which)."""

    default_max_length = 128

    def __init__(self, name: str, pairs: bool, builtin: str, builtin_split: Callable[[str], list[TextExample]]) -> None:
        self.name, self.pairs, self.builtin = name, pairs, builtin
        self._builtin_split = builtin_split

    # ---- data ---------------------------------------------------------------------------------
    def load(self, data: str, split: str, options: TaskOptions) -> list[TextExample]:
        """One split of the built-in data or of a csv / jsonl file (stratified by label)."""
        if data == self.builtin:
            return self._builtin_split(datasets.normalize_split(split))
        examples = [self._example(record, where, options) for where, record in datasets.read_records(data)]
        if not examples:
            raise DataError(f"{data}: no examples")
        strata = [e.label or "" for e in examples] if examples[0].label is not None else None
        return datasets.take_split(examples, split, strata, source=data)

    def _example(self, record: dict[str, Any], where: str, options: TaskOptions) -> TextExample:
        columns = options.columns
        if self.pairs:
            first, second = datasets.text(record, columns.text_a, where), datasets.text(record, columns.text_b, where)
        else:
            first, second = datasets.text(record, columns.text, where), None
        wants_score = options.regression or (options.regression is None and self.pairs
                                             and columns.label not in record and columns.score in record)
        if wants_score:
            return TextExample(first, second, score=datasets.score(record, columns.score, where), where=where)
        return TextExample(first, second, label=datasets.label(record, columns.label, where), where=where)

    def head_settings(self, examples: Sequence[TextExample], options: TaskOptions) -> dict[str, Any]:
        """Keyword arguments of `with_head` for a model trained on these examples."""
        if examples[0].score is not None:
            return {"labels": None, "num_labels": 1, "extra": {"problem_type": REGRESSION}}
        return {"labels": sorted({e.label for e in examples if e.label is not None}),
                "extra": {"problem_type": "single_label_classification"}}

    def head(self, options: TaskOptions, model: PolyformerModel | None = None) -> str:
        return "sequence-classification"

    def best_metric(self, model: PolyformerModel) -> str:
        return "spearman" if is_regression(model) else "accuracy"

    def check(self, examples: Sequence[TextExample], model: PolyformerModel, source: str) -> None:
        """Examples must match the model: scores for a regressor, known labels for a classifier."""
        if is_regression(model):
            missing = next((e for e in examples if e.score is None), None)
            if missing is not None:
                raise DataError(f"{missing.where}: the model predicts similarity scores; the data needs a score column")
            return
        unlabelled = next((e for e in examples if e.label is None), None)
        if unlabelled is not None:
            raise DataError(f"{unlabelled.where}: the model predicts classes; the data needs a label column")
        known = model.config.labels or [str(i) for i in range(model.config.num_labels)]
        datasets.check_labels([(e.where, e.label) for e in examples], known, source)  # type: ignore[misc]

    # ---- training -----------------------------------------------------------------------------
    def objective(self, model: PolyformerModel):
        return Regression() if is_regression(model) else Classification()

    def _encode(self, encoder: TaskTokenizer, examples: Sequence[TextExample]) -> list[Encoded]:
        texts = [e.text for e in examples]
        return encoder.encode(texts, [e.text_b or "" for e in examples] if self.pairs else None)

    def features(self, examples: Sequence[TextExample], encoder: TaskTokenizer, model: PolyformerModel,
                 options: TaskOptions) -> tuple[list[Feature], int]:
        encoded = self._encode(encoder, examples)
        index = label_index(model.config.labels or [])
        regression = is_regression(model)
        features = [
            feature(item, encoder.type_ids, labels=float(e.score) if regression else index[e.label])  # type: ignore[index]
            for e, item in zip(examples, encoded)
        ]
        return features, sum(item.truncated for item in encoded)

    # ---- inference ----------------------------------------------------------------------------
    def _outputs(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[TextExample],
                 batch_size: int) -> tuple[torch.Tensor, list[bool]]:
        """(N, labels) logits in example order, and which inputs were truncated."""
        encoded = self._encode(encoder, examples)
        features = [feature(item, encoder.type_ids) for item in encoded]
        logits = torch.empty(len(features), model.config.num_labels)
        for rows, _, out in batched_outputs(model, features, encoder.pad_id, batch_size):
            logits[rows] = out.logits.float().cpu()
        return logits, [item.truncated for item in encoded]

    def evaluate(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[TextExample],
                 options: TaskOptions) -> Evaluation:
        logits, truncated = self._outputs(model, encoder, examples, options.batch_size)
        report_truncation(sum(truncated), len(examples), encoder.max_length)
        if is_regression(model):
            metrics = correlation_scores([e.score for e in examples], logits[:, 0].tolist())  # type: ignore[misc]
            return Evaluation({**metrics, "examples": len(examples), "truncated": sum(truncated)})
        labels = model.config.labels or [str(i) for i in range(model.config.num_labels)]
        index = label_index(labels)
        gold = [index[e.label] for e in examples]  # type: ignore[index]
        predicted = logits.argmax(-1).tolist()
        metrics = classification_scores(gold, predicted, labels)
        matrix = confusion_matrix(gold, predicted, len(labels))
        return Evaluation({**metrics, "examples": len(examples), "truncated": sum(truncated)},
                          {"confusion_matrix": matrix.tolist(), "labels": labels})

    def parse_input(self, item: Any, where: str, options: TaskOptions) -> TextExample:
        """A prediction input: a plain string (one text; pairs as text_a<TAB>text_b) or a record."""
        columns = options.columns
        if isinstance(item, str):
            if not self.pairs:
                return TextExample(item, where=where)
            first, tab, second = item.partition("\t")
            if not tab:
                raise DataError(f"{where}: a pair needs text_a<TAB>text_b, or a JSON object with "
                                f"{columns.text_a!r} and {columns.text_b!r}")
            return TextExample(first, second, where=where)
        if self.pairs:
            return TextExample(_field_or_empty(item, columns.text_a, where), _field_or_empty(item, columns.text_b, where), where=where)
        return TextExample(_field_or_empty(item, columns.text, where), where=where)

    def predict(self, model: PolyformerModel, encoder: TaskTokenizer, inputs: Sequence[TextExample],
                options: TaskOptions) -> list[dict[str, Any]]:
        """One dict per input: label, its probability and every label's (or the score)."""
        logits, truncated = self._outputs(model, encoder, inputs, options.batch_size)
        rows = [self._echo(e) for e in inputs]
        if is_regression(model):
            for row, value, cut in zip(rows, logits[:, 0].tolist(), truncated):
                row.update(score=value, truncated=cut)
            return rows
        labels = model.config.labels or [str(i) for i in range(model.config.num_labels)]
        for row, probs, cut in zip(rows, logits.softmax(-1).tolist(), truncated):
            best = max(range(len(labels)), key=probs.__getitem__)
            row.update(label=labels[best], score=probs[best], scores=dict(zip(labels, probs)), truncated=cut)
        return rows

    def _echo(self, example: TextExample) -> dict[str, Any]:
        return {"text_a": example.text, "text_b": example.text_b} if self.pairs else {"text": example.text}


def _field_or_empty(record: dict[str, Any], name: str, where: str) -> str:
    """A text field for prediction: empty strings are allowed (the model still answers)."""
    value = record.get(name)
    if not isinstance(value, str):
        present = ", ".join(str(k) for k in record) or "none"
        raise DataError(f"{where}: field {name!r} must be a string (fields: {present})")
    return value


CLASSIFY = SequenceTask("classify", pairs=False, builtin="rotten_tomatoes", builtin_split=rotten_tomatoes)
