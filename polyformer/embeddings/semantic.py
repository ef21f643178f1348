"""Semantic search: a SentenceEncoder and a VectorIndex together, as the CLI verbs use them.

    index = build_index("runs/reviews-index", encoder, read_items("reviews.jsonl"), model="all-MiniLM-L6-v2")
    hits = search_texts(index, encoder, ["a gripping thriller"], k=5, where={"label": "fresh"})[0]
    again = index.like(hits[0].id, k=5)                   # more like this

The index remembers the encoder it was built with (meta.json: model, pooling, max_seq_length),
so `open_encoder(index)` gives queries the same embedding; an encoder of another dimension is
refused. Items are added in chunks, each committed (acknowledged) before the next is encoded,
so a long add that is interrupted keeps everything committed so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyformer.embeddings.encoder import SentenceEncoder
from polyformer.embeddings.index import Existing, Hit, IndexSpec, VectorIndex
from polyformer.errors import ConfigError, DataError

if TYPE_CHECKING:
    from polyformer.embeddings.documents import Item

COMMIT_EVERY = 256  # items encoded and committed per transaction


def encoder_settings(encoder: SentenceEncoder, model: str) -> dict[str, Any]:
    """What meta.json records so that queries are embedded like the documents."""
    resolved = Path(model)
    reference = str(resolved.resolve()) if resolved.exists() else model  # catalog names stay names
    return {"model": reference, "pooling": encoder.pooling, "max_seq_length": encoder.max_seq_length}


def open_encoder(index: VectorIndex, device: str = "cpu", dtype: str = "float32", model: str | None = None) -> SentenceEncoder:
    """The encoder recorded in the index's meta.json (or `model`, which must give vectors of its dimension)."""
    settings = index.spec.encoder
    if model is None and "model" not in settings:
        raise ConfigError(f"{index.directory}: the index records no encoder; pass --model")
    chosen = model or settings["model"]
    same = model is None or model == settings.get("model")
    encoder = SentenceEncoder.load(chosen, pooling=settings.get("pooling") if same else None,
                                   max_seq_length=settings.get("max_seq_length") if same else None, device=device, dtype=dtype)
    check_dimension(index, encoder, chosen)
    return encoder


def check_dimension(index: VectorIndex, encoder: SentenceEncoder, model: str) -> None:
    if encoder.dimension != index.spec.dimension:
        raise ConfigError(f"{model} gives {encoder.dimension}-dim vectors but the index {index.directory} holds "
                          f"{index.spec.dimension}-dim vectors (made by {index.spec.encoder.get('model', '?')}); "
                          "use the index's own model or build a new index")


def build_index(
    directory: str | Path,
    encoder: SentenceEncoder,
    items: Sequence[Item],
    model: str,
    kind: str = "exact",
    batch_size: int = 32,
    on_commit: Callable[[int], None] | None = None,
    **spec: Any,
) -> VectorIndex:
    """Create an index in `directory` and add the items to it.

    An `ivf` index needs its k-means cells before the first add, so its items are encoded
    first and added in one transaction; the other kinds commit every COMMIT_EVERY items.
    """
    index = VectorIndex.create(directory, IndexSpec(dimension=encoder.dimension, kind=kind,
                                                    encoder=encoder_settings(encoder, model), **spec))
    chunk = len(items) if kind == "ivf" else COMMIT_EVERY
    add_items(index, encoder, items, batch_size, on_commit=on_commit, chunk=chunk)
    return index


def add_items(
    index: VectorIndex,
    encoder: SentenceEncoder,
    items: Sequence[Item],
    batch_size: int = 32,
    existing: Existing = "error",
    on_commit: Callable[[int], None] | None = None,
    chunk: int = COMMIT_EVERY,
) -> int:
    """Encode and add items chunk by chunk; `on_commit(total so far)` after each committed chunk."""
    check_dimension(index, encoder, index.spec.encoder.get("model", "the encoder"))
    if len({item.id for item in items}) != len(items):
        raise DataError("the input holds the same id twice; ids must be unique")
    if existing == "skip":  # not encoded at all: resuming an interrupted add costs only the rest
        stored = index.present([item.id for item in items])
        items = [item for item in items if item.id not in stored]
    added = 0
    for start in range(0, len(items), max(1, chunk)):
        part = items[start:start + chunk]
        vectors = encoder.encode([item.text for item in part], batch_size=batch_size, normalize=True)
        added += index.add([i.id for i in part], [i.text for i in part], vectors, [i.metadata for i in part], existing)
        if on_commit is not None:
            on_commit(start + len(part))
    index.save()
    return added


def search_texts(
    index: VectorIndex, encoder: SentenceEncoder, queries: Sequence[str], k: int = 10, where: dict[str, Any] | None = None
) -> list[list[Hit]]:
    """The k best items per query text."""
    vectors = encoder.encode(list(queries), normalize=True)
    return index.search(np.asarray(vectors), k, where)


__all__ = ["COMMIT_EVERY", "add_items", "build_index", "check_dimension", "encoder_settings", "open_encoder", "search_texts"]
