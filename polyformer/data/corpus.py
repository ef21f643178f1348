"""Documents for pretraining: catalog corpora and local txt / jsonl / csv files, split by document.

`read_documents(spec, split)` streams the texts of a corpus, where `spec` is a catalog name
(`shakespeare`: one document per work; `rotten_tomatoes`: one per review snippet) or one or more
local files:

- `.txt`: documents are blocks separated by blank (or whitespace-only) lines;
- `.jsonl`: one JSON object per line with field `text` (or `text_a` and optionally `text_b`,
  joined by a newline); a malformed line is a DataError naming the file and line number;
- `.csv`: column `text` (overridable with `text_field`), same `text_a`/`text_b` fallback.

`read_pairs` reads (`text_a`, `text_b`) records of jsonl/csv files for sequence-to-sequence data.

Splits are deterministic and by document, never by character: a document goes to validation when
the blake2b hash of (SPLIT_SEED, its key) ranks among the lowest VALIDATION_FRACTION (10%) of the
corpus; the key is the work name for catalog corpora and the document's index for files. At least
one document goes to each split when there are two or more, so both splits are non-empty (for
`shakespeare`, 4 of the 42 works are held out). `split="all"` gives every document.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from polyformer.data.readers import _open_text, read_rotten_tomatoes, read_shakespeare
from polyformer.errors import DataError

Split = Literal["train", "validation", "all"]
Spec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
T = TypeVar("T")
Keyed = Iterator[tuple[str, T]]

SPLIT_SEED = 1234
VALIDATION_FRACTION = 0.1
FILE_SUFFIXES = (".txt", ".jsonl", ".csv")

_CATALOG_CORPORA: dict[str, Callable[[], list[tuple[str, str]]]] = {
    "shakespeare": lambda: read_shakespeare(),
    "rotten_tomatoes": lambda: [(str(i), row["text"]) for i, row in enumerate(read_rotten_tomatoes())],
}


# --------------------------------------------------------------------------- public API
def read_documents(spec: Spec, split: Split = "train", text_field: str = "text") -> Iterator[str]:
    """Texts of the `split` documents of a catalog corpus or of local files, in corpus order.

    Empty and whitespace-only documents are skipped; a corpus (or split) with no document left is a
    DataError naming the source.
    """
    name, factory = _document_source(spec, text_field)
    return _split(factory, split, name, "documents")


def read_pairs(
    spec: Spec, split: Split = "train", source_field: str = "text_a", target_field: str = "text_b"
) -> Iterator[tuple[str, str]]:
    """(source, target) texts from jsonl/csv files with the two fields, split like documents."""
    paths = _paths(spec)

    def factory() -> Keyed[tuple[str, str]]:
        index = 0
        for path in paths:
            for where, record in _records(path):
                pair = (_field(record, source_field, where), _field(record, target_field, where))
                yield str(index), pair
                index += 1

    return _split(factory, split, _describe(paths), "pairs")


def held_out(keys: Iterable[str], fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED) -> frozenset[str]:
    """The keys of the validation split: the round(fraction * n) keys with the lowest seeded hash.

    At least one key is held out and at least one kept whenever there are two or more keys.
    """
    unique = sorted(set(keys))
    if len(unique) < 2:
        return frozenset()
    count = min(len(unique) - 1, max(1, round(fraction * len(unique))))
    return frozenset(sorted(unique, key=lambda key: _rank(key, seed))[:count])


def corpus_fingerprint(spec: Spec, text_field: str = "text") -> str:
    """A stable identity of a corpus for caches: the catalog pin, or the files' content hashes."""
    from polyformer.data.catalog import get_entry, sha256_of

    parts = [f"split:{SPLIT_SEED}:{VALIDATION_FRACTION}", f"field:{text_field}"]
    if isinstance(spec, str) and spec in _CATALOG_CORPORA:
        parts.append(f"catalog:{get_entry(spec).requirement}")
    else:
        parts.extend(f"file:{path.suffix}:{sha256_of(path)}" for path in _paths(spec))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def describe_spec(spec: Spec) -> str:
    """A short human name of a corpus: the catalog name or the file names."""
    if isinstance(spec, str) and spec in _CATALOG_CORPORA:
        return spec
    return _describe(_paths(spec))


# --------------------------------------------------------------------------- sources and splits
def _document_source(spec: Spec, text_field: str) -> tuple[str, Callable[[], Keyed[str]]]:
    if isinstance(spec, str) and spec in _CATALOG_CORPORA:
        reader = _CATALOG_CORPORA[spec]
        return spec, lambda: ((key, text) for key, text in reader() if text.strip())
    paths = _paths(spec)

    def factory() -> Keyed[str]:
        texts = (text for path in paths for text in _file_documents(path, text_field))
        return ((str(i), text) for i, text in enumerate(t for t in texts if t.strip()))

    return _describe(paths), factory


def _split(factory: Callable[[], Keyed[T]], split: Split, source: str, what: str) -> Iterator[T]:
    """Stream the items of `split`; a first pass over the keys decides the held-out set."""
    if split not in ("train", "validation", "all"):
        raise DataError(f"split must be 'train', 'validation' or 'all', got {split!r}")
    validation = held_out(key for key, _ in factory()) if split != "all" else frozenset()
    count = 0
    for key, item in factory():
        if split == "all" or (key in validation) == (split == "validation"):
            count += 1
            yield item
    if count == 0:
        where = "" if split == "all" else f" in its {split} split (it needs 2 or more to hold one out)"
        raise DataError(f"{source}: no {what}{where}")


def _rank(key: str, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def _paths(spec: Spec) -> list[Path]:
    """Local corpus files; DataError for unknown names, missing files and unsupported suffixes."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not items:
        raise DataError("no corpus given: pass a catalog name or .txt/.jsonl/.csv files")
    paths = [Path(item) for item in items]
    for path in paths:
        if not path.is_file():
            known = ", ".join(_CATALOG_CORPORA)
            raise DataError(f"{path}: no such file, and not a catalog corpus ({known})")
        if _suffix(path) not in FILE_SUFFIXES:
            raise DataError(f"{path}: unsupported corpus file; expected {', '.join(FILE_SUFFIXES)} (or .bz2 of one)")
    return paths


def _suffix(path: Path) -> str:
    """The format suffix, looking through a `.bz2` compression suffix."""
    return Path(path.stem).suffix if path.suffix == ".bz2" else path.suffix


def _describe(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


# --------------------------------------------------------------------------- file formats
def _file_documents(path: Path, text_field: str) -> Iterator[str]:
    if _suffix(path) == ".txt":
        return _text_blocks(path)
    return (_record_text(record, text_field, where) for where, record in _records(path))


def _text_blocks(path: Path) -> Iterator[str]:
    """Blank-line-separated blocks of a text file, each without its final newline."""
    lines: list[str] = []
    with _open_text(path) as handle:
        for line in handle:
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines).rstrip("\n")
                lines = []
    if lines:
        yield "".join(lines).rstrip("\n")


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`file:line`, record) for every jsonl object or csv row."""
    return _jsonl_records(path) if _suffix(path) == ".jsonl" else _csv_records(path)


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def _csv_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(path, newline="") as handle:
        reader = csv.DictReader(handle)
        for record in reader:
            yield f"{path}:{reader.line_num}", record


def _record_text(record: dict[str, Any], text_field: str, where: str) -> str:
    """The document of a record: `text_field`, else `text_a` (+ newline + `text_b`)."""
    if text_field in record or "text_a" not in record:
        return _field(record, text_field, where)
    parts = [_field(record, "text_a", where)]
    if record.get("text_b") is not None:
        parts.append(_field(record, "text_b", where))
    return "\n".join(parts)


def _field(record: dict[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if value is None:
        present = ", ".join(str(k) for k in record) or "none"
        raise DataError(f"{where}: missing field {name!r} (fields: {present})")
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- character tokenizer
