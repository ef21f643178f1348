"""`polyformer evaluate`: score a fine-tuned model (or a prompted decoder) on labelled data.

Without `--task` the model's own task is evaluated (`polyformer.tasks.inference`: its head and
the task it was fine-tuned for); `--prompt` means classify.

Prints the metrics as one JSON object on stdout and a table on stderr; with `--out DIR` also
writes metrics.json and, per task, confusion.png (classify, pair) or entities.md (ner, the
per-type report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from polyformer.cli import task_options as shared


def evaluate(
    task: Optional[str] = typer.Option(None, "--task", help=shared.TASK_HELP),
    model: str = shared.MODEL,
    data: str = typer.Option(..., "--data", help="Built-in data (rotten_tomatoes, wnut16, shakespeare, shakespeare-qa) or a labelled file."),
    split: Optional[str] = typer.Option(None, "--split", help="train | dev | test | all (default: test for built-in data, all for a file)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json and the plots / reports."),
    max_length: Optional[int] = shared.MAX_LENGTH,
    batch_size: int = shared.BATCH_SIZE,
    device: str = shared.DEVICE,
    stride: Optional[int] = shared.STRIDE,
    prompt: bool = shared.PROMPT,
    shots: int = shared.SHOTS,
    verbalizer: Optional[list[str]] = shared.VERBALIZER,
    template: Optional[str] = shared.TEMPLATE,
    instruction: Optional[str] = shared.INSTRUCTION,
    calibrate: bool = shared.CALIBRATE,
    seed: int = typer.Option(0, "--seed", help="--prompt: seed of the demonstrations' choice and order."),
    text_column: Optional[str] = shared.TEXT_COLUMN,
    text_a_column: Optional[str] = shared.TEXT_A_COLUMN,
    text_b_column: Optional[str] = shared.TEXT_B_COLUMN,
    label_column: Optional[str] = shared.LABEL_COLUMN,
    score_column: Optional[str] = shared.SCORE_COLUMN,
) -> None:
    """Evaluate a model on a split of labelled data: accuracy / F1 / correlations / EM."""
    from polyformer.tasks import recipe

    options = recipe.task_options(shared.columns(text_column, text_a_column, text_b_column, label_column, score_column),
                                  max_length=max_length, batch_size=batch_size, device=device, stride=stride)
    if prompt:
        from polyformer.tasks.prompting import evaluate_prompted

        shared.prompted_task(task)
        result = evaluate_prompted(model, data, split, options, shots=shots, verbalizers=shared.verbalizers(verbalizer),
                                   template=template, instruction=instruction, seed=seed, calibrate=calibrate)
        result.task = "classify"
    else:
        result = recipe.evaluate(task, model, data, split, options)
    shared.echo_json(result.metrics)
    _table(result.metrics)
    if out is not None:
        write_report(result, out, f"{result.task} · {Path(model).name} · {data}")


def _table(metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console(stderr=True).print(table)


def write_report(result, out: Path, title: str) -> None:
    """metrics.json (+ details) and the task's plot or report in `out`."""
    from polyformer.tasks.metrics import format_entity_report, plot_confusion

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({**result.metrics, **result.details}, indent=2) + "\n")
    if "confusion_matrix" in result.details:
        import numpy as np

        plot_confusion(np.asarray(result.details["confusion_matrix"]), result.details["labels"], out / "confusion.png", title)
    if "per_type" in result.details:
        (out / "entities.md").write_text(format_entity_report(result.details["per_type"]) + "\n")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
