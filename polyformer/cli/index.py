"""`polyformer index build|add|delete|info`: a persistent vector index of texts (FAISS + SQLite).

    polyformer index build --model all-MiniLM-L6-v2 --input reviews.jsonl --out idx [--kind hnsw]
    polyformer index add idx --input more.jsonl [--existing skip]
    polyformer index delete idx ID [ID ...]
    polyformer index info idx

build and add print one JSON line `{"committed": N, "of": M}` per committed chunk (flushed): every
item counted there survives a crash. Items take `id`, `text` and metadata fields from jsonl/csv
(or one text per line from .txt). Queries: `polyformer search`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from polyformer.cli.embed import DEVICE_HELP, DTYPE_HELP, MODEL_HELP, POOLING_HELP

index_app = typer.Typer(help="Build and update a persistent vector index of texts.", no_args_is_help=True)
INPUT_HELP = ".txt (one text per line), .jsonl or .csv (text, id, metadata fields); repeatable."


def _acknowledge(total: int):
    def report(done: int) -> None:
        sys.stdout.write(json.dumps({"committed": done, "of": total}) + "\n")
        sys.stdout.flush()

    return report


@index_app.command("build")
def build(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    inputs: list[str] = typer.Option(..., "--input", help=INPUT_HELP),
    out: Path = typer.Option(..., "--out", help="Index directory to create."),
    kind: str = typer.Option("exact", "--kind", help="exact (flat inner product) | hnsw | ivf (approximate)."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help=POOLING_HELP),
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", min=1, help="Tokens per text."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per encoding batch."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", min=2, help="hnsw: links per node."),
    ef_search: int = typer.Option(128, "--ef-search", min=1, help="hnsw: candidates explored per query."),
    ivf_lists: Optional[int] = typer.Option(None, "--ivf-lists", min=1, help="ivf: k-means cells (default 4·sqrt(n))."),
    nprobe: int = typer.Option(16, "--nprobe", min=1, help="ivf: cells searched per query."),
    text_column: str = typer.Option("text", "--text-column", help="Field with the text."),
    id_column: str = typer.Option("id", "--id-column", help="Field with the id."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=DTYPE_HELP),
) -> None:
    """Embed texts and write a new index directory."""
    from polyformer.cli.embed import load_encoder
    from polyformer.embeddings.documents import read_items
    from polyformer.embeddings.semantic import build_index

    items = read_items(inputs, text_column, id_column)
    encoder = load_encoder(model, pooling, max_seq_length, device, dtype)
    index = build_index(out, encoder, items, model, kind, batch_size, on_commit=_acknowledge(len(items)),
                        hnsw_m=hnsw_m, ef_search=ef_search, ivf_lists=ivf_lists, nprobe=nprobe)
    typer.echo(f"{out}: {len(index)} items, {kind}, {encoder.dimension}-dim", err=True)
    index.close()


@index_app.command("add")
def add(
    directory: Path = typer.Argument(..., help="Index directory."),
    inputs: list[str] = typer.Option(..., "--input", help=INPUT_HELP),
    existing: str = typer.Option("error", "--existing", help="An id already indexed: error | skip | replace."),
    model: Optional[str] = typer.Option(None, "--model", help="Encoder to use instead of the index's own (same dimension)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per encoding batch."),
    text_column: str = typer.Option("text", "--text-column", help="Field with the text."),
    id_column: str = typer.Option("id", "--id-column", help="Field with the id."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Embed more texts (with the index's own model) and add them."""
    from polyformer.embeddings.documents import read_items
    from polyformer.embeddings.index import VectorIndex
    from polyformer.embeddings.semantic import add_items, open_encoder

    items = read_items(inputs, text_column, id_column)
    index = VectorIndex.open(directory)
    encoder = open_encoder(index, device, model=model)
    added = add_items(index, encoder, items, batch_size, existing, on_commit=_acknowledge(len(items)))  # type: ignore[arg-type]
    typer.echo(f"{directory}: added {added}, {len(index)} items in all", err=True)
    index.close()


@index_app.command("delete")
def delete(
    directory: Path = typer.Argument(..., help="Index directory."),
    ids: list[str] = typer.Argument(..., help="Ids of the items to remove."),
) -> None:
    """Remove items by id."""
    from polyformer.embeddings.index import VectorIndex

    index = VectorIndex.open(directory)
    removed = index.delete(ids)
    typer.echo(json.dumps({"deleted": removed, "items": len(index)}))
    index.close()


@index_app.command("info")
def info(directory: Path = typer.Argument(..., help="Index directory.")) -> None:
    """Kind, dimension, encoder and item count of an index (JSON)."""
    from dataclasses import asdict

    from polyformer.embeddings.index import VectorIndex

    index = VectorIndex.open(directory)
    typer.echo(json.dumps({"items": len(index), **asdict(index.spec)}))
    index.close(save=False)


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
