"""Embeddings: sentence encoders from any polyformer model, contrastive training, a persistent vector
index, clustering and evaluation.

    SentenceEncoder      texts → vectors (encoder.py)
    MultipleNegativesRanking, train_contrastive     contrastive fine-tuning (contrastive.py, training.py)
    VectorIndex          FAISS + SQLite index in a directory (index.py; with an encoder: semantic.py)
    cluster_texts        k-means with central texts and top terms (cluster.py)
    evaluate_encoder     retrieval / clustering / kNN / similarity figures (evaluation.py, datasets.py)

Only `SentenceEncoder` is imported eagerly; the rest load on first use.
"""

from __future__ import annotations

from polyformer.embeddings.encoder import SentenceEncoder
from polyformer.runtime import lazy_attributes

_LAZY = {
    "MultipleNegativesRanking": "polyformer.embeddings.contrastive",
    "train_contrastive": "polyformer.embeddings.training",
    "VectorIndex": "polyformer.embeddings.index",
    "IndexSpec": "polyformer.embeddings.index",
    "cluster_texts": "polyformer.embeddings.cluster",
    "evaluate_encoder": "polyformer.embeddings.evaluation",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = ["SentenceEncoder", *_LAZY]
