"""The vector index: add / search / delete / reopen round trips, filters, crash safety, ANN recall."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polyformer.embeddings.index import SNAPSHOT, STORE, IndexCorruptError, IndexSpec, VectorIndex
from polyformer.errors import ConfigError, DataError

D = 16
KINDS = ["exact", "hnsw", "ivf"]


def unit(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make(tmp_path: Path, kind: str = "exact", n: int = 300, **spec) -> tuple[VectorIndex, np.ndarray]:
    index = VectorIndex.create(tmp_path / "idx", IndexSpec(dimension=D, kind=kind, nprobe=64, **spec))
    vectors = unit(n)
    index.add([f"d{i}" for i in range(n)], [f"text {i}" for i in range(n)], vectors,
              [{"parity": "even" if i % 2 == 0 else "odd", "n": i} for i in range(n)])
    return index, vectors


def top_ids(index: VectorIndex, queries: np.ndarray, k: int = 1, **kw) -> list[list[str]]:
    return [[hit.id for hit in hits] for hits in index.search(queries, k, **kw)]


@pytest.mark.parametrize("kind", KINDS)
def test_add_search_delete_reopen_round_trip(tmp_path, kind):
    index, vectors = make(tmp_path, kind)
    assert len(index) == 300
    assert top_ids(index, vectors[:20]) == [[f"d{i}"] for i in range(20)]
    hit = index.search(vectors[5:6], 1)[0][0]
    assert (hit.text, hit.metadata) == ("text 5", {"parity": "odd", "n": 5}) and hit.score == pytest.approx(1.0, abs=1e-5)
    assert index.delete(["d1", "d2", "nope"]) == 2
    assert top_ids(index, vectors[1:3], k=3)[0][0] not in ("d1", "d2")
    index.close()
    again = VectorIndex.open(tmp_path / "idx")
    assert len(again) == 298
    found = top_ids(again, vectors[:20], k=10)
    assert all("d1" not in row and "d2" not in row for row in found)
    assert top_ids(again, vectors[[0, 3, 4, 5, 6]]) == [["d0"], ["d3"], ["d4"], ["d5"], ["d6"]]
    hits = again.search(vectors[:4], k=10)
    assert all(len(row) == 10 for row in hits)  # deleted items never take a slot
    again.close()


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_filter_and_more_like_this(tmp_path, kind):
    index, vectors = make(tmp_path, kind)
    even = index.search(vectors[:10], 5, where={"parity": "even"})
    assert all(len(row) == 5 and all(h.metadata["parity"] == "even" for h in row) for row in even)
    assert top_ids(index, vectors[4:5], 1, where={"parity": "even", "n": 4}) == [["d4"]]
    assert index.search(vectors[:1], 3, where={"parity": "none"}) == [[]]
    similar = index.like("d7", k=5)
    assert len(similar) == 5 and "d7" not in [h.id for h in similar]
    expected = [f"d{i}" for i in np.argsort(-(vectors @ vectors[7]))[1:6]]
    if kind == "exact":
        assert [h.id for h in similar] == expected
    with pytest.raises(DataError, match="'nope' is not in the index"):
        index.like("nope")
    index.close()


def test_existing_ids_error_skip_replace(tmp_path):
    index, vectors = make(tmp_path, n=10)
    with pytest.raises(DataError, match="'d3' is already in the index"):
        index.add(["d3"], ["again"], unit(1, seed=9))
    assert index.add(["d3", "new"], ["again", "new"], unit(2, seed=9), existing="skip") == 1
    assert index.get("d3")[0].text == "text 3"
    assert index.add(["d3"], ["replaced"], unit(1, seed=11), existing="replace") == 1
    assert index.get("d3")[0].text == "replaced" and len(index) == 11
    assert top_ids(index, unit(1, seed=11)) == [["d3"]]
    with pytest.raises(DataError, match="duplicate id"):
        index.add(["x", "x"], ["a", "b"], unit(2))
    with pytest.raises(DataError, match="JSON-serialisable"):  # rolled back, the replaced row kept
        index.add(["d3", "y"], ["r", "y"], unit(2, seed=12), [{}, {"when": object()}], existing="replace")
    assert len(index) == 11 and index.get("d3")[0].text == "replaced" and top_ids(index, unit(1, seed=11)) == [["d3"]]
    index.close()


def test_unsaved_writes_are_replayed_from_the_store(tmp_path):
    """No snapshot after the adds / deletes (a crash): open catches FAISS up from SQLite."""
    index, vectors = make(tmp_path, "hnsw", n=100)
    index.save()
    extra = unit(50, seed=3)
    index.add([f"e{i}" for i in range(50)], ["extra"] * 50, extra)
    index.delete(["d0", "d1"])
    index.close(save=False)
    again = VectorIndex.open(tmp_path / "idx")
    assert len(again) == 148 and again.faiss.ntotal == 150 and again.tombstones
    assert top_ids(again, extra[:10]) == [[f"e{i}"] for i in range(10)]
    assert all(row[0] not in ("d0", "d1") for row in top_ids(again, vectors[:2]))


def test_compaction_drops_tombstones(tmp_path):
    index, vectors = make(tmp_path, "exact", n=100)
    index.delete([f"d{i}" for i in range(30)])
    assert index.faiss.ntotal == 70 and not index.tombstones
    assert top_ids(index, vectors[30:35]) == [[f"d{i}"] for i in range(30, 35)]


def test_other_connections_are_seen_on_the_next_search(tmp_path):
    reader, vectors = make(tmp_path, n=20)
    reader.save()
    writer = VectorIndex.open(tmp_path / "idx")
    writer.add(["late"], ["late"], unit(1, seed=5))
    writer.delete(["d0"])
    assert top_ids(reader, unit(1, seed=5)) == [["late"]]
    assert top_ids(reader, vectors[:1])[0][0] != "d0"


# ---- bad input and damaged directories ----------------------------------------------------------------
def test_dimension_mismatch_is_a_config_error(tmp_path):
    index, _ = make(tmp_path, n=5)
    with pytest.raises(ConfigError, match=r"\(2, 8\).*16-dim"):
        index.add(["a", "b"], ["a", "b"], unit(2, d=8))
    with pytest.raises(ConfigError, match="16-dim"):
        index.search(unit(1, d=8), 3)
    with pytest.raises(DataError, match="finite"):
        index.add(["nan"], ["nan"], np.full((1, D), np.nan, dtype=np.float32))


def test_damaged_snapshot_is_rebuilt_from_the_store(tmp_path, caplog):
    index, vectors = make(tmp_path, "hnsw", n=50)
    index.close()
    (tmp_path / "idx" / SNAPSHOT).write_bytes(b"\x00garbage" * 5)
    (tmp_path / "idx" / f".{SNAPSHOT}.999.tmp").write_bytes(b"torn write")
    with caplog.at_level(logging.WARNING, logger="polyformer.embeddings.index"):
        again = VectorIndex.open(tmp_path / "idx")
    assert "rebuilding" in caplog.text
    assert top_ids(again, vectors[:5]) == [[f"d{i}"] for i in range(5)]
    assert not list((tmp_path / "idx").glob("*.tmp"))


def test_damaged_or_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(IndexCorruptError, match="no such index directory"):
        VectorIndex.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexCorruptError, match="meta.json is missing"):
        VectorIndex.open(tmp_path / "empty")
    index, _ = make(tmp_path, n=5)
    index.close()
    meta = tmp_path / "idx" / "meta.json"
    good = meta.read_text()
    meta.write_text("{not json")
    with pytest.raises(IndexCorruptError, match="meta.json: unreadable"):
        VectorIndex.open(tmp_path / "idx")
    meta.write_text(good)
    store = tmp_path / "idx" / STORE
    for suffix in ("-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    store.write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexCorruptError, match="store.sqlite: not a readable index store"):
        VectorIndex.open(tmp_path / "idx")
    store.unlink()
    with pytest.raises(IndexCorruptError, match="item store is missing"):
        VectorIndex.open(tmp_path / "idx")
    with pytest.raises(ConfigError, match="already holds an index"):
        VectorIndex.create(tmp_path / "idx", IndexSpec(dimension=D))


# ---- a process killed during `index add` -------------------------------------------------------------------
def test_killed_index_add_keeps_every_acknowledged_item(tmp_path, tiny_sentence_encoder_dir):
    from polyformer.embeddings.semantic import open_encoder

    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"id": "seed", "text": "the first review"}) + "\n")
    build = subprocess.run([sys.executable, "-m", "polyformer.cli.main", "index", "build", "--model", str(tiny_sentence_encoder_dir),
                            "--input", str(seed), "--out", str(tmp_path / "idx"), "--kind", "hnsw", "--device", "cpu"],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"id": f"r{i}", "text": f"review number {i} says {i % 7} things"}) + "\n" for i in range(2_000)))
    process = subprocess.Popen([sys.executable, "-m", "polyformer.cli.main", "index", "add", str(tmp_path / "idx"),
                                "--input", str(big), "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged = 0
    try:
        for line in process.stdout:  # one line per committed chunk
            acknowledged = json.loads(line)["committed"]
            if acknowledged >= 2 * 256:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert 0 < acknowledged < 2_000, process.stderr.read()
    index = VectorIndex.open(tmp_path / "idx")
    stored = len(index)
    assert stored >= acknowledged + 1  # the seed, every acknowledged row (and perhaps a chunk committed after)
    encoder = open_encoder(index)
    probe = [f"r{i}" for i in range(0, acknowledged, 97)]
    texts = [f"review number {i} says {i % 7} things" for i in range(0, acknowledged, 97)]
    hits = index.search(encoder.encode(texts), k=5)
    assert all(key in [h.id for h in row] for key, row in zip(probe, hits))
    assert all(index.get(key)[0].text == text for key, text in zip(probe, texts))
    resumed = subprocess.run([sys.executable, "-m", "polyformer.cli.main", "index", "add", str(tmp_path / "idx"),
                              "--input", str(big), "--existing", "skip", "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert len(VectorIndex.open(tmp_path / "idx")) == 2_001


# ---- approximate search recall ---------------------------------------------------------------------------
def ann_recall(tmp_path: Path, kind: str, n: int, d: int, **spec) -> float:
    vectors, queries = unit(n, d, seed=1), unit(200, d, seed=2)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    index = VectorIndex.create(tmp_path / kind, IndexSpec(dimension=d, kind=kind, **spec))
    index.add([str(i) for i in range(n)], [""] * n, vectors)
    found = [[int(h.id) for h in row] for row in index.search(queries, 10)]
    recall = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))
    print(f"{kind} recall@10 on {n} random {d}-dim vectors: {recall:.3f}")
    return recall


@pytest.mark.parametrize("kind,spec", [("hnsw", {}), ("ivf", {"nprobe": 192})])
def test_ann_recall_on_20k_random_vectors(tmp_path, kind, spec):
    """Uniformly random vectors are the hardest case for ANN: IVF needs a third of its cells probed."""
    assert ann_recall(tmp_path, kind, 20_000, 32, **spec) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("kind,spec", [("hnsw", {}), ("ivf", {"nprobe": 256})])
def test_ann_recall_on_100k_random_vectors(tmp_path, kind, spec):
    assert ann_recall(tmp_path, kind, 100_000, 32, **spec) >= 0.95
