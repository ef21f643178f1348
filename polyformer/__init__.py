"""polyformer: one Transformer core and every form of it — encoders, decoders, encoder–decoders.

Public names are imported on first use, so `import polyformer` (and `polyformer --help`) stays
fast: torch is loaded only when a model is.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "ModelConfig": "polyformer.config",
    "preset": "polyformer.config",
    "load": "polyformer.io.loader",
    "save": "polyformer.io.loader",
    "PolyformerModel": "polyformer.models",
    "ModelOutput": "polyformer.models",
    "load_tokenizer": "polyformer.tokenizers",
    "Tokenizer": "polyformer.tokenizers",
    "SentenceEncoder": "polyformer.embeddings",
    "VectorIndex": "polyformer.embeddings.index",
    "pipeline": "polyformer.pipelines",
    "GenerationConfig": "polyformer.generation",
    "TextGenerationPipeline": "polyformer.generation.pipeline",
    "apply_precision": "polyformer.precision",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polyformer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
