"""Embedding metrics against hand computations, clustering descriptions, built-in sets, batching plans."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polyformer.embeddings.cluster import cluster_texts, top_terms
from polyformer.embeddings.encoder import plan_batches
from polyformer.embeddings.evaluation import (
    clustering_v_measure,
    knn_accuracy,
    projection_plot,
    retrieval_metrics,
    similarity_spearman,
)
from polyformer.errors import DataError


def axes(*rows: list[float]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_retrieval_metrics_by_hand():
    corpus = np.eye(4, dtype=np.float32)  # documents 0..3 along the axes
    # query 0 ranks 0 > 1 > 2 > 3; query 1 ranks 2 > 1 > 0 > 3
    queries = axes([4, 3, 2, 1], [2, 3, 4, 1])
    relevant = [{1}, {0, 1}]
    got = retrieval_metrics(queries, corpus, relevant, ks=(1, 2))
    # query 0: first relevant at rank 2; query 1: relevant at ranks 2 and 3
    assert got["recall@1"] == 0.0
    assert got["recall@2"] == pytest.approx((1 + 0.5) / 2)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    ndcg0 = (1 / math.log2(3)) / 1.0
    ndcg1 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg0 + ndcg1) / 2)
    with pytest.raises(DataError, match="2 queries but 1"):
        retrieval_metrics(queries, corpus, [{0}])
    with pytest.raises(DataError, match="at least one relevant"):
        retrieval_metrics(queries, corpus, [{0}, set()])


def separable(n_per: int = 20, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8, dtype=np.float32) * 5
    x = np.concatenate([c + rng.normal(0, 0.3, (n_per, 8)) for c in centres]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), [name for name in "abc" for _ in range(n_per)]


def test_v_measure_knn_and_spearman():
    x, labels = separable()
    assert clustering_v_measure(x, labels) == pytest.approx(1.0)
    shuffled = list(np.random.default_rng(1).permutation(labels))
    assert clustering_v_measure(x, shuffled) < 0.2
    assert knn_accuracy(x[::2], labels[::2], x[1::2], labels[1::2], k=5) == 1.0
    flipped = ["b" if label == "a" else label for label in labels[1::2]]
    assert knn_accuracy(x[::2], labels[::2], x[1::2], flipped, k=5) == pytest.approx(2 / 3)
    a = axes([1, 0], [1, 0], [1, 0])
    b = axes([1, 0], [1, 1], [0, 1])  # cosines 1, 0.71, 0
    assert similarity_spearman(a, b, [5, 3, 1]) == pytest.approx(1.0)
    assert similarity_spearman(a, b, [1, 3, 5]) == pytest.approx(-1.0)
    with pytest.raises(DataError, match="at least two labels"):
        clustering_v_measure(x, ["same"] * len(x))


def test_knn_ties_go_to_the_more_similar_label():
    train = axes([1, 0.1], [1, -0.5])
    assert knn_accuracy(train, ["near", "far"], axes([1, 0.1]), ["near"], k=2) == 1.0
    assert knn_accuracy(train, ["far", "near"], axes([1, -0.5]), ["near"], k=2) == 1.0


def test_projection_plot_writes_a_png(tmp_path):
    x, labels = separable()
    path = projection_plot(x, labels, tmp_path / "plot.png", "three blobs")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clusters_have_central_texts_and_distinctive_terms():
    x, labels = separable(n_per=6)
    words = {"a": "banana apple fruit", "b": "engine wheel motor", "c": "violin piano music"}
    texts = [f"{words[label]} number {i}" for i, label in enumerate(labels)]
    clusters, assignment = cluster_texts(texts, x, 3, central=2, terms=3)
    assert sorted(c.size for c in clusters) == [6, 6, 6] and len(assignment) == 18
    for cluster in clusters:
        members = {labels[i] for i, _, _ in cluster.central}
        assert len(members) == 1
        assert set(cluster.terms) == set(words[members.pop()].split())
        scores = [score for _, _, score in cluster.central]
        assert scores == sorted(scores, reverse=True)
    assert top_terms(["the and of", "a an"], np.array([0, 1]), 2) == [[], []]  # stop words only
    with pytest.raises(DataError, match="3 clusters of 2 texts"):
        cluster_texts(["x", "y"], x[:2], 3)


def test_plan_batches_respects_the_token_budget():
    lengths = [5, 40, 12, 40, 3, 25, 7, 7]
    fixed = plan_batches(lengths, batch_size=3)
    assert [len(b) for b in fixed] == [3, 3, 2] and [lengths[i] for i in fixed[0]] == [40, 40, 25]
    budget = plan_batches(lengths, batch_size=3, max_tokens=80)
    assert sorted(i for b in budget for i in b) == list(range(8))
    for batch in budget:
        assert len(batch) * max(lengths[i] for i in batch) <= 80 or len(batch) == 1
    assert [len(b) for b in budget] == [2, 3, 3]  # 2 x 40, then 3 x 25 (<= 80), then the short ones
    assert plan_batches([500], 8, max_tokens=10) == [[0]]  # a text longer than the budget goes alone


def test_builtin_sets_are_deterministic_and_disjoint(shakespeare_dir, rotten_tomatoes_rows):
    from polyformer.embeddings import datasets

    retrieval = datasets.shakespeare_retrieval()
    assert len(retrieval.queries) == len(retrieval.corpus) == 1000
    assert retrieval.relevant[:3] == [{0}, {1}, {2}] and datasets.shakespeare_retrieval().queries == retrieval.queries
    plays = datasets.shakespeare_plays()
    assert len(set(plays.labels)) == 4 and len(plays.texts) == 800
    knn = datasets.rotten_tomatoes_knn()
    assert (len(knn.train.texts), len(knn.test.texts)) == (2000, 1000)
    assert len(set(knn.train.texts) & set(knn.test.texts)) < 5  # disjoint rows (a few snippets repeat in the corpus)
    assert set(knn.test.labels) == {"fresh", "rotten"}
