"""`polyformer convert SRC DST --to hf|native`: rewrite a checkpoint in another layout."""

from __future__ import annotations

import typer

from polyformer.errors import PolyformerError


def convert(
    src: str = typer.Argument(..., help="Source: a model folder, .gguf file, or catalog name."),
    dst: str = typer.Argument(..., help="Destination folder (created)."),
    to: str = typer.Option("native", "--to", help="Output layout: hf (transformers' from_pretrained) or native."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow .bin/.pt pickle checkpoints (loaded with weights_only=True)."),
) -> None:
    """Convert a checkpoint to the Hugging Face or the native polyformer layout."""
    import polyformer as pf
    from polyformer.io.loader import FORMATS

    if to not in FORMATS:
        raise PolyformerError(f"--to {to!r} is not a format; choose one of {', '.join(FORMATS)}")
    model = pf.load(src, allow_pickle=allow_pickle, dtype="float32")  # a GGUF file dequantized: formats hold float weights
    out = pf.save(model, dst, format=to)
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
