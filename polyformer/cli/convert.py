"""`polyformer convert SRC DST --to hf|native`: rewrite a checkpoint in another layout, tokenizer included.

The source's tokenizer (its files, the vocabulary inside a GGUF, a run's saved tokenizer) goes
with the weights, so `--to hf` gives a folder `transformers.pipeline(task, DST)` runs as it is; a
sentence-transformers source keeps its modules (pooling, normalisation).
"""

from __future__ import annotations

from pathlib import Path

import typer

from polyformer.errors import PolyformerError

_MODEL_FILES = (".safetensors", ".bin", ".pt", ".json")  # a file of a model folder: its tokenizer is beside it


def convert(
    src: str = typer.Argument(..., help="Source: a model folder, run directory, .gguf file, catalog name or hub id."),
    dst: str = typer.Argument(..., help="Destination folder (created)."),
    to: str = typer.Option("native", "--to", help="Output layout: hf (transformers' from_pretrained / pipeline) or native."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow .bin/.pt pickle checkpoints (loaded with weights_only=True)."),
) -> None:
    """Convert a checkpoint (and its tokenizer) to the Hugging Face or the native polyformer layout."""
    from polyformer.io.loader import FORMATS
    from polyformer.io.sentence_transformers import is_sentence_transformers_folder
    from polyformer.locations import resolve

    if to not in FORMATS:
        raise PolyformerError(f"--to {to!r} is not a format; choose one of {', '.join(FORMATS)}")
    path = resolve(src)
    if to == "hf" and path.is_dir() and is_sentence_transformers_folder(path):
        out = _sentence_transformers(path, Path(dst))
    else:
        out = _model_and_tokenizer(src, path, Path(dst), to, allow_pickle)
    typer.echo(str(out))


def _model_and_tokenizer(src: str, path: Path, dst: Path, to: str, allow_pickle: bool) -> Path:
    import polyformer as pf
    from polyformer.tokenizers import CharTokenizer
    from polyformer.tokenizers.load import find_tokenizer

    model = pf.load(path, allow_pickle=allow_pickle, dtype="float32")  # a GGUF file dequantized: formats hold float weights
    tokenizer = find_tokenizer(path.parent if path.is_file() and path.suffix in _MODEL_FILES else path)
    if tokenizer is None:
        typer.echo(f"note: {src} has no tokenizer files; wrote the model only", err=True)
    elif to == "hf" and isinstance(tokenizer, CharTokenizer):
        typer.echo("note: a character-level tokenizer has no transformers equivalent; wrote the model only", err=True)
        tokenizer = None
    return pf.save(model, dst, format=to, tokenizer=tokenizer)


def _sentence_transformers(path: Path, dst: Path) -> Path:
    """A sentence-transformers folder rewritten with the same modules (pooling, normalisation, length)."""
    from polyformer.io.hf import load_hf
    from polyformer.io.sentence_transformers import read_folder, write_folder
    from polyformer.tokenizers import load_tokenizer

    folder = read_folder(path)
    return write_folder(dst, load_hf(folder.transformer), load_tokenizer(folder.transformer), folder.pooling,
                        normalize=folder.normalize, max_seq_length=folder.max_seq_length,
                        do_lower_case=folder.do_lower_case)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
