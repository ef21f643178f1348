"""Extractive question answering: start/end logits over the context, answers as character spans.

Data: SQuAD v1.1 JSON (`data → paragraphs → context, qas → id, question, answers[text,
answer_start]`; every answer must be the context's text at its offset), jsonl records with
`question`, `context` and optionally `answers` (a list of `{text, answer_start}` or of strings),
and the built-in `shakespeare-qa`: 70 questions written for this project over 14 passages of
Shakespeare (polyformer/tasks/data/shakespeare_qa.json), split by passage.

A (question, context) pair longer than `max_length` is cut into windows: each holds the question
(at most half the limit) and a slice of the context, consecutive slices sharing `stride` tokens
(default max_length // 3, 128 at the default 384). Training labels a window with the tokens
where the first answer starts and ends, or position 0 when the answer is not wholly inside.
Prediction scores every span of context tokens (start before end, at most `max_answer_tokens`
long) among the 20 best starts and ends of each window by start + end logit, keeps the best over
all windows, and maps it back to characters of the context through the token offsets. `score`
is the window's start probability times its end probability.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polyformer.errors import DataError
from polyformer.tasks import datasets
from polyformer.tasks.base import Evaluation, TaskOptions, report_truncation
from polyformer.tasks.batches import Feature, batched_outputs, feature
from polyformer.tasks.metrics import squad_scores
from polyformer.tasks.objectives import SpanExtraction

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel
    from polyformer.tasks.encoding import Encoded, TaskTokenizer

BUILTIN = "shakespeare-qa"
TOP_CANDIDATES = 20


@dataclass
class QAExample:
    question: str
    context: str
    answers: list[tuple[str, int]] = field(default_factory=list)  # (text, character offset in the context)
    id: str = ""
    where: str = ""
    group: str = ""  # the passage, for splitting


def builtin_path() -> Path:
    return Path(str(resources.files("polyformer.tasks") / "data" / "shakespeare_qa.json"))


def _answer(context: str, item: Any, where: str) -> tuple[str, int]:
    if isinstance(item, str):
        start = context.find(item)
        if not item or start < 0:
            raise DataError(f"{where}: answer {item!r} does not occur in the context")
        return item, start
    if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not isinstance(item.get("answer_start"), int):
        raise DataError(f"{where}: an answer needs 'text' (a string) and 'answer_start' (an integer), got {item!r}")
    text, start = item["text"], item["answer_start"]
    if context[start: start + len(text)] != text:
        raise DataError(f"{where}: answer {text!r} is not the context's text at answer_start={start} "
                        f"(found {context[start: start + len(text)]!r})")
    return text, start


def read_squad(path: str | Path) -> list[QAExample]:
    """Every question of a SQuAD v1.1 file, in file order."""
    path = datasets.data_file(path, "qa", (".json",))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: not a SQuAD file (expected an object with a 'data' list)")
    examples = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                raise DataError(f"{path}: data[{a}].paragraphs[{p}] has no context")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"{path}: question {qa.get('id', f'data[{a}].paragraphs[{p}].qas[{q}]')}"
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise DataError(f"{where}: empty or missing question")
                answers = [_answer(context, item, where) for item in qa.get("answers", [])]
                examples.append(QAExample(question, context, answers, str(qa.get("id", q)), where, f"{a}.{p}"))
    return examples


def _jsonl_examples(path: str, options: TaskOptions) -> list[QAExample]:
    columns, out = options.columns, []
    for where, record in datasets.read_records(path):
        context = datasets.text(record, columns.context, where)
        answers = record.get(columns.answers) or []
        if isinstance(answers, (str, dict)):
            answers = [answers]
        out.append(QAExample(datasets.text(record, columns.question, where), context,
                             [_answer(context, item, where) for item in answers], str(record.get("id", where)), where, where))
    return out


class QATask:
    name = "qa"
    builtin = BUILTIN
    default_max_length = 384

    # ---- data ---------------------------------------------------------------------------------
    def load(self, data: str, split: str, options: TaskOptions) -> list[QAExample]:
        examples = datasets.read_dataset(data, self.builtin, lambda: read_squad(builtin_path()),
                                         lambda path: _jsonl_examples(path, options), read_squad, "questions")
        groups = sorted({e.group for e in examples})
        chosen = set(datasets.take_split(groups, split, None, source=data))
        return [e for e in examples if e.group in chosen]

    def head_settings(self, examples: Sequence[QAExample], options: TaskOptions) -> dict[str, Any]:
        return {}

    def head(self, options: TaskOptions, model: PolyformerModel | None = None) -> str:
        return "question-answering"

    def best_metric(self, model: PolyformerModel) -> str:
        return "f1"

    def check(self, examples: Sequence[QAExample], model: PolyformerModel, source: str) -> None:
        unanswered = next((e for e in examples if not e.answers), None)
        if unanswered is not None:
            raise DataError(f"{unanswered.where}: no reference answer to train or score against")

    def objective(self, model: PolyformerModel) -> SpanExtraction:
        return SpanExtraction()

    # ---- windows ------------------------------------------------------------------------------
    @staticmethod
    def _stride(encoder: TaskTokenizer, options: TaskOptions) -> int:
        return options.stride if options.stride is not None else encoder.max_length // 3

    def _windows(self, encoder: TaskTokenizer, examples: Sequence[QAExample], options: TaskOptions) -> list[tuple[int, Encoded]]:
        return encoder.windows([e.question for e in examples], [e.context for e in examples], self._stride(encoder, options))

    def features(self, examples: Sequence[QAExample], encoder: TaskTokenizer, model: PolyformerModel,
                 options: TaskOptions) -> tuple[list[Feature], int]:
        windows = self._windows(encoder, examples, options)
        out = []
        for index, window in windows:
            text, start = examples[index].answers[0]
            first, last = answer_tokens(window, start, start + len(text))
            out.append(feature(window, encoder.type_ids, start_positions=first, end_positions=last))
        return out, sum(window.truncated for _, window in windows)

    # ---- inference ----------------------------------------------------------------------------
    def _answers(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[QAExample],
                 options: TaskOptions) -> tuple[list[dict[str, Any]], int]:
        """The best span of each example: {answer, start, end, score}; and how many questions were cut."""
        windows = self._windows(encoder, examples, options)
        features = [feature(window, encoder.type_ids) for _, window in windows]
        best: list[dict[str, Any]] = [{"answer": "", "start": 0, "end": 0, "score": 0.0, "logit": float("-inf")}
                                      for _ in examples]
        for rows, _, out in batched_outputs(model, features, encoder.pad_id, options.batch_size):
            for batch_row, window_index in enumerate(rows):
                index, window = windows[window_index]
                span = best_span(window, out.start_logits[batch_row].float().cpu(), out.end_logits[batch_row].float().cpu(),
                                 options.max_answer_tokens)
                if span is not None and span["logit"] > best[index]["logit"]:
                    context = examples[index].context
                    best[index] = {**span, "answer": context[span["start"]: span["end"]]}
        cut = len({index for index, window in windows if window.truncated})
        return [{key: value for key, value in row.items() if key != "logit"} for row in best], cut

    def evaluate(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[QAExample],
                 options: TaskOptions) -> Evaluation:
        answers, cut = self._answers(model, encoder, examples, options)
        report_truncation(cut, len(examples), encoder.max_length, "questions")
        scores = squad_scores([a["answer"] for a in answers], [[text for text, _ in e.answers] for e in examples])
        predictions = [{"id": e.id, "question": e.question, **a} for e, a in zip(examples, answers)]
        return Evaluation({**scores, "questions": len(examples), "truncated": cut}, {"predictions": predictions})

    def parse_input(self, item: Any, where: str, options: TaskOptions) -> QAExample:
        columns = options.columns
        if not isinstance(item, dict):
            raise DataError(f"{where}: a question needs a JSON object with {columns.question!r} and {columns.context!r}")
        question, context = item.get(columns.question), item.get(columns.context)
        if not isinstance(question, str) or not isinstance(context, str):
            raise DataError(f"{where}: fields {columns.question!r} and {columns.context!r} must be strings")
        return QAExample(question, context, id=str(item.get("id", "")), where=where)

    def predict(self, model: PolyformerModel, encoder: TaskTokenizer, inputs: Sequence[QAExample],
                options: TaskOptions) -> list[dict[str, Any]]:
        answers, _ = self._answers(model, encoder, inputs, options)
        return [{**({"id": e.id} if e.id else {}), "question": e.question, **a} for e, a in zip(inputs, answers)]


def context_range(window: Encoded) -> tuple[int, int]:
    """(first, last) token index of the context in a window."""
    positions = [i for i, segment in enumerate(window.sequence_ids) if segment == 1]
    if not positions:
        return 0, -1
    return positions[0], positions[-1]


def answer_tokens(window: Encoded, start_char: int, end_char: int) -> tuple[int, int]:
    """Token indices of the first and last answer token in the window, or (0, 0) when it is not inside."""
    first, last = context_range(window)
    if last < first or window.offsets[first][0] > start_char or window.offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and window.offsets[start][1] <= start_char:
        start += 1
    end = last
    while end >= first and window.offsets[end][0] >= end_char:
        end -= 1
    return start, end


def best_span(window: Encoded, start_logits: torch.Tensor, end_logits: torch.Tensor, max_tokens: int) -> dict[str, Any] | None:
    """The best (start, end) of context tokens by start + end logit: character span, logit and probability."""
    first, last = context_range(window)
    if last < first:
        return None
    length = len(window.ids)
    start_probs, end_probs = start_logits[:length].softmax(-1), end_logits[:length].softmax(-1)
    context_starts = start_logits[first: last + 1].topk(min(TOP_CANDIDATES, last - first + 1)).indices + first
    context_ends = end_logits[first: last + 1].topk(min(TOP_CANDIDATES, last - first + 1)).indices + first
    chosen = None
    for s in context_starts.tolist():
        for e in context_ends.tolist():
            if e < s or e - s + 1 > max_tokens:
                continue
            logit = float(start_logits[s] + end_logits[e])
            if chosen is None or logit > chosen["logit"]:
                chosen = {"start": window.offsets[s][0], "end": window.offsets[e][1], "logit": logit,
                          "score": float(start_probs[s] * end_probs[e])}
    return chosen


QA = QATask()
