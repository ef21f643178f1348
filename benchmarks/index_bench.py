"""Vector index at 100k vectors: build time, query latency and recall, exact vs approximate search.

    python -m benchmarks.run --only index

Vectors are uniformly random unit vectors (the hardest case for approximate search: no cluster
structure to exploit), 64 dimensions by default. For each kind of polyformer.embeddings.index
(exact, hnsw, ivf) it reports the time to build the index (SQLite commit + FAISS insertion /
training + snapshot), the median latency of one query (k = 10) through `VectorIndex.search`, the
same query on the bare FAISS index on one thread as `VectorIndex.search` runs single queries (the
difference is the SQLite lookup of ids, texts and metadata) and with FAISS's default OpenMP
threads, and recall@10 against exact search for a range of search-time parameters (efSearch,
nprobe).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyformer.bench.timing import log, peak_rss_mb


@dataclass
class IndexSettings:
    vectors: int = 100_000
    dimension: int = 64
    queries: int = 200
    hnsw_ef: tuple[int, ...] = (64, 128, 256, 512)
    ivf_nprobe: tuple[int, ...] = (16, 64, 256)


def unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _latency_ms(search, queries: np.ndarray) -> float:
    times = []
    for row in queries:
        start = time.perf_counter()
        search(row[None, :])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _faiss_latency_ms(index, params, queries: np.ndarray, threads: int | None) -> float:
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or before)
    try:
        return _latency_ms(lambda q: index.faiss.search(q, 10, params=params), queries)
    finally:
        faiss.omp_set_num_threads(before)


def _recall(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))


def run(settings: IndexSettings | None = None) -> dict:
    from polyformer.embeddings.index import IndexSpec, VectorIndex

    settings = settings or IndexSettings()
    n, d = settings.vectors, settings.dimension
    vectors, queries = unit(n, d, 1), unit(settings.queries, d, 2)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    ids, texts = [str(i) for i in range(n)], [f"item {i}" for i in range(n)]
    rows = []
    root = Path(tempfile.mkdtemp(prefix="index-bench-"))
    try:
        for kind in ("exact", "hnsw", "ivf"):
            log(f"index: {kind}, {n} x {d}")
            start = time.perf_counter()
            index = VectorIndex.create(root / kind, IndexSpec(dimension=d, kind=kind))
            index.add(ids, texts, vectors)
            index.save()
            build_s = time.perf_counter() - start
            start = time.perf_counter()
            index.close(save=False)
            index = VectorIndex.open(root / kind)
            reopen_s = time.perf_counter() - start
            sweep = {"exact": [None], "hnsw": list(settings.hnsw_ef), "ivf": list(settings.ivf_nprobe)}[kind]
            for value in sweep:
                if kind == "hnsw":
                    index.spec.ef_search = value
                elif kind == "ivf":
                    index.spec.nprobe = value
                found = [[int(h.id) for h in hits] for hits in index.search(queries, 10)]
                params = index.search_params(None, 10)
                rows.append({
                    "kind": kind,
                    "parameter": {"hnsw": "efSearch", "ivf": "nprobe"}.get(kind, ""),
                    "value": value,
                    "build_s": build_s,
                    "reopen_s": reopen_s,
                    "query_ms": _latency_ms(lambda q: index.search(q, 10), queries),
                    "faiss_query_ms": _faiss_latency_ms(index, params, queries, threads=1),
                    "faiss_default_threads_query_ms": _faiss_latency_ms(index, params, queries, threads=None),
                    "recall@10": _recall(found, exact),
                })
            index.close(save=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"work": f"vector index, {n} random unit vectors, {d} dims, k=10", "vectors": n, "dimension": d,
            "rows": rows, "peak_rss_mb": peak_rss_mb()}
