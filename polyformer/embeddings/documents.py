"""Items to embed or index: id, text and metadata, read from txt / jsonl / csv files or stdin.

- `.txt` (or `-`, standard input): one item per non-blank line; id `NAME:LINE`.
- `.jsonl`: one object per line with `text`, optional `id` (else `NAME:LINE`); every other field
  is metadata (searchable with a filter).
- `.csv`: the same with columns.

`--text-column` / `--id-column` rename the fields. Errors name the file and line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyformer.data.corpus import _field, _records, _suffix
from polyformer.errors import DataError

SUFFIXES = (".txt", ".jsonl", ".csv")


@dataclass
class Item:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_items(paths: str | Path | Sequence[str | Path], text_field: str = "text", id_field: str = "id") -> list[Item]:
    """Every item of the files, in order; DataError for a missing file, field or an empty input."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Item] = []
    for item in items:
        out.extend(_read_one(str(item), text_field, id_field))
    if not out:
        raise DataError(f"{', '.join(map(str, items)) or 'input'}: no texts to read")
    return out


def _read_one(name: str, text_field: str, id_field: str) -> Iterator[Item]:
    if name == "-":
        yield from _lines(sys.stdin, "stdin")
        return
    path = Path(name)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = _suffix(path)
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported input; expected {', '.join(SUFFIXES)} (one text per line for .txt)")
    if suffix == ".txt":
        try:
            with path.open(encoding="utf-8") as handle:
                yield from _lines(handle, path.name)
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        return
    for where, record in _records(path):
        text = _field(record, text_field, where)
        key = record.get(id_field)
        metadata = {k: v for k, v in record.items() if k not in (text_field, id_field)}
        yield Item(str(key) if key not in (None, "") else f"{path.name}:{where.rsplit(':', 1)[-1]}", text, metadata)


def _lines(handle, name: str) -> Iterator[Item]:
    for lineno, line in enumerate(handle, start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield Item(f"{name}:{lineno}", text)


__all__ = ["Item", "read_items"]
