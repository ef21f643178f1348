"""Clustering sentence vectors: k-means, the most central texts and the top terms of each cluster.

k-means runs on unit vectors (scikit-learn, k-means++ starts, seeded), so clusters group texts by
cosine similarity. Each cluster is described by

- its most central texts: the members most similar to the (normalised) centroid;
- its top terms: class-based TF-IDF (as in BERTopic) — a term scores high when it is frequent in
  this cluster and rare in the corpus as a whole: tf(t, c) · log(1 + A / f(t)), with tf the
  term's share of the cluster's words, f(t) its count over all clusters and A the average
  number of words per cluster. English stop words and tokens under 3 letters are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polyformer.errors import DataError


@dataclass
class Cluster:
    cluster: int
    size: int
    central: list[tuple[int, str, float]]  # (text index, text, cosine to the centroid), best first
    terms: list[str]


def kmeans(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N,) cluster of each vector and (k, D) unit-length centroids."""
    from sklearn.cluster import KMeans

    if not isinstance(k, int) or k < 1:
        raise DataError(f"the number of clusters must be a positive integer, got {k!r}")
    if len(vectors) < k:
        raise DataError(f"cannot make {k} clusters of {len(vectors)} texts; use a smaller --k")
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(np.asarray(vectors, dtype=np.float32))
    centroids = model.cluster_centers_ / np.linalg.norm(model.cluster_centers_, axis=1, keepdims=True).clip(min=1e-12)
    return model.labels_.astype(np.int64), centroids.astype(np.float32)


def top_terms(texts: Sequence[str], assignment: np.ndarray, k: int, count: int = 8) -> list[list[str]]:
    """The `count` highest class-based TF-IDF terms of each of the k clusters."""
    from sklearn.feature_extraction.text import CountVectorizer

    documents = [" ".join(texts[i] for i in np.flatnonzero(assignment == c)) for c in range(k)]
    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b", lowercase=True)
    try:
        counts = vectorizer.fit_transform(documents).toarray().astype(np.float64)  # (k, V)
    except ValueError:  # no term left at all (empty or stop-word-only texts)
        return [[] for _ in range(k)]
    vocabulary = vectorizer.get_feature_names_out()
    tf = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    idf = np.log(1 + counts.sum(axis=1).mean() / counts.sum(axis=0).clip(min=1))
    scores = tf * idf
    return [[str(vocabulary[j]) for j in np.argsort(-row, kind="stable")[:count] if row[j] > 0] for row in scores]


def cluster_texts(
    texts: Sequence[str], vectors: np.ndarray, k: int, seed: int = 0, central: int = 3, terms: int = 8
) -> tuple[list[Cluster], np.ndarray]:
    """k-means on the vectors of `texts`: clusters sorted by size (largest first), and each text's cluster."""
    if len(texts) != len(vectors):
        raise DataError(f"{len(texts)} texts but {len(vectors)} vectors")
    assignment, centroids = kmeans(vectors, k, seed)
    words = top_terms(texts, assignment, k, terms)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(assignment == c)
        similarity = vectors[members] @ centroids[c]
        best = members[np.argsort(-similarity, kind="stable")[:central]]
        clusters.append(Cluster(c, len(members), [(int(i), texts[i], float(vectors[i] @ centroids[c])) for i in best], words[c]))
    clusters.sort(key=lambda cluster: -cluster.size)
    return clusters, assignment


__all__ = ["Cluster", "cluster_texts", "kmeans", "top_terms"]
