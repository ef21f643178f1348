"""Embedding quality: retrieval, clustering, kNN classification, similarity correlation, 2-D plots.

Metrics take vectors (unit length: dot product = cosine) and labels, so they serve any encoder:

- `retrieval_metrics`: for each query, the corpus ranked by similarity; recall@k (share of the
  query's relevant documents in the top k), MRR@10 (1 / rank of the first relevant one, 0 past
  10) and nDCG@10 (binary gains, log2 discount, normalised by the ideal ranking), averaged.
- `clustering_v_measure`: k-means (k = number of labels) on the vectors, V-measure against the
  labels (the harmonic mean of homogeneity and completeness; 1 = the clusters are the labels).
- `knn_accuracy`: each test vector takes the majority label of its k most similar training
  vectors (ties go to the label with the larger summed similarity).
- `similarity_spearman`: Spearman correlation between cos(a_i, b_i) and human scores.
- `projection_plot`: a PCA projection to 2-D as a PNG scatter plot coloured by label.

`evaluate_encoder` runs them on data sets (`EvalSets`, see polyformer/embeddings/datasets.py for
the built-in ones) and returns one flat dict of figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polyformer.errors import DataError

CUTOFF = 10


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k) corpus indices of the k most similar documents per query, best first, and their scores."""
    k = min(k, len(corpus))
    indices = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk] @ corpus.T  # (q, N)
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        indices[start:start + chunk] = np.take_along_axis(part, order, axis=1)
        scores[start:start + chunk] = np.take_along_axis(part_scores, order, axis=1)
    return indices, scores


def retrieval_metrics(
    queries: np.ndarray, corpus: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """recall@k for each k, MRR@10 and nDCG@10; relevant[i] = corpus indices relevant to query i."""
    if len(queries) != len(relevant):
        raise DataError(f"{len(queries)} queries but {len(relevant)} relevance sets")
    if not len(queries) or not len(corpus):
        raise DataError("retrieval needs at least one query and one document")
    top, _ = top_k(queries, corpus, max(max(ks), CUTOFF))
    recalls = {k: [] for k in ks}
    mrr, ndcg = [], []
    discounts = 1.0 / np.log2(np.arange(2, CUTOFF + 2))
    for ranked, wanted in zip(top, relevant):
        if not wanted:
            raise DataError("every query needs at least one relevant document")
        hits = np.array([doc in wanted for doc in ranked])
        for k in ks:
            recalls[k].append(hits[:k].sum() / len(wanted))
        first = np.flatnonzero(hits[:CUTOFF])
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
        ideal = discounts[: min(len(wanted), CUTOFF)].sum()
        ndcg.append(float((hits[:CUTOFF] * discounts[: len(hits[:CUTOFF])]).sum() / ideal))
    result = {f"recall@{k}": float(np.mean(values)) for k, values in recalls.items()}
    result.update({"mrr@10": float(np.mean(mrr)), "ndcg@10": float(np.mean(ndcg))})
    return result


def clustering_v_measure(vectors: np.ndarray, labels: Sequence[Any], seed: int = 0) -> float:
    """V-measure of k-means clusters (k = number of distinct labels) against the labels."""
    from sklearn.metrics import v_measure_score

    from polyformer.embeddings.cluster import kmeans

    classes = sorted(set(labels), key=str)
    if len(classes) < 2:
        raise DataError("clustering needs texts of at least two labels")
    assignment, _ = kmeans(vectors, len(classes), seed=seed)
    return float(v_measure_score(list(map(str, labels)), assignment))


def knn_accuracy(
    train: np.ndarray, train_labels: Sequence[Any], test: np.ndarray, test_labels: Sequence[Any], k: int = 10
) -> float:
    """Accuracy of majority-vote kNN by cosine similarity."""
    if not len(train) or not len(test):
        raise DataError("kNN needs training and test vectors")
    classes, codes = np.unique(np.asarray(list(map(str, train_labels))), return_inverse=True)
    top, scores = top_k(test, train, k)  # (Q, k)
    correct = 0
    for row, neighbours in enumerate(top):
        votes = np.bincount(codes[neighbours], minlength=len(classes)).astype(np.float64)
        # ties: summed similarity, scaled to less than one vote in all
        votes += np.bincount(codes[neighbours], weights=(scores[row] + 1) / 2, minlength=len(classes)) / (k + 1)
        correct += classes[int(votes.argmax())] == str(test_labels[row])
    return correct / len(test)


def similarity_spearman(a: np.ndarray, b: np.ndarray, scores: Sequence[float]) -> float:
    """Spearman's rank correlation between cos(a_i, b_i) and the given scores."""
    from scipy.stats import spearmanr

    if len(a) != len(b) or len(a) != len(scores):
        raise DataError(f"{len(a)} first texts, {len(b)} second texts and {len(scores)} scores must match")
    if len(a) < 2:
        raise DataError("Spearman correlation needs at least two scored pairs")
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(min=1e-12)
    return float(spearmanr(cosine, np.asarray(scores, dtype=np.float64)).statistic)


def projection_plot(vectors: np.ndarray, labels: Sequence[Any], path: str | Path, title: str = "") -> Path:
    """A 2-D PCA projection of the vectors as a PNG scatter plot, one colour per label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    points = PCA(n_components=2, random_state=0).fit_transform(vectors)
    names = [str(label) for label in labels]
    figure, axes = plt.subplots(figsize=(7, 6), dpi=120)
    for name in sorted(set(names)):
        chosen = np.array([n == name for n in names])
        axes.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.6, label=name)
    axes.set_title(title or "2-D PCA projection")
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.legend(markerscale=2, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


# ---- a suite over data sets ----------------------------------------------------------------------
@dataclass
class RetrievalSet:
    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]  # per query, indices into corpus


@dataclass
class LabelledSet:
    texts: list[str]
    labels: list[str]


@dataclass
class ClassificationSet:
    train: LabelledSet
    test: LabelledSet


@dataclass
class ScoredPairs:
    a: list[str]
    b: list[str]
    scores: list[float]


@dataclass
class EvalSets:
    """What to evaluate on; each part is optional. `name` prefixes the figures (e.g. 'shakespeare')."""

    retrieval: dict[str, RetrievalSet] = field(default_factory=dict)
    clustering: dict[str, LabelledSet] = field(default_factory=dict)
    classification: dict[str, ClassificationSet] = field(default_factory=dict)
    similarity: dict[str, ScoredPairs] = field(default_factory=dict)


def evaluate_encoder(encoder, sets: EvalSets, batch_size: int = 64, plot_dir: str | Path | None = None, seed: int = 0) -> dict[str, float]:
    """Every metric of `sets` for `encoder` (a SentenceEncoder): {'<set>/<metric>': value, ...}."""

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=batch_size, normalize=True)

    results: dict[str, float] = {}
    started = time.perf_counter()
    for name, data in sets.retrieval.items():
        metrics = retrieval_metrics(encode(data.queries), encode(data.corpus), data.relevant)
        results.update({f"{name}/{key}": value for key, value in metrics.items()})
    for name, data in sets.clustering.items():
        vectors = encode(data.texts)
        results[f"{name}/v_measure"] = clustering_v_measure(vectors, data.labels, seed)
        if plot_dir is not None:
            projection_plot(vectors, data.labels, Path(plot_dir) / f"{name.replace('/', '_')}.png", f"{name}: PCA of the embeddings")
    for name, data in sets.classification.items():
        results[f"{name}/knn_accuracy"] = knn_accuracy(encode(data.train.texts), data.train.labels,
                                                       encode(data.test.texts), data.test.labels)
    for name, data in sets.similarity.items():
        results[f"{name}/spearman"] = similarity_spearman(encode(data.a), encode(data.b), data.scores)
    results["seconds"] = time.perf_counter() - started
    return results


__all__ = [
    "ClassificationSet", "EvalSets", "LabelledSet", "RetrievalSet", "ScoredPairs", "clustering_v_measure",
    "evaluate_encoder", "knn_accuracy", "projection_plot", "retrieval_metrics", "similarity_spearman", "top_k",
]
