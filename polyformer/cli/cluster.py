"""`polyformer cluster`: k-means over sentence vectors; per cluster its most central texts and top terms.

    polyformer cluster --model all-MiniLM-L6-v2 --input reviews.jsonl --k 8
    polyformer cluster --index idx --k 8            # the vectors already stored in an index

Prints one JSON line per cluster (largest first): `cluster`, `size`, `terms` (class-based TF-IDF)
and `central` (id, text, cosine to the centroid). `--assignments FILE` writes every item's
cluster as JSON lines; `--pretty` prints a table to stderr instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polyformer.cli.embed import DEVICE_HELP, DTYPE_HELP, MODEL_HELP, POOLING_HELP


def cluster(
    k: int = typer.Option(..., "--k", min=1, help="Number of clusters."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    inputs: Optional[list[str]] = typer.Option(None, "--input", help="Texts: .txt (one per line), .jsonl or .csv; repeatable."),
    index: Optional[Path] = typer.Option(None, "--index", help="Cluster the items of this index instead."),
    central: int = typer.Option(3, "--central", min=1, help="Most central texts shown per cluster."),
    terms: int = typer.Option(8, "--terms", min=0, help="Top terms shown per cluster."),
    assignments: Optional[Path] = typer.Option(None, "--assignments", help="Write {id, cluster} JSON lines here."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help=POOLING_HELP),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per encoding batch."),
    seed: int = typer.Option(0, "--seed", help="k-means seed."),
    pretty: bool = typer.Option(False, "--pretty", help="A table on stderr instead of JSON lines."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=DTYPE_HELP),
) -> None:
    """Group texts by meaning with k-means."""
    import numpy as np

    from polyformer.embeddings.cluster import cluster_texts
    from polyformer.errors import DataError

    if (index is None) == (inputs is None):
        raise DataError("give --input FILE (with --model) or --index DIR")
    if index is not None:
        from polyformer.embeddings.index import VectorIndex

        with VectorIndex.open(index) as opened:
            ids, texts, vectors = opened.items()
    else:
        from polyformer.cli.embed import load_encoder
        from polyformer.embeddings.documents import read_items

        if model is None:
            raise DataError("--input needs --model (the encoder that embeds the texts)")
        items = read_items(inputs or [])
        ids, texts = [item.id for item in items], [item.text for item in items]
        vectors = np.asarray(load_encoder(model, pooling, None, device, dtype).encode(texts, batch_size=batch_size))
    clusters, labels = cluster_texts(texts, vectors, k, seed=seed, central=central, terms=terms)
    if assignments is not None:
        assignments.write_text("".join(json.dumps({"id": key, "cluster": int(c)}) + "\n" for key, c in zip(ids, labels)))
    if pretty:
        _table(clusters, ids)
        return
    for found in clusters:
        typer.echo(json.dumps({
            "cluster": found.cluster, "size": found.size, "terms": found.terms,
            "central": [{"id": ids[i], "text": text, "score": round(score, 4)} for i, text, score in found.central],
        }, ensure_ascii=False))


def _table(clusters, ids: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="clusters")
    for column in ("cluster", "size", "top terms", "most central text"):
        table.add_column(column)
    for found in clusters:
        table.add_row(str(found.cluster), str(found.size), ", ".join(found.terms), found.central[0][1][:80] if found.central else "")
    Console(stderr=True).print(table)


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster)
