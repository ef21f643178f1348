"""`polyformer info PATH|NAME`: what a checkpoint is — architecture, sizes, parameters, dtype."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer


def stored_dtypes(path: Path) -> dict[str, int]:
    """How many tensors of each stored dtype a checkpoint holds (safetensors headers or GGUF types)."""
    if path.suffix == ".gguf":
        from polyformer.io.gguf import open_gguf

        return dict(Counter(tensor.tensor_type.name for tensor in open_gguf(path).tensors))
    from safetensors import safe_open

    from polyformer.io.loader import transformer_folder

    counts: Counter[str] = Counter()
    for file in sorted(transformer_folder(path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                counts[str(handle.get_slice(name).get_dtype())] += 1
    return dict(counts)


def describe(path_or_name: str, allow_pickle: bool = False) -> dict:
    """A JSON-able summary of the model at a path or catalog name."""
    import polyformer as pf
    from polyformer.locations import resolve

    path = resolve(path_or_name)
    model = pf.load(path, allow_pickle=allow_pickle, dtype="float32")  # a GGUF file: its full parameter count
    config = model.config
    return {
        "source": str(path_or_name),
        "arch": config.arch,
        "head": config.head,
        "parameters": model.num_parameters(),
        "dtype": str(model.dtype).removeprefix("torch."),
        "stored_dtypes": stored_dtypes(path),
        "layers": config.num_layers if config.arch != "encoder-decoder" else f"{config.num_layers}+{config.decoder_layers}",
        "hidden_size": config.hidden_size,
        "heads": config.num_heads,
        "kv_heads": config.kv_heads,
        "vocab_size": config.vocab_size,
        "max_positions": config.max_positions,
        "position": config.position,
        "norm": f"{config.norm_placement}-{config.norm}",
        "activation": config.activation,
        "tied_embeddings": config.tie_word_embeddings,
    }


def info(
    model: str = typer.Argument(..., help="A model folder, run directory, .gguf file, catalog name (see `polyformer data list`) "
                                "or hub id (org/name)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow .bin/.pt pickle checkpoints (loaded with weights_only=True)."),
) -> None:
    """Show a model's architecture, parameter count and dtype."""
    summary = describe(model, allow_pickle=allow_pickle)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=summary["source"], show_header=False)
    for key, value in summary.items():
        if key != "source":
            table.add_row(key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
