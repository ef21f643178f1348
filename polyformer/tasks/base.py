"""What every task recipe provides, and the settings they share.

A recipe is data → head → loss → metrics → predictions:

    examples = task.load(data, split, options)           # typed examples, each knowing its `where`
    settings = task.head_settings(examples, options)     # labels (and problem type) for `with_head`
    features, cut = task.features(examples, encoder, model, options)  # encoded with targets; cut = truncated count
    result = task.evaluate(model, encoder, examples)     # metrics (+ confusion matrix, per-type report)
    rows = task.predict(model, encoder, inputs)          # JSON-ready dicts, one per input

`polyformer.tasks.recipe` drives the recipes for fine-tuning, evaluation and prediction; the CLI
verbs and `pf.pipeline` are thin layers over it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from polyformer.tasks.datasets import Columns

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tasks.batches import Feature
    from polyformer.tasks.encoding import TaskTokenizer

logger = logging.getLogger("polyformer.tasks")


@dataclass(frozen=True)
class TaskOptions:
    """Settings shared by the recipes (each reads the ones it needs)."""

    columns: Columns = field(default_factory=Columns)
    max_length: int | None = None  # tokens per input (specials included); None: the task's default
    batch_size: int = 32  # inference batch size
    regression: bool | None = None  # pair: similarity scores instead of classes (None: from the data / model)
    stride: int | None = None  # qa: tokens shared by consecutive windows of a long context (None: max_length // 3)
    max_answer_tokens: int = 30  # qa: longest answer span considered
    device: str = "auto"  # inference device: auto (CUDA when available) | cpu | cuda | cuda:N
    # text to text (translate, lm)
    direction: str = "forward"  # forward: text_a → text_b; reverse: text_b → text_a (bible-en-es: en-es | es-en)
    num_beams: int = 4  # beam search width (1: greedy)
    length_penalty: float = 1.0  # beam scores are log-probability / length ** length_penalty
    max_new_tokens: int | None = None  # tokens generated per input (None: max_length)
    instruction: str | None = None  # chat-template models: the request, with {text} (and {source} / {target} languages)
    languages: tuple[str | None, str | None] | None = None  # (source, target) language names, for the request


@dataclass
class Evaluation:
    """Scores of a model on labelled examples, plus what the CLI writes beside them."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)  # confusion matrix, per-type report, ...
    task: str = ""  # the task evaluated (classify, ner, pair, qa)


class Task(Protocol):
    """A task recipe (classify, pair, ner, qa)."""

    name: str
    builtin: str  # the name of its built-in dataset
    default_max_length: int

    def load(self, data: str, split: str, options: TaskOptions) -> list[Any]: ...

    def head(self, options: TaskOptions, model: PolyformerModel | None = None) -> str: ...

    def head_settings(self, examples: Sequence[Any], options: TaskOptions) -> dict[str, Any]: ...

    def best_metric(self, model: PolyformerModel) -> str: ...

    def check(self, examples: Sequence[Any], model: PolyformerModel, source: str) -> None: ...

    def objective(self, model: PolyformerModel) -> Any: ...

    def features(self, examples: Sequence[Any], encoder: TaskTokenizer, model: PolyformerModel,
                 options: TaskOptions) -> tuple[list[Feature], int]: ...

    def evaluate(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[Any],
                 options: TaskOptions) -> Evaluation: ...

    def parse_input(self, item: Any, where: str, options: TaskOptions) -> Any: ...

    def predict(self, model: PolyformerModel, encoder: TaskTokenizer, inputs: Sequence[Any],
                options: TaskOptions) -> list[dict[str, Any]]: ...


def report_truncation(count: int, total: int, max_length: int, what: str = "texts") -> None:
    """Log how many inputs were longer than the limit and were cut."""
    if count:
        logger.warning("%d of %d %s were longer than max_length=%d tokens and were truncated "
                       "(raise --max-length to keep more)", count, total, what, max_length)


def label_index(labels: Sequence[str]) -> dict[str, int]:
    return {name: index for index, name in enumerate(labels)}
