"""polyformer: one Transformer core and every form of it — encoders, decoders, encoder–decoders."""

from polyformer.config import ModelConfig, preset
from polyformer.io import load, save
from polyformer.models import ModelOutput, PolyformerModel

__version__ = "0.1.0"


def load_tokenizer(path_or_name):
    """Load the tokenizer of a model folder, tokenizer file, GGUF file or catalog name."""
    from polyformer.tokenizers import load_tokenizer as _load

    return _load(path_or_name)


def __getattr__(name: str):
    # SentenceEncoder pulls in numpy-heavy modules; import it on first use.
    if name == "SentenceEncoder":
        from polyformer.embeddings import SentenceEncoder

        return SentenceEncoder
    raise AttributeError(f"module 'polyformer' has no attribute {name!r}")


__all__ = ["ModelConfig", "ModelOutput", "PolyformerModel", "SentenceEncoder", "load", "load_tokenizer", "preset", "save"]
