"""Embeddings: sentence encoders built on any polyformer model (pooling, normalisation, save/load)."""

from polyformer.embeddings.encoder import SentenceEncoder

__all__ = ["SentenceEncoder"]
