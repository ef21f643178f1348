"""Checkpoint formats: native, Hugging Face (name-map tables per family), sentence-transformers, GGUF."""

from polyformer.io.loader import load, save

__all__ = ["load", "save"]
