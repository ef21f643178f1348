"""What a run shows and leaves behind: a progress bar, metrics.csv, TensorBoard events, plot.png.

Only rank 0 logs. `RunLogger` receives one row (a dict with "step") per logged step:
- stderr: a rich progress bar (step, loss, tokens/s, ETA) on a terminal; on a pipe or a log
  file, one plain line per row instead (cluster logs stay readable).
- `metrics.csv`: one line per row; columns are every key seen so far, first-seen order. A new
  key (the first evaluation) rewrites the file with the wider header. On resume the file is
  rewritten from the checkpoint's history, so a resumed run's CSV equals an uninterrupted one's.
  Floats are written with `repr` (shortest exact form).
- `tb/`: TensorBoard scalars (train/* and eval/*); a resumed run purges events past its step.
- `plot.png`: loss (train and eval) and learning rate against step, drawn with matplotlib's
  Agg canvas (no display, no global backend switch). `plot_run` redraws it from the CSV.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from polyformer.errors import DataError
from polyformer.runtime import write_atomic

METRICS_CSV = "metrics.csv"
PLOT_PNG = "plot.png"
TB_DIR = "tb"


# ---- CSV -------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Write all rows atomically; returns the header."""
    header = columns_of(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in header])
    write_atomic(path, buffer.getvalue())
    return header


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """Rows of a metrics.csv as floats (empty cells left out)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no metrics file (is this a polyformer run directory?)")
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)} for row in csv.DictReader(handle)]


class MetricsCSV:
    """Appends rows to metrics.csv, widening the header when a new column appears."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]) -> None:
        self.path = path
        self.header = write_csv(path, rows)

    def append(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if set(row) - set(self.header):
            self.header = write_csv(self.path, rows)
            return
        with self.path.open("a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow([_cell(row.get(column)) for column in self.header])
            handle.flush()


# ---- TensorBoard -----------------------------------------------------------------------------------
def _tensorboard_writer(run_dir: Path, start_step: int) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a stripped install still trains
        return None
    return SummaryWriter(log_dir=str(run_dir / TB_DIR), purge_step=start_step + 1 if start_step else None)


def _tag(key: str) -> str:
    return f"eval/{key.removeprefix('eval_')}" if key.startswith("eval_") else f"train/{key}"


# ---- the logger ------------------------------------------------------------------------------------
def _describe(row: dict[str, Any], total: int) -> str:
    parts = [f"step {row['step']}/{total}"]
    for key in ("loss", "eval_loss", "lr", "tokens_per_s"):
        if key in row:
            value = row[key]
            parts.append(f"{key} {value:.4g}" if key != "tokens_per_s" else f"{value:,.0f} tok/s")
    return "  ".join(parts)


class RunLogger:
    """Rank 0's sink for one run; every method is a no-op when `enabled` is False."""

    def __init__(
        self,
        run_dir: Path | None,
        total_steps: int,
        start_step: int,
        history: list[dict[str, Any]],
        progress: bool = True,
        tensorboard: bool = True,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.total = total_steps
        self.console = Console(stderr=True)
        self.csv = MetricsCSV(run_dir / METRICS_CSV, history) if enabled and run_dir else None
        self.tb = _tensorboard_writer(run_dir, start_step) if enabled and run_dir and tensorboard else None
        self.bar: Progress | None = None
        if enabled and progress and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[speed]} tok/s"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, loss="-", speed="-")
            self.bar.start()
        self.plain = enabled and progress and self.bar is None

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step)

    def log(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Record one row (already appended to `history`)."""
        if not self.enabled:
            return
        if self.csv is not None:
            self.csv.append(row, history)
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(_tag(key), value, row["step"])
        if self.bar is not None:
            fields = {}
            if "loss" in row:
                fields["loss"] = f"{row['loss']:.4f}"
            if "tokens_per_s" in row:
                fields["speed"] = f"{row['tokens_per_s']:,.0f}"
            self.bar.update(self.task, completed=row["step"], **fields)
        elif self.plain:
            self.console.print(_describe(row, self.total), highlight=False)

    def close(self, history: list[dict[str, Any]], plot: bool = True) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.stop()
        if self.tb is not None:
            self.tb.close()
        if plot and self.run_dir is not None and history:
            plot_metrics(history, self.run_dir / PLOT_PNG)


# ---- plots -----------------------------------------------------------------------------------------
def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in rows if key in row and row[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_metrics(rows: list[dict[str, Any]], out: Path) -> Path:
    """Loss (train, eval) and learning rate against step, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        steps, values = _series(rows, key)
        if steps:
            loss_axes.plot(steps, values, label=label, marker="o" if key == "eval_loss" else None)
    loss_axes.set_ylabel("loss")
    loss_axes.grid(alpha=0.3)
    if loss_axes.lines:
        loss_axes.legend()
    steps, values = _series(rows, "lr")
    lr_axes.plot(steps, values, color="tab:green")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("step")
    lr_axes.grid(alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw a run directory's metrics.csv to `out` (default RUN_DIR/plot.png)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / METRICS_CSV)
    if not rows:
        raise DataError(f"{run_dir / METRICS_CSV}: no rows to plot yet")
    return plot_metrics(rows, Path(out) if out else run_dir / PLOT_PNG)
