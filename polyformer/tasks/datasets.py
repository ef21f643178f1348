"""Labelled data for the task recipes: records from csv / jsonl files, fields, deterministic splits.

Every task reads its examples through here, so the rules are the same for all of them:

- A record comes from a `.jsonl` line (a JSON object) or a `.csv` row; `where` (`file:line`)
  travels with it, so every error names the line at fault. A csv row with more or fewer cells
  than the header is an error, not a silently shifted record.
- Column names default to the project's conventions (`text`, `text_a`, `text_b`, `label`,
  `score`, `question`, `context`, `answers`) and are overridable (`Columns`).
- Splits are deterministic: `split_indices` sends 80% / 10% / 10% of the items to train / dev /
  test, drawn with numpy's generator seeded by `SPLIT_SEED` (1234); when strata (labels) are
  given, each label is split on its own, so every split keeps the label proportions. A file given
  for evaluation or prediction is used whole unless a split is asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from polyformer.data.corpus import _field, _records, _suffix
from polyformer.errors import DataError

SPLIT_SEED = 1234
FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
SPLITS = ("train", "dev", "test", "all")
_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev"}
RECORD_SUFFIXES = (".jsonl", ".csv")
T = TypeVar("T")


@dataclass(frozen=True)
class Columns:
    """Which record fields hold what (CLI: --text-column, --label-column, ...)."""

    text: str = "text"
    text_a: str = "text_a"
    text_b: str = "text_b"
    label: str = "label"
    score: str = "score"
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    tokens: str = "tokens"
    tags: str = "tags"


def normalize_split(split: str) -> str:
    name = _ALIASES.get(split, split)
    if name not in SPLITS:
        raise DataError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    return name


# ---- records ----------------------------------------------------------------------------------
def file_kind(path: str | Path) -> str:
    """A data file's format suffix (`.jsonl`, `.csv`, ...), looking through `.bz2`."""
    return _suffix(Path(path))


def read_dataset(data: str, builtin: str, read_builtin: Callable[[], list[T]], read_jsonl: Callable[[str], list[T]],
                 read_file: Callable[[str], list[T]], noun: str) -> list[T]:
    """A recipe's examples from its built-in data, a .jsonl file or its own file format; DataError when none."""
    if data == builtin:
        found = read_builtin()
    elif file_kind(data) == ".jsonl":
        found = read_jsonl(data)
    else:
        found = read_file(data)
    if not found:
        raise DataError(f"{data}: no {noun}")
    return found


def data_file(spec: str | Path, what: str, suffixes: Sequence[str] = RECORD_SUFFIXES) -> Path:
    """The path of a data file; DataError when it is missing or of an unsupported kind."""
    path = Path(spec)
    if not path.is_file():
        builtin = "" if what == "input" else f", and not a built-in {what} dataset"
        raise DataError(f"{spec}: no such file{builtin}")
    if _suffix(path) not in suffixes:
        raise DataError(f"{path}: unsupported {what} file; expected {', '.join(suffixes)}")
    return path


def read_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`file:line`, record) of every jsonl object / csv row; malformed lines raise DataError."""
    path = data_file(path, "record")
    for where, record in _records(path):
        header = len(record) - (None in record)
        extra = len(record.get(None) or ())  # csv.DictReader keeps surplus cells under the key None
        missing = sum(value is None for key, value in record.items() if key is not None)
        if extra or missing:
            raise DataError(f"{where}: malformed csv row: {header + extra - missing} cells where the header has "
                            f"{header} columns (quote fields that contain commas)")
        yield where, record


def text(record: dict[str, Any], name: str, where: str) -> str:
    """A non-empty text field (DataError naming the line when it is missing, not text or empty)."""
    value = _field(record, name, where)
    if not value.strip():
        raise DataError(f"{where}: field {name!r} is empty; remove the line or give it a text")
    return value


def label(record: dict[str, Any], name: str, where: str) -> str:
    """A class label as a string (JSON numbers and booleans become their text)."""
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        present = ", ".join(str(k) for k in record) or "none"
        raise DataError(f"{where}: missing label field {name!r} (fields: {present})")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, str)):
        return str(value).strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise DataError(f"{where}: label field {name!r} must be a string or an integer, got {value!r}")


def score(record: dict[str, Any], name: str, where: str) -> float:
    """A similarity score (a number, or a csv cell holding one)."""
    value = record.get(name)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: field {name!r} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise DataError(f"{where}: field {name!r} must be a finite number, got {value!r}")
    return number


# ---- splits -----------------------------------------------------------------------------------
def _seed_of(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little")


def split_indices(count: int, strata: Sequence[str] | None = None, seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Item indices of train / dev / test (80/10/10), stratified by `strata` when given, sorted."""
    groups: dict[str, list[int]] = {}
    for index in range(count):
        groups.setdefault(strata[index] if strata is not None else "", []).append(index)
    out: dict[str, list[int]] = {name: [] for name in FRACTIONS}
    for key in sorted(groups):
        members = np.asarray(groups[key])
        order = members[np.random.default_rng([seed, _seed_of(key)]).permutation(len(members))]
        test = int(round(FRACTIONS["test"] * len(order)))
        dev = int(round(FRACTIONS["dev"] * len(order)))
        out["test"] += order[:test].tolist()
        out["dev"] += order[test:test + dev].tolist()
        out["train"] += order[test + dev:].tolist()
    return {name: sorted(indices) for name, indices in out.items()}


def take_split(items: Sequence[T], split: str, strata: Sequence[str] | None = None, source: str = "data") -> list[T]:
    """The items of one split (all of them for 'all'); DataError when that split is empty."""
    split = normalize_split(split)
    if split == "all":
        chosen = list(items)
    else:
        chosen = [items[i] for i in split_indices(len(items), strata)[split]]
    if not chosen:
        raise DataError(f"{source}: no examples in its {split} split ({len(items)} in all); give more data or --split all")
    return chosen


def check_labels(found: Sequence[tuple[str, str]], known: Sequence[str], source: str) -> None:
    """DataError naming the first (where, label) whose label the model does not know."""
    allowed = set(known)
    for where, value in found:
        if value not in allowed:
            raise DataError(f"{where}: unknown label {value!r}; {source} knows {', '.join(map(repr, known))}")


# ---- prediction inputs ------------------------------------------------------------------------
def read_inputs(spec: str | Path) -> Iterator[tuple[str, Any]]:
    """(where, item) of prediction inputs: `-` (stdin) or `.txt` lines, `.jsonl` / `.csv` records.

    A line of stdin or of a `.txt` file is one text; a stdin line starting with `{` is a JSON
    record. Blank lines are skipped.
    """
    import json
    import sys

    if str(spec) == "-":
        for lineno, line in enumerate(sys.stdin, start=1):
            where, stripped = f"<stdin>:{lineno}", line.rstrip("\r\n")
            if not stripped.strip():
                continue
            if stripped.lstrip().startswith("{"):
                try:
                    yield where, json.loads(stripped)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            else:
                yield where, stripped
        return
    path = data_file(spec, "input", (".txt", *RECORD_SUFFIXES))
    if _suffix(path) != ".txt":
        yield from read_records(path)
        return
    from polyformer.data.readers import _open_text

    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{path}:{lineno}", line.rstrip("\r\n")
