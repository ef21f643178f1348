"""`polyformer search DIR "query" -k 10`: the nearest items of an index as JSON lines.

Each hit is one line: `id`, `score` (cosine), `text` and the item's `metadata`; with several
queries (`--queries FILE`) each line also names its `query`. `--where field=value` keeps items
whose metadata field equals the value (repeatable; values are read as JSON when they parse, so
`--where stars=5` is a number and `--where label=fresh` a string). `--like ID` is "more like
this": the items most similar to a stored one. `--pretty` prints a table to stderr instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from polyformer.cli.embed import DEVICE_HELP


def parse_where(items: list[str]) -> dict[str, Any]:
    """`field=value` filters; a value is JSON when it parses as JSON, else the string itself."""
    from polyformer.errors import DataError

    where: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--where {item!r}: expected FIELD=VALUE, e.g. --where label=fresh")
        try:
            where[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            where[key.strip()] = raw
    return where


def search(
    directory: Path = typer.Argument(..., help="Index directory (polyformer index build)."),
    query: Optional[str] = typer.Argument(None, help="Query text."),
    k: int = typer.Option(10, "-k", "--k", min=1, help="Hits per query."),
    like: Optional[str] = typer.Option(None, "--like", help="More like this: the id of a stored item instead of a query."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="A file of queries (.txt one per line, .jsonl/.csv text)."),
    where: Optional[list[str]] = typer.Option(None, "--where", help="Metadata filter FIELD=VALUE (repeatable, all must hold)."),
    pretty: bool = typer.Option(False, "--pretty", help="A table on stderr instead of JSON lines."),
    model: Optional[str] = typer.Option(None, "--model", help="Encoder for the queries instead of the index's own (same dimension)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Search an index by text, by a file of queries, or by a stored item (--like)."""
    from polyformer.embeddings.documents import read_items
    from polyformer.embeddings.index import VectorIndex
    from polyformer.errors import DataError

    chosen = [name for name, value in (("QUERY", query), ("--like", like), ("--queries", queries)) if value is not None]
    if len(chosen) != 1:
        raise DataError("give exactly one of QUERY, --like ID or --queries FILE" + (f" (got {', '.join(chosen)})" if chosen else ""))
    filters = parse_where(where or [])
    index = VectorIndex.open(directory)
    if like is not None:
        results = [(like, index.like(like, k, filters or None))]
    else:
        from polyformer.embeddings.semantic import open_encoder, search_texts

        texts = [query] if query is not None else [item.text for item in read_items([str(queries)])]
        results = list(zip(texts, search_texts(index, open_encoder(index, device, model=model), texts, k, filters or None)))
    index.close(save=False)
    if pretty:
        _table(results)
        return
    for asked, hits in results:
        for hit in hits:
            row = {"id": hit.id, "score": round(hit.score, 6), "text": hit.text, "metadata": hit.metadata}
            typer.echo(json.dumps({**row, "query": asked} if len(results) > 1 else row, ensure_ascii=False))


def _table(results: list[tuple[str, list]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    for asked, hits in results:
        table = Table(title=asked)
        for column in ("id", "score", "text"):
            table.add_column(column)
        for hit in hits:
            table.add_row(hit.id, f"{hit.score:.3f}", hit.text[:100])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
