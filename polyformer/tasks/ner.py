"""Named-entity recognition: a BIO tag per word, entities scored with seqeval (the `ner` task).

Data: the built-in `wnut16` (WNUT-16 Twitter NER, 2,394 sentences, 10 entity types; sentences
split 80/10/10 into train/dev/test with seed 1234), CoNLL files (a token per line, its tag in
the last column, blank lines between sentences, `-DOCSTART-` lines skipped; CoNLL-2003's four
columns work), or jsonl with `tokens` and `tags` lists.

The words of a sentence are joined with spaces and tokenised; the first sub-token of each word
carries the word's tag, the others are ignored (see encoding.py). At evaluation every word gets
the tag predicted for its first sub-token (words beyond the length limit get `O`, and are
counted as truncated), and seqeval scores whole entities. Prediction on raw text splits words
with `split_words` and returns entities with character offsets into the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyformer.data.readers import _open_text, read_wnut16
from polyformer.errors import DataError
from polyformer.tasks import datasets
from polyformer.tasks.base import Evaluation, TaskOptions, label_index, report_truncation
from polyformer.tasks.batches import Feature, batched_outputs, feature
from polyformer.tasks.encoding import (
    Encoded,
    TaskTokenizer,
    align_labels,
    first_subtokens,
    join_words,
    split_words,
    token_words,
)
from polyformer.tasks.metrics import entity_scores
from polyformer.training.objectives import Classification

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel

_TAG = re.compile(r"^(O|[BIES]-.+)$")
Span = tuple[int, int]


@dataclass
class TaggedSentence:
    """Words with their BIO tags (None when unlabelled), or raw text with its word spans."""

    words: list[str]
    tags: list[str] | None = None
    where: str = ""
    text: str | None = None  # raw text (prediction); the words are its `spans`
    spans: list[Span] | None = None

    def joined(self) -> tuple[str, list[Span]]:
        if self.text is not None and self.spans is not None:
            return self.text, self.spans
        return join_words(self.words)


def _checked(words: list[str], tags: list[str], where: str) -> TaggedSentence:
    for tag in tags:
        if not _TAG.match(tag):
            raise DataError(f"{where}: tag {tag!r} is not BIO (O, B-TYPE, I-TYPE)")
    return TaggedSentence(words, tags, where)


def read_conll(path: str | Path) -> list[TaggedSentence]:
    """Sentences of a CoNLL file: token in the first column, tag in the last."""
    path = datasets.data_file(path, "ner", (".conll", ".txt", ".tsv", ".bio", ".iob"))
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 1
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            fields = line.split()
            if fields and fields[0] == "-DOCSTART-":
                continue
            if not fields:
                if words:
                    sentences.append(_checked(words, tags, f"{path}:{start}"))
                words, tags = [], []
                continue
            if len(fields) < 2:
                raise DataError(f"{path}:{lineno}: expected 'token ... tag', got {line.strip()!r}")
            if not words:
                start = lineno
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append(_checked(words, tags, f"{path}:{start}"))
    return sentences


def _jsonl_sentences(path: str, options: TaskOptions) -> list[TaggedSentence]:
    columns, out = options.columns, []
    for where, record in datasets.read_records(path):
        words, tags = record.get(columns.tokens), record.get(columns.tags)
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags) or not words:
            raise DataError(f"{where}: need non-empty lists {columns.tokens!r} and {columns.tags!r} of the same length")
        out.append(_checked([str(w) for w in words], [str(t) for t in tags], where))
    return out


class NerTask:
    name = "ner"
    builtin = "wnut16"
    default_max_length = 128

    # ---- data ---------------------------------------------------------------------------------
    def load(self, data: str, split: str, options: TaskOptions) -> list[TaggedSentence]:
        sentences = datasets.read_dataset(
            data, self.builtin, lambda: [_checked(w, t, f"wnut16[{i}]") for i, (w, t) in enumerate(read_wnut16())],
            lambda path: _jsonl_sentences(path, options), read_conll, "sentences")
        return datasets.take_split(sentences, split, None, source=data)

    def head_settings(self, examples: Sequence[TaggedSentence], options: TaskOptions) -> dict[str, Any]:
        tags = {tag for sentence in examples for tag in sentence.tags or []}
        return {"labels": ["O", *sorted(tags - {"O"})]}

    def head(self, options: TaskOptions, model: PolyformerModel | None = None) -> str:
        return "token-classification"

    def best_metric(self, model: PolyformerModel) -> str:
        return "f1"

    def check(self, examples: Sequence[TaggedSentence], model: PolyformerModel, source: str) -> None:
        known = model.config.labels or []
        datasets.check_labels([(s.where, tag) for s in examples for tag in s.tags or []], known, source)

    def objective(self, model: PolyformerModel) -> Classification:
        return Classification()

    # ---- encoding -----------------------------------------------------------------------------
    def _encode(self, encoder: TaskTokenizer, sentences: Sequence[TaggedSentence]) -> list[tuple[Encoded, list[int | None]]]:
        """Each sentence's encoding and the word index of each token."""
        joined = [s.joined() for s in sentences]
        encoded = encoder.encode([text for text, _ in joined])
        return [(item, token_words(item, spans, len(text))) for item, (text, spans) in zip(encoded, joined)]

    def features(self, examples: Sequence[TaggedSentence], encoder: TaskTokenizer, model: PolyformerModel,
                 options: TaskOptions) -> tuple[list[Feature], int]:
        index = label_index(model.config.labels or [])
        encoded = self._encode(encoder, examples)
        out = [feature(item, encoder.type_ids, labels=align_labels(words, [index[tag] for tag in sentence.tags or []]))
               for sentence, (item, words) in zip(examples, encoded)]
        return out, sum(item.truncated for item, _ in encoded)

    def _word_predictions(self, model: PolyformerModel, encoder: TaskTokenizer, sentences: Sequence[TaggedSentence],
                          batch_size: int) -> tuple[list[list[str]], list[list[float]], list[bool]]:
        """Per sentence: the tag and its probability for every word, and whether it was cut."""
        labels = model.config.labels or []
        encoded = self._encode(encoder, sentences)
        features = [feature(item, encoder.type_ids) for item, _ in encoded]
        tags = [["O"] * len(s.spans if s.spans is not None else s.words) for s in sentences]
        probs = [[0.0] * len(row) for row in tags]
        for rows, _, out in batched_outputs(model, features, encoder.pad_id, batch_size):
            scores, best = out.logits.float().softmax(-1).max(-1)  # (B, T)
            for batch_row, index in enumerate(rows):
                for position, word in enumerate(first_subtokens(encoded[index][1])):
                    if word is not None:
                        tags[index][word] = labels[int(best[batch_row, position])]
                        probs[index][word] = float(scores[batch_row, position])
        return tags, probs, [item.truncated for item, _ in encoded]

    # ---- evaluation and prediction ------------------------------------------------------------
    def evaluate(self, model: PolyformerModel, encoder: TaskTokenizer, examples: Sequence[TaggedSentence],
                 options: TaskOptions) -> Evaluation:
        predicted, _, truncated = self._word_predictions(model, encoder, examples, options.batch_size)
        report_truncation(sum(truncated), len(examples), encoder.max_length, "sentences")
        scores, per_type = entity_scores([s.tags or [] for s in examples], predicted)
        return Evaluation({**scores, "sentences": len(examples), "truncated": sum(truncated)}, {"per_type": per_type})

    def parse_input(self, item: Any, where: str, options: TaskOptions) -> TaggedSentence:
        """Raw text (a string or a record's text field) or a record with pre-split `tokens`."""
        if isinstance(item, dict) and isinstance(item.get(options.columns.tokens), list):
            return TaggedSentence([str(w) for w in item[options.columns.tokens]], where=where)
        text = item if isinstance(item, str) else item.get(options.columns.text) if isinstance(item, dict) else None
        if not isinstance(text, str):
            raise DataError(f"{where}: expected a text, or a JSON object with {options.columns.text!r} or {options.columns.tokens!r}")
        spans = split_words(text)
        return TaggedSentence([text[a:b] for a, b in spans], where=where, text=text, spans=spans)

    def predict(self, model: PolyformerModel, encoder: TaskTokenizer, inputs: Sequence[TaggedSentence],
                options: TaskOptions) -> list[dict[str, Any]]:
        """Per input: the text and its entities with character offsets, type and mean tag probability."""
        tags, probs, truncated = self._word_predictions(model, encoder, inputs, options.batch_size)
        rows = []
        for sentence, word_tags, word_probs, cut in zip(inputs, tags, probs, truncated):
            text, spans = sentence.joined()
            entities = [
                {"entity": kind, "text": text[spans[first][0]: spans[last][1]], "start": spans[first][0],
                 "end": spans[last][1], "score": sum(word_probs[first: last + 1]) / (last - first + 1)}
                for kind, first, last in entity_spans(word_tags)
            ]
            rows.append({"text": text, "entities": entities, "truncated": cut})
        return rows


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of each entity, as seqeval reads BIO tags."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last) for kind, first, last in get_entities(list(tags))]


NER = NerTask()
