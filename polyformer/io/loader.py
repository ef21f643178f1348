"""`pf.load` / `pf.save`: one entry point for every checkpoint layout polyformer reads.

A Hugging Face folder, a sentence-transformers folder, a GGUF file or a native polyformer folder —
recognised by what is on disk, not by flags — given as a path, a run directory, a catalog name or
a hub id (`polyformer.locations.resolve`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyformer.errors import UnknownModelError
from polyformer.io.hf import load_hf, save_hf
from polyformer.io.native import is_native, load_native, save_native
from polyformer.io.safetensors_io import PICKLE_SUFFIXES
from polyformer.locations import resolve

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel

FORMATS = ("native", "hf")


def transformer_folder(directory: Path) -> Path:
    """For a sentence-transformers folder, the folder holding its Transformer module; else itself."""
    from polyformer.io.sentence_transformers import is_sentence_transformers_folder, read_folder

    return read_folder(directory).transformer if is_sentence_transformers_folder(directory) else directory


def load(path_or_name: str | Path, *, head: str | None = None, allow_pickle: bool = False, dtype: str | None = None,
         **overrides) -> PolyformerModel:
    """Load any supported checkpoint as a PolyformerModel in eval mode.

    dtype None keeps what the checkpoint stores: float32 for folders, and for a GGUF file its
    Q4_0 / Q4_1 / Q8_0 weights quantized in memory (`polyformer.io.gguf_blocks`; inference only).
    "float32" dequantizes a GGUF file; "bfloat16" / "int8" convert the linear layers
    (`polyformer.precision`).
    """
    path = resolve(path_or_name)
    if path.is_file() and path.suffix == ".gguf":
        from polyformer.io.gguf import load_gguf

        return load_gguf(path, dtype=dtype)
    model = _load_file_or_folder(path, head, allow_pickle, overrides)
    if dtype is None:
        return model
    from polyformer.precision import apply_precision

    return apply_precision(model, dtype)


def _load_file_or_folder(path: Path, head: str | None, allow_pickle: bool, overrides: dict) -> PolyformerModel:
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES or path.suffix == ".safetensors" or path.name == "config.json":
            return _load_file_or_folder(path.parent, head, allow_pickle, overrides)
        raise UnknownModelError(f"{path}: not a model file polyformer can read (expected a folder, .gguf or .safetensors)")
    folder = transformer_folder(path)
    if not (folder / "config.json").is_file():
        raise UnknownModelError(f"{folder}: no config.json here; expected a Hugging Face, sentence-transformers or "
                                "polyformer folder, or a .gguf file")
    if is_native(folder):
        model = load_native(folder, allow_pickle=allow_pickle)
        if head is not None or overrides:
            raise UnknownModelError("changing the head of a native checkpoint on load is not supported yet; load it, then build a new head")
        return model
    return load_hf(folder, head=head, allow_pickle=allow_pickle, **overrides)


def save(model: PolyformerModel, out_dir: str | Path, format: str = "native", tokenizer: Any = None) -> Path:
    """Write a model as a polyformer folder (native) or a transformers folder (hf), with its tokenizer when given.

    `format="hf"` writes what `transformers.pipeline(task, out_dir)` loads: config.json (labels as
    id2label), model.safetensors, generation_config.json for generative models and the tokenizer.
    """
    if format not in FORMATS:
        raise UnknownModelError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    if format == "hf":
        save_hf(model, out, tokenizer)
    else:
        save_native(model, out)
        if tokenizer is not None:
            tokenizer.save(out)
    return out
