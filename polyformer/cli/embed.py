"""`polyformer embed --model M --input FILE`: one JSON line of `id` and `embedding` per input text.

Texts come from .txt (one per line, `-` for stdin), .jsonl or .csv files (field `text`, optional
`id`). Vectors are pooled as the model's folder says (or `--pooling`) and unit length unless
`--no-normalize`. Texts longer than the model's limit are truncated, and a warning says how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

MODEL_HELP = "Catalog name (all-MiniLM-L6-v2, SmolLM2-135M-Instruct), sentence-transformers / HF folder, .gguf file or hub id (org/name)."
POOLING_HELP = "cls | mean | max | last | weighted-mean (default: the folder's, else mean for encoders, last for decoders)."
DTYPE_HELP = "float32 | bfloat16 (whole model) | int8 (CPU: weight-only int8 linear layers) | float16 (GPU)."
DEVICE_HELP = "auto | cpu | cuda | cuda:N."


def load_encoder(model: str, pooling: Optional[str], max_seq_length: Optional[int], device: str, dtype: str):
    """The SentenceEncoder the embedding verbs share, with their common options."""
    from polyformer.embeddings import SentenceEncoder

    return SentenceEncoder.load(model, pooling=pooling, max_seq_length=max_seq_length, device=device, dtype=dtype)


def embed(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    inputs: list[str] = typer.Option(..., "--input", help=".txt (one text per line; - for stdin), .jsonl or .csv; repeatable."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batches hold batch-size x 128 padded tokens (short texts: more of them)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Padded tokens per batch (overrides --batch-size)."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help=POOLING_HELP),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize", help="Scale vectors to unit length."),
    max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length", min=1, help="Tokens per text; longer texts are truncated."),
    text_column: str = typer.Option("text", "--text-column", help="jsonl field / csv column with the text."),
    id_column: str = typer.Option("id", "--id-column", help="jsonl field / csv column with the id."),
    npy: Optional[Path] = typer.Option(None, "--npy", help="Also write the (N, D) float32 matrix to this .npy file."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help=DTYPE_HELP),
) -> None:
    """Embed texts: JSON lines {"id", "embedding"} on stdout, in input order."""
    import json

    import numpy as np

    from polyformer.embeddings.documents import read_items

    items = read_items(inputs, text_column, id_column)
    encoder = load_encoder(model, pooling, max_seq_length, device, dtype)
    vectors = encoder.encode([item.text for item in items], batch_size=batch_size, max_tokens=max_tokens, normalize=normalize)
    for item, vector in zip(items, vectors):
        typer.echo(json.dumps({"id": item.id, "embedding": [round(float(x), 7) for x in vector]}))
    if npy is not None:
        np.save(npy, vectors)


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
