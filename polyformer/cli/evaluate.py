"""`polyformer evaluate`: score a fine-tuned model (or a prompted decoder) on labelled data.

Without `--task` the model's own task is evaluated (`polyformer.tasks.inference`: its head and
the task it was fine-tuned for); `--prompt` means classify.

Prints the metrics as one JSON object on stdout and a table on stderr (translate: with the
sacreBLEU signatures); with `--out DIR` also writes metrics.json and, per task, confusion.png
(classify, pair), entities.md (ner, the per-type report) or translations.jsonl (translate: each
source, reference and output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from polyformer.cli import task_options as shared
from polyformer.cli.options import grouped


def evaluate(
    task: Optional[str] = typer.Option(None, "--task", help=shared.TASK_HELP),
    model: Optional[str] = typer.Option(None, "--model", help=shared.MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Built-in data (rotten_tomatoes, wnut16, shakespeare, shakespeare-qa) or a labelled file."),
    split: Optional[str] = typer.Option(None, "--split", help="train | dev | test | all (default: test for built-in data, all for a file)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for metrics.json and the plots / reports."),
    inference: shared.Inference = shared.Inference(),
    prompting: shared.Prompting = shared.Prompting(),
    texts: shared.TextColumns = shared.TextColumns(),
    labels: shared.LabelColumns = shared.LabelColumns(),
    decoding: shared.Decoding = shared.Decoding(),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="translate: score a baseline instead of a model: "
                                           "copy (each source as its own translation)."),
) -> None:
    """Evaluate a model on a split of labelled data: accuracy / F1 / correlations / EM / BLEU and chrF."""
    from polyformer.errors import ConfigError
    from polyformer.tasks import recipe

    options = shared.task_options(inference, texts, labels, decoding, prompting)
    if baseline is not None:
        if baseline != "copy" or task is None or recipe.get_task(task).name != "translate":
            raise ConfigError(f"--baseline {baseline!r}: the one baseline is 'copy', with --task translate")
        from polyformer.tasks.translate import copy_source

        result = copy_source(data, split, options)
    elif model is None:
        raise ConfigError("evaluate needs --model (or, for --task translate, --baseline copy)")
    elif prompting.prompt:
        from polyformer.tasks.prompting import evaluate_prompted

        result = evaluate_prompted(model, data, split, options, prompting.settings(task))
        result.task = "classify"
    else:
        result = recipe.evaluate(task, model, data, split, options)
    shared.echo_json(result.metrics)
    _table(result.metrics)
    for name, signature in result.details.get("signatures", {}).items():
        typer.echo(f"{name.upper()} signature: {signature}", err=True)
    if out is not None:
        write_report(result, out, f"{result.task} · {Path(model).name if model else baseline} · {data}")


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
    details = {key: value for key, value in result.details.items() if key != "outputs"}
    (out / "metrics.json").write_text(json.dumps({**result.metrics, **details}, indent=2, ensure_ascii=False) + "\n")
    if "outputs" in result.details:
        lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in result.details["outputs"])
        (out / "translations.jsonl").write_text("".join(lines), encoding="utf-8")
    if "confusion_matrix" in result.details:
        import numpy as np

        plot_confusion(np.asarray(result.details["confusion_matrix"]), result.details["labels"], out / "confusion.png", title)
    if "per_type" in result.details:
        (out / "entities.md").write_text(format_entity_report(result.details["per_type"]) + "\n")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(grouped(evaluate))
