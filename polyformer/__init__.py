"""polyformer: one Transformer core and every form of it — encoders, decoders, encoder–decoders.

Public names are imported on first use, so `import polyformer` (and `polyformer --help`) stays
fast: torch is loaded only when a model is.
"""

from __future__ import annotations

from polyformer.runtime import lazy_attributes

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
    "pipeline": "polyformer.task_pipelines",
    "GenerationConfig": "polyformer.generation",
    "TextGenerationPipeline": "polyformer.generation.text_pipeline",
    "apply_precision": "polyformer.precision",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
