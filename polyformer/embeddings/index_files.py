"""The files of a vector index directory: the SQLite item store, the FAISS snapshot, meta.json writes.

The snapshot (`vectors.faiss`) is FAISS's own serialisation followed by a trailer — 8 magic bytes
and the SHA-256 of everything before it — so FAISS tools still read it, and polyformer checks it
before FAISS does: FAISS's reader trusts the sizes written in a file, and a damaged one can make
it allocate without bound or fail deep inside. A snapshot that is missing, has no trailer,
fails the checksum or is otherwise unreadable is rebuilt from the store (the source of truth),
with a warning. A store SQLite cannot open is an `IndexCorruptError` naming it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from polyformer.errors import CheckpointError

logger = logging.getLogger("polyformer.embeddings.index")

META, STORE, SNAPSHOT = "meta.json", "store.sqlite", "vectors.faiss"
CHECKSUM_MAGIC = b"PFSHA256"  # snapshot trailer: magic + SHA-256 of the FAISS bytes before it
TRAILER = len(CHECKSUM_MAGIC) + 32
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    faiss_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL
)"""


class IndexCorruptError(CheckpointError):
    """An index directory is missing a file, or a file in it cannot be read."""


def connect_store(path: Path) -> sqlite3.Connection:
    """A connection to the item store (created when new): WAL journal, synchronous commits, the items table."""
    fresh = not path.exists()
    if fresh and (path.parent / SNAPSHOT).exists():
        raise IndexCorruptError(f"{path}: the item store is missing (only the FAISS snapshot is left); rebuild the index")
    try:
        connection = sqlite3.connect(str(path), isolation_level="DEFERRED", check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # a commit is on disk before add() returns
        connection.execute(SCHEMA)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
        if not {"faiss_id", "id", "text", "metadata", "vector"} <= columns:
            raise sqlite3.DatabaseError(f"table items lacks columns ({', '.join(sorted(columns))})")
    except (sqlite3.DatabaseError, UnicodeDecodeError) as err:
        raise IndexCorruptError(f"{path}: not a readable index store ({err}); rebuild the index") from None
    return connection


def write_snapshot(index: Any, directory: Path) -> Path:
    """Write a FAISS index as the directory's snapshot: temporary file + checksum, fsync, rename."""
    import faiss

    final = directory / SNAPSHOT
    tmp = directory / f".{SNAPSHOT}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    with tmp.open("ab") as handle:
        handle.write(CHECKSUM_MAGIC + _sha256(tmp, tmp.stat().st_size))
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def read_snapshot(directory: Path, dimension: int) -> Any | None:
    """The directory's FAISS snapshot, or None (with a warning) when it must be rebuilt from the store."""
    import faiss

    path = directory / SNAPSHOT
    if not path.is_file():
        return None
    problem = _snapshot_problem(path)
    if problem is None:
        try:
            snapshot = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as err:
            problem = f"is unreadable ({str(err).splitlines()[-1][:120]})"
        else:
            if snapshot.d == dimension:
                return snapshot
            problem = f"holds {snapshot.d}-dim vectors, not {dimension}"
    logger.warning("%s %s; rebuilding it from %s", path, problem, STORE)
    return None


def _sha256(path: Path, length: int) -> bytes:
    """SHA-256 of the first `length` bytes of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while length > 0:
            chunk = handle.read(min(length, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
    return digest.digest()


def _snapshot_problem(path: Path) -> str | None:
    """Why the snapshot must not be handed to FAISS (no checksum, or one that does not match), or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - TRAILER))
        trailer = handle.read(TRAILER)
    if len(trailer) < TRAILER or not trailer.startswith(CHECKSUM_MAGIC):
        return "has no checksum (damaged, or written before snapshots had one)"
    if _sha256(path, size - TRAILER) != trailer[len(CHECKSUM_MAGIC):]:
        return "does not match its checksum (damaged)"
    return None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fsync_file(path)
    except OSError:  # some filesystems do not allow opening a directory
        pass
