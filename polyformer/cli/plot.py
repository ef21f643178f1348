"""`polyformer plot RUN_DIR`: draw a training run's loss and learning-rate curves to a PNG.

Reads RUN_DIR/metrics.csv (written by the trainer) and writes RUN_DIR/plot.png, or `--out`.
Works while a run is still going, on whatever it has logged so far.
"""

from __future__ import annotations

from pathlib import Path

import typer


def plot(
    run_dir: Path = typer.Argument(..., help="A run directory (the --out of pretrain / finetune)."),
    out: Path = typer.Option(None, "--out", help="Where to write the PNG (default: RUN_DIR/plot.png)."),
) -> None:
    """Plot loss (train and eval) and learning rate against step."""
    from polyformer.training.logging import plot_run

    typer.echo(str(plot_run(run_dir, out)))


def register(app: typer.Typer) -> None:
    app.command("plot")(plot)
