"""Text-to-text examples: (source, target) pairs from the `bible-en-es` catalog set or any csv / jsonl file.

A pair file has one record per line with the source in `text_a` and the target in `text_b`
(`--source-column` / `--target-column` name other fields); both must be non-empty, and an empty
side is an error naming the file and line. `direction="reverse"` swaps the sides (for the catalog
set, `en-es` is forward and `es-en` reverse). A user's file is split 80 / 10 / 10 like every task's
data (`polyformer.tasks.datasets`); the catalog set is split by whole books (`polyformer.data.bible`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyformer.errors import DataError
from polyformer.tasks import datasets

if TYPE_CHECKING:
    from polyformer.tasks.base import TaskOptions

BIBLE = "bible-en-es"
LANGUAGES = {BIBLE: ("English", "Spanish")}
_DIRECTIONS = {"forward": False, "reverse": True, "a-b": False, "b-a": True}
_BIBLE_DIRECTIONS = {"en-es": False, "es-en": True}


@dataclass(frozen=True)
class TextPair:
    """One example: the text to transform and, for training and evaluation, the text it should become."""

    source: str
    target: str | None = None
    where: str = ""
    id: str | None = None


def is_reversed(direction: str, data: str | None = None) -> bool:
    """Whether `direction` swaps text_a and text_b; DataError naming the choices otherwise."""
    choices = {**_DIRECTIONS, **(_BIBLE_DIRECTIONS if data == BIBLE else {})}
    if direction not in choices:
        raise DataError(f"direction={direction!r} is not one of {', '.join(choices)}")
    return choices[direction]


def languages(data: str | None, direction: str) -> tuple[str | None, str | None]:
    """(source language, target language) of built-in data; (None, None) for a file."""
    if data not in LANGUAGES:
        return None, None
    first, second = LANGUAGES[data]
    return (second, first) if is_reversed(direction, data) else (first, second)


def _records(data: str, split: str) -> tuple[Iterator[tuple[str, dict[str, Any]]], bool]:
    """(where, record) of the data and whether it is already the requested split."""
    if data == BIBLE:
        from polyformer.data.bible import pairs_file

        wanted = datasets.normalize_split(split)
        records = datasets.read_records(pairs_file())
        return ((w, r) for w, r in records if wanted == "all" or r.get("split") == wanted), True
    return datasets.read_records(datasets.data_file(data, "text-pair")), False


def load_pairs(data: str, split: str, options: TaskOptions) -> list[TextPair]:
    """One split of a pair set, sources and targets in the requested direction."""
    columns = options.columns
    source, target = (columns.text_b, columns.text_a) if is_reversed(options.direction, data) else (columns.text_a, columns.text_b)
    records, split_done = _records(data, split)
    pairs = [TextPair(datasets.text(record, source, where), datasets.text(record, target, where), where,
                      _identifier(record)) for where, record in records]
    if not pairs:
        raise DataError(f"{data}: no ({source}, {target}) pairs{'' if split == 'all' else f' in its {split} split'}")
    return pairs if split_done else datasets.take_split(pairs, split, source=data)


def parse_source(item: Any, where: str, options: TaskOptions, data: str | None = None) -> TextPair:
    """A prediction input: a plain text, or a record whose source field holds it."""
    if isinstance(item, str):
        return TextPair(item, where=where)
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected a text or a JSON object, got {type(item).__name__}")
    columns = options.columns
    field = columns.text_b if is_reversed(options.direction, data) else columns.text_a
    if field not in item and columns.text in item:
        field = columns.text
    return TextPair(datasets.text(item, field, where), where=where, id=_identifier(item))


def _identifier(record: dict[str, Any]) -> str | None:
    value = record.get("id")
    return None if value is None else str(value)
