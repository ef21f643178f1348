"""`polyformer finetune`: fine-tune any model for classify / ner / pair / qa with the one trainer.

Options left unset keep the value from `--config run.yaml` (if given), then the defaults of
`polyformer.tasks.recipe.FinetuneSpec`. The run directory ends with `model/` (best dev weights,
tokenizer, labels in the config) and `dev_metrics.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polyformer.cli import task_options as shared

_SPEC_OPTIONS = (
    "task", "model", "data", "dev_data", "pooling", "max_length", "batch_size", "micro_batches", "epochs",
    "max_steps", "lr", "warmup_ratio", "weight_decay", "eval_every", "patience", "dev_limit", "seed",
    "deterministic", "device", "dtype", "regression", "stride", "progress",
)


def finetune(
    task: Optional[str] = typer.Option(None, "--task", help=shared.TASK_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="Catalog name, HF / sentence-transformers / native folder, GGUF file, pretraining run directory or hub id (org/name)."),
    data: Optional[str] = typer.Option(None, "--data", help="Built-in data (classify: rotten_tomatoes, ner: wnut16, pair: shakespeare, qa: shakespeare-qa) or a file (csv / jsonl; ner: CoNLL / jsonl; qa: SQuAD JSON)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created)."),
    dev_data: Optional[str] = typer.Option(None, "--dev-data", help="Dev file; all of --data then trains (default: --data's train and dev splits)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config (fields of `polyformer finetune`); options override it."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="Sequence heads: cls | mean | max | last (default: cls for encoders, last for decoders)."),
    max_length: Optional[int] = shared.MAX_LENGTH,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Training rows per micro-batch (default 32)."),
    micro_batches: Optional[int] = typer.Option(None, "--micro-batches", help="Gradient accumulation: micro-batches per step."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the train split (default 3)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 5e-5)."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", help="Fraction of steps of linear warmup (default 0.1)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay (default 0.01)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Evaluate on dev every N steps (default: once per epoch)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop after N evaluations without improvement (default 3)."),
    dev_limit: Optional[int] = typer.Option(None, "--dev-limit", help="Evaluate on the first N dev examples only."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the head initialisation, dropout and data order: the same seed repeats the run."),
    deterministic: Optional[bool] = typer.Option(None, "--deterministic/--no-deterministic", help="CUDA: deterministic kernels, so GPU runs repeat bit for bit (slower)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 autocast."),
    regression: Optional[bool] = typer.Option(None, "--regression/--classes", help="pair: similarity scores instead of classes (default: from the data)."),
    stride: Optional[int] = shared.STRIDE,
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Show the progress bar."),
    text_column: Optional[str] = shared.TEXT_COLUMN,
    text_a_column: Optional[str] = shared.TEXT_A_COLUMN,
    text_b_column: Optional[str] = shared.TEXT_B_COLUMN,
    label_column: Optional[str] = shared.LABEL_COLUMN,
    score_column: Optional[str] = shared.SCORE_COLUMN,
) -> None:
    """Fine-tune a model for a task; early stopping on the dev metric keeps the best weights."""
    from polyformer.errors import ConfigError
    from polyformer.tasks import recipe

    given = dict(locals())
    fields = {name: given[name] for name in _SPEC_OPTIONS if given[name] is not None}
    if out is not None:
        fields["out"] = str(out)
    cols = shared.columns(text_column, text_a_column, text_b_column, label_column, score_column)
    if cols:
        fields["columns"] = cols
    if config is not None:
        spec = recipe.read_spec(config, fields)
    else:
        missing = [f"--{name.replace('_', '-')}" for name in ("task", "model", "data", "out") if name not in fields]
        if missing:
            raise ConfigError(f"finetune needs {', '.join(missing)} (or --config run.yaml)")
        spec = recipe.FinetuneSpec.from_dict(fields, "command line")
    result = recipe.finetune(spec)
    summary = ", ".join(f"{key}={value:.4g}" for key, value in result.metrics.items() if isinstance(value, float))
    typer.echo(f"{result.model_dir}  (best dev: {summary})", err=True)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
