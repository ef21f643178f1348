"""A persistent vector index: FAISS for search, SQLite for everything that must survive a crash.

An index is a directory:

    meta.json        kind (exact | hnsw | ivf), dimension, search parameters, the encoder's settings
    store.sqlite     one row per item: faiss_id, id, text, metadata (JSON), vector (float32 bytes)
    vectors.faiss    a snapshot of the FAISS index (derived data: rebuilt from the store if lost)

**Write order.** SQLite (WAL journal, `synchronous=FULL`) is the source of truth. `add` commits
the items — vectors included — in one transaction, and only then are they *acknowledged*
(returned, printed by the CLI) and put into the in-memory FAISS index. `save()` writes the FAISS
snapshot to a temporary file, fsyncs it and renames it over the old one. FAISS ids are SQLite's
AUTOINCREMENT keys, never reused, so a snapshot id always means the same vector. On `open`, the
ids in the snapshot are compared with the ids in the store: rows the snapshot lacks (committed
after it was written) are added from their stored vectors, and ids no longer in the store
(deleted since) become tombstones. A process killed at any moment therefore leaves an index
that opens with every acknowledged item: a torn snapshot write leaves only a temporary file
(removed), an interrupted transaction is rolled back by SQLite, and a missing or unreadable
snapshot is rebuilt from the store.

**Damaged files** (index_files.py) are an `IndexCorruptError` naming the file — when the index is
opened, or when a damaged row is read — never a bare SQLite, JSON or decoding error; a snapshot
that fails its checksum is rebuilt from the store without FAISS ever parsing it.

**Search.** Vectors are unit length and scored by inner product (cosine). `exact` is a flat
index; `hnsw` (graph, M links per node) and `ivf` (inverted lists over k-means cells, `nprobe`
of them searched) are approximate. Deleted items and metadata filters (`where={"field": value}`,
equality on JSON metadata, evaluated in SQLite) become a FAISS ID selector, so every kind returns
exactly k live, matching items. Tombstones are compacted away (the FAISS index rebuilt from the
store) once they pass a fifth of the index.

One process writes at a time (SQLite's lock); a reader sees other processes' commits on its
next search (the store's `data_version` is checked and the FAISS index caught up).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from polyformer.embeddings.index_files import (
    META,
    SNAPSHOT,
    STORE,
    IndexCorruptError,
    connect_store,
    read_snapshot,
    write_atomic,
    write_snapshot,
)
from polyformer.errors import ConfigError, DataError

FORMAT = 1
KINDS = ("exact", "hnsw", "ivf")
Existing = Literal["error", "skip", "replace"]
_COMPACT_FRACTION = 0.2
# fewer queries than this run on one thread: an OpenMP team's start-up and barrier cost more than
# they save on a small search (and much more on a busy machine, where a thread waits for a core)
_PARALLEL_QUERIES = 16


@dataclass
class IndexSpec:
    """meta.json: how the index searches and which encoder made its vectors."""

    dimension: int
    kind: str = "exact"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    ivf_lists: int | None = None  # None: 4·sqrt(n) cells at the first training
    nprobe: int = 16
    encoder: dict[str, Any] = field(default_factory=dict)  # model, pooling, max_seq_length
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"index kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("dimension", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"index {name} must be a positive integer, got {value!r}")


@dataclass
class Hit:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class VectorIndex:
    """Items (id, text, metadata, vector) in a directory, searchable by inner product."""

    def __init__(self, directory: Path, spec: IndexSpec, connection: sqlite3.Connection) -> None:
        self.directory, self.spec, self.db = directory, spec, connection
        self.faiss = self._empty_faiss()
        self.tombstones: set[int] = set()
        self._data_version = -1

    # ---- creating and opening --------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | Path, spec: IndexSpec) -> VectorIndex:
        """A new, empty index in `directory` (which must not hold one already)."""
        directory = Path(directory)
        if (directory / META).exists():
            raise ConfigError(f"{directory} already holds an index; open it, or choose a new --out")
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / META, json.dumps(asdict(spec), indent=2) + "\n")
        return cls.open(directory)

    @classmethod
    def open(cls, directory: str | Path) -> VectorIndex:
        """Open an index, bringing the FAISS snapshot up to date with the store."""
        directory = Path(directory)
        spec = _read_spec(directory)
        index = cls(directory, spec, connect_store(directory / STORE))
        for leftover in directory.glob(f".{SNAPSHOT}.*.tmp"):
            leftover.unlink(missing_ok=True)  # a snapshot write that never finished
        index._load_snapshot()
        return index

    def close(self, save: bool = True) -> None:
        if save:
            self.save()
        self.db.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(save=exc[0] is None)

    # ---- writing ---------------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadata: Sequence[dict[str, Any]] | None = None,
        existing: Existing = "error",
    ) -> int:
        """Commit items to the store, then index them; returns how many were added.

        `existing` says what to do with an id already in the index: "error" (DataError),
        "skip" (keep the stored item) or "replace" (delete it, add the new one).
        """
        vectors = self._checked_vectors(vectors, len(ids))
        metadata = list(metadata) if metadata is not None else [{} for _ in ids]
        if not (len(ids) == len(texts) == len(metadata)):
            raise DataError(f"{len(ids)} ids, {len(texts)} texts and {len(metadata)} metadata records must match")
        if len(set(ids)) != len(ids):
            raise DataError(f"duplicate id in one add: {_first_duplicate(ids)!r}")
        if existing not in ("error", "skip", "replace"):
            raise ConfigError(f"existing={existing!r} is not one of error, skip, replace")
        self.refresh()
        present = self.present(ids)
        if present and existing == "error":
            raise DataError(f"id {sorted(present)[0]!r} is already in the index (and {len(present) - 1} more); "
                            "delete it first, or add with existing='replace' / 'skip' (CLI: --existing)")
        keep = [i for i, key in enumerate(ids) if not (existing == "skip" and key in present)]
        try:
            with self.db:  # one transaction: all of these rows or none
                if existing == "replace" and present:
                    self._delete_rows(list(present))
                self.db.executemany(
                    "INSERT INTO items (id, text, metadata, vector) VALUES (?, ?, ?, ?)",
                    [(ids[i], texts[i], json.dumps(metadata[i], ensure_ascii=False), vectors[i].tobytes()) for i in keep],
                )
        except (sqlite3.Error, TypeError, ValueError) as err:
            self.refresh(force=True)  # rolled back: forget the tombstones of the replaced rows
            if isinstance(err, sqlite3.Error):
                raise DataError(f"{self.directory / STORE}: the add was rolled back ({err})") from None
            raise DataError(f"metadata must be JSON-serialisable ({err})") from None
        # committed: the items are acknowledged; now the in-memory FAISS index follows
        faiss_ids = dict((key, fid) for key, fid in self._rows("SELECT id, faiss_id FROM items WHERE id IN ({})", [ids[i] for i in keep]))
        self._index_vectors(np.asarray([faiss_ids[ids[i]] for i in keep], dtype=np.int64), vectors[keep])
        return len(keep)

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items by id (unknown ids are ignored); returns how many were removed."""
        self.refresh()
        with self._reading_store(), self.db:
            removed = self._delete_rows(list(ids))
        self._maybe_compact()
        return removed

    def _delete_rows(self, ids: list[str]) -> int:
        found = [fid for (fid,) in self._rows("SELECT faiss_id FROM items WHERE id IN ({})", ids)]
        list(self._rows("DELETE FROM items WHERE id IN ({})", ids))
        self.tombstones.update(found)
        return len(found)

    def save(self) -> Path:
        """Write the FAISS snapshot atomically, with its checksum (index_files.write_snapshot)."""
        return write_snapshot(self.faiss, self.directory)

    # ---- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM items")[0][0])

    def items(self) -> tuple[list[str], list[str], np.ndarray]:
        """Every stored item: ids, texts and (N, D) vectors, in insertion order."""
        rows = [self._checked(row, "id", "text") for row in self._query("SELECT id, text, vector FROM items ORDER BY faiss_id")]
        vectors = np.stack([self._vector(blob, key) for key, _, blob in rows]) if rows else np.empty((0, self.spec.dimension), np.float32)
        return [key for key, _, _ in rows], [text for _, text, _ in rows], vectors

    def get(self, item_id: str) -> tuple[Hit, np.ndarray]:
        rows = self._query("SELECT id, text, metadata, vector FROM items WHERE id = ?", (item_id,))
        if not rows:
            raise DataError(f"id {item_id!r} is not in the index {self.directory}")
        return self._hit(rows[0][:3], 1.0), self._vector(rows[0][3], item_id)

    def search(
        self, queries: np.ndarray, k: int = 10, where: dict[str, Any] | None = None, exclude: Sequence[str] = ()
    ) -> list[list[Hit]]:
        """The k best live items per query vector, best first; `where` filters on metadata."""
        import faiss

        if not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        queries = self._checked_vectors(queries, None)
        self.refresh()
        allowed = self._filtered(where) if where else None
        banned = set(self.tombstones) | set(self._faiss_ids(exclude))
        if allowed is not None:
            ids = np.fromiter((i for i in allowed if i not in banned), dtype=np.int64)
            selector = faiss.IDSelectorBatch(ids)
        elif banned:
            ids = np.fromiter(banned, dtype=np.int64)
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(ids))
        else:
            ids, selector = None, None
        if self.faiss.ntotal == 0 or (ids is not None and allowed is not None and len(ids) == 0):
            return [[] for _ in queries]
        with _faiss_threads(1 if len(queries) < _PARALLEL_QUERIES else None):
            scores, labels = self.faiss.search(queries, k, params=self.search_params(selector, k))
        return self._hits(scores, labels)

    def like(self, item_id: str, k: int = 10, where: dict[str, Any] | None = None) -> list[Hit]:
        """More like this: the k items most similar to a stored item (itself left out)."""
        _, vector = self.get(item_id)
        return self.search(vector[None, :], k, where, exclude=[item_id])[0]

    # ---- the FAISS side --------------------------------------------------------------------------
    def _empty_faiss(self, train_size: int = 0):
        import faiss

        spec, d = self.spec, self.spec.dimension
        if spec.kind == "exact":
            inner = faiss.IndexFlatIP(d)
        elif spec.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = spec.ef_construction
        else:
            lists = spec.ivf_lists or max(1, min(int(4 * np.sqrt(max(train_size, 1))), max(1, train_size // 39)))
            inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        return faiss.IndexIDMap2(inner)

    def search_params(self, selector, k: int):
        """FAISS search parameters of this kind (efSearch / nprobe) with an optional ID selector."""
        import faiss

        if self.spec.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.spec.ef_search, k), sel=selector)
        if self.spec.kind == "ivf":
            return faiss.SearchParametersIVF(nprobe=self.spec.nprobe, sel=selector)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _index_vectors(self, faiss_ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(faiss_ids):
            return
        if not self.faiss.is_trained:  # IVF: k-means cells from the first vectors it meets
            self.faiss = self._empty_faiss(len(vectors))
            self.faiss.train(np.ascontiguousarray(vectors))
        self.faiss.add_with_ids(np.ascontiguousarray(vectors), faiss_ids)

    def _load_snapshot(self) -> None:
        snapshot = read_snapshot(self.directory, self.spec.dimension)
        if snapshot is not None:
            self.faiss = snapshot
        self.refresh(force=True)
        self._maybe_compact()

    def refresh(self, force: bool = False) -> None:
        """Catch the FAISS index up with the store (rows added or deleted by any process)."""
        import faiss

        version = self._store_version()
        if version == self._data_version and not force:
            return
        live = np.fromiter((fid for (fid,) in self._query("SELECT faiss_id FROM items")), dtype=np.int64)
        indexed = faiss.vector_to_array(self.faiss.id_map).astype(np.int64) if self.faiss.ntotal else np.empty(0, np.int64)
        self.tombstones = set(np.setdiff1d(indexed, live).tolist())
        missing = np.setdiff1d(live, indexed)
        if len(missing):
            self._index_vectors(missing, self._stored_vectors(missing))
        self._data_version = version

    def _maybe_compact(self) -> None:
        if len(self.tombstones) > _COMPACT_FRACTION * max(self.faiss.ntotal, 1):
            self.faiss = self._empty_faiss()
            self.tombstones = set()
            self.refresh(force=True)

    def _stored_vectors(self, faiss_ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(faiss_ids), self.spec.dimension), dtype=np.float32)
        position = {int(fid): row for row, fid in enumerate(faiss_ids)}
        for fid, blob in self._rows("SELECT faiss_id, vector FROM items WHERE faiss_id IN ({})", [int(f) for f in faiss_ids]):
            out[position[fid]] = self._vector(blob, f"faiss_id {fid}")
        return out

    # ---- helpers ---------------------------------------------------------------------------------
    def _checked_vectors(self, vectors: np.ndarray, rows: int | None) -> np.ndarray:
        array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if array.ndim != 2 or array.shape[1] != self.spec.dimension:
            raise ConfigError(f"vectors of shape {tuple(array.shape)} do not fit the index {self.directory}: it holds "
                              f"{self.spec.dimension}-dim vectors (made by {self.spec.encoder.get('model', 'its encoder')})")
        if rows is not None and array.shape[0] != rows:
            raise DataError(f"{array.shape[0]} vectors for {rows} ids")
        if not np.isfinite(array).all():
            raise DataError("vectors must be finite (NaN or infinity found)")
        return array

    def _vector(self, blob: bytes, what: str) -> np.ndarray:
        if not isinstance(blob, bytes):
            raise IndexCorruptError(f"{self.directory / STORE}: the vector of {what} is {type(blob).__name__}, "
                                    "not bytes; the store is damaged; rebuild the index")
        if len(blob) != 4 * self.spec.dimension:
            raise IndexCorruptError(f"{self.directory / STORE}: the vector of {what} has {len(blob)} bytes, "
                                    f"expected {4 * self.spec.dimension}; rebuild the index")
        return np.frombuffer(blob, dtype=np.float32)

    def _rows(self, sql: str, values: Sequence[Any]) -> Iterable[tuple]:
        """Rows of `sql` whose `IN ({})` takes `values`, run in chunks under SQLite's variable limit."""
        for start in range(0, len(values), 900):
            chunk = list(values[start:start + 900])
            yield from self._query(sql.format(", ".join("?" * len(chunk))), chunk)

    def present(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` that are stored."""
        return {key for (key,) in self._rows("SELECT id FROM items WHERE id IN ({})", ids)}

    def _faiss_ids(self, ids: Sequence[str]) -> list[int]:
        return [fid for (fid,) in self._rows("SELECT faiss_id FROM items WHERE id IN ({})", ids)]

    def _filtered(self, where: dict[str, Any]) -> list[int]:
        clauses, values = [], []
        for key, value in where.items():
            if isinstance(value, (dict, list)):
                raise DataError(f"filter {key}={value!r}: only strings, numbers, booleans and null can be matched")
            path = '$."' + str(key).replace('"', '\\"') + '"'
            if value is None:
                clauses.append("json_extract(metadata, ?) IS NULL")
                values.append(path)
            else:
                clauses.append("json_extract(metadata, ?) = ?")
                values += [path, int(value) if isinstance(value, bool) else value]
        sql = "SELECT faiss_id FROM items WHERE " + " AND ".join(clauses)
        return [fid for (fid,) in self._query(sql, values)]

    def _hits(self, scores: np.ndarray, labels: np.ndarray) -> list[list[Hit]]:
        wanted = sorted({int(label) for label in labels.ravel() if label >= 0})
        rows = {row[0]: row[1:] for row in
                self._rows("SELECT faiss_id, id, text, metadata FROM items WHERE faiss_id IN ({})", wanted)}
        return [[self._hit(rows[int(l)], float(s)) for s, l in zip(row_scores, row_labels) if l >= 0 and int(l) in rows]
                for row_scores, row_labels in zip(scores, labels)]

    def _hit(self, row: tuple, score: float) -> Hit:
        """A Hit from an (id, text, metadata JSON) row; IndexCorruptError for a damaged row."""
        key, text, metadata = self._checked(row, "id", "text", "metadata")
        try:
            parsed = json.loads(metadata)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise IndexCorruptError(f"{self.directory / STORE}: the metadata of {key!r} is not a JSON object; "
                                    "the store is damaged; rebuild the index")
        return Hit(key, score, text, parsed)

    def _checked(self, row: tuple, *names: str) -> tuple:
        """The row, its first len(names) columns checked to be text (a damaged store may hold other types)."""
        for name, value in zip(names, row):
            if not isinstance(value, str):
                raise IndexCorruptError(f"{self.directory / STORE}: an item's {name} is {type(value).__name__}, not "
                                        "text; the store is damaged; rebuild the index")
        return row

    def _query(self, sql: str, values: Sequence[Any] = ()) -> list[tuple]:
        """All rows of one statement."""
        with self._reading_store():
            return self.db.execute(sql, values).fetchall()

    @contextmanager
    def _reading_store(self) -> Iterator[None]:
        """SQLite's errors about the store (or undecodable text in it) as an IndexCorruptError naming it."""
        try:
            yield
        except (sqlite3.DatabaseError, UnicodeDecodeError) as err:
            busy = "locked" in str(err) or "busy" in str(err)
            hint = "another process holds it; try again" if busy else "the file is damaged; rebuild the index"
            raise IndexCorruptError(f"{self.directory / STORE}: cannot read the item store ({err}); {hint}") from None

    def _store_version(self) -> int:
        """Changes when another connection commits (this connection's own writes are applied directly)."""
        return int(self._query("PRAGMA data_version")[0][0])


@contextmanager
def _faiss_threads(count: int | None) -> Iterator[None]:
    import faiss

    if count is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# ---- files -------------------------------------------------------------------------------------------
def _read_spec(directory: Path) -> IndexSpec:
    if not directory.is_dir():
        raise IndexCorruptError(f"{directory}: no such index directory; build one with `polyformer index build`")
    path = directory / META
    if not path.is_file():
        raise IndexCorruptError(f"{directory}: not a polyformer index ({META} is missing); build one with `polyformer index build`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, this version reads format {FORMAT}")
        return IndexSpec(**data)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise IndexCorruptError(f"{path}: unreadable index description ({err}); rebuild the index") from None


def _first_duplicate(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    for key in ids:
        if key in seen:
            return key
        seen.add(key)
    return ""


__all__ = ["META", "SNAPSHOT", "STORE", "Hit", "IndexCorruptError", "IndexSpec", "KINDS", "VectorIndex"]
