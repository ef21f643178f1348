"""`polyformer embed-eval --model M`: retrieval, clustering, kNN and similarity figures of an encoder.

Without data options it runs the built-in sets (polyformer/embeddings/datasets.py): retrieval of
speech continuations and clustering by play on held-out Shakespeare, kNN sentiment on Rotten
Tomatoes. With `--retrieval DIR` (BEIR layout), `--clustering FILE`, `--knn FILE` (text, label;
seeded 80/20 split) or `--similarity FILE` (text_a, text_b, score) it runs those instead.
Prints one JSON object; `--plot DIR` writes a 2-D projection PNG per clustering set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polyformer.cli.embed import DEVICE_HELP, DTYPE_HELP, MODEL_HELP, POOLING_HELP


def embed_eval(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    pooling: Optional[str] = typer.Option(None, "--pooling", help=POOLING_HELP),
    retrieval: Optional[Path] = typer.Option(None, "--retrieval", help="Folder with queries.jsonl, corpus.jsonl, qrels.tsv."),
    clustering: Optional[Path] = typer.Option(None, "--clustering", help=".jsonl/.csv with text and label."),
    knn: Optional[Path] = typer.Option(None, "--knn", help=".jsonl/.csv with text and label (80/20 split)."),
    similarity: Optional[Path] = typer.Option(None, "--similarity", help=".jsonl/.csv with text_a, text_b and score."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for 2-D projection plots (PNG) of the clustering sets."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts per batch."),
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", min=1, help="Tokens per text."),
    seed: int = typer.Option(0, "--seed", help="Seed of k-means and the kNN split."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=DTYPE_HELP),
) -> None:
    """Evaluate sentence embeddings; one JSON object of figures on stdout."""
    import json

    from polyformer.cli.embed import load_encoder
    from polyformer.embeddings import datasets
    from polyformer.embeddings.evaluation import EvalSets, evaluate_encoder

    if any(option is not None for option in (retrieval, clustering, knn, similarity)):
        sets = EvalSets()
        if retrieval is not None:
            sets.retrieval[retrieval.name] = datasets.read_retrieval_dir(retrieval)
        if clustering is not None:
            sets.clustering[clustering.stem] = datasets.read_labelled(clustering)
        if knn is not None:
            sets.classification[knn.stem] = datasets.split_labelled(datasets.read_labelled(knn), seed=seed)
        if similarity is not None:
            sets.similarity[similarity.stem] = datasets.read_scored_pairs(similarity)
    else:
        sets = datasets.builtin_sets()
    encoder = load_encoder(model, pooling, max_seq_length, device, dtype)
    results = evaluate_encoder(encoder, sets, batch_size=batch_size, plot_dir=plot, seed=seed)
    typer.echo(json.dumps({"model": model, "pooling": encoder.pooling, "dtype": encoder.dtype, **results}))


def register(app: typer.Typer) -> None:
    app.command("embed-eval")(embed_eval)
