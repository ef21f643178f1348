"""`polyformer finetune`: fine-tune any model for classify / ner / pair / qa / translate / lm with the one trainer.

Options left unset keep the value from `--config run.yaml` (if given), then the defaults of
`polyformer.tasks.recipe.FinetuneSpec`. The run directory ends with `model/` (best dev weights,
tokenizer, labels in the config) and `dev_metrics.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from polyformer.cli import task_options as shared
from polyformer.cli.options import given, grouped, option
from polyformer.cli.pretrain import parse_assignments
from polyformer.cli.training_options import Optimization, RunControls


@dataclass
class Finetuning:
    """FinetuneSpec fields (unset: the config file's, then the spec's defaults)."""

    task: Optional[str] = option(None, "--task", help=shared.TASK_HELP)
    model: Optional[str] = option(None, "--model", help="Catalog name, HF / sentence-transformers / native folder, GGUF "
                                  "file, pretraining run directory or hub id (org/name).")
    preset: Optional[str] = option(None, "--preset", help="translate: train this preset from scratch (transformer-small, "
                                   "gpt-tiny, ...) instead of --model.")
    data: Optional[str] = option(None, "--data", help="Built-in data (classify: rotten_tomatoes, ner: wnut16, pair: "
                                 "shakespeare, qa: shakespeare-qa) or a file (csv / jsonl; ner: CoNLL / jsonl; qa: SQuAD JSON).")
    dev_data: Optional[str] = option(None, "--dev-data", help="Dev file; all of --data then trains (default: --data's "
                                     "train and dev splits).")
    pooling: Optional[str] = option(None, "--pooling", help="Sequence heads: cls | mean | max | last (default: cls for "
                                    "encoders, last for decoders).")
    max_length: Optional[int] = option(None, "--max-length", help=shared.MAX_LENGTH_HELP)
    batch_size: Optional[int] = option(None, "--batch-size", help="Training rows per micro-batch (default 32).")
    epochs: Optional[float] = option(None, "--epochs", help="Passes over the train split (default 3).")
    warmup_ratio: Optional[float] = option(None, "--warmup-ratio", help="Fraction of steps of linear warmup (default 0.1).")
    patience: Optional[int] = option(None, "--patience", help="Stop after N evaluations without improvement (default 3).")
    dev_limit: Optional[int] = option(None, "--dev-limit", help="Evaluate on the first N dev examples only.")
    regression: Optional[bool] = option(None, "--regression/--classes", help="pair: similarity scores instead of classes "
                                        "(default: from the data).")
    stride: Optional[int] = option(None, "--stride", help=shared.STRIDE_HELP)


@dataclass
class TextToText:
    """FinetuneSpec fields of translate / lm (unset: the config file's, then the spec's defaults)."""

    tokenizer: Optional[str] = option(None, "--tokenizer", help="--preset: reuse this tokenizer (default: a BPE trained on "
                                      "both sides of the pairs).")
    vocab_size: Optional[int] = option(None, "--vocab-size", help="--preset: size of the trained BPE (default 8000).")
    label_smoothing: Optional[float] = option(None, "--label-smoothing", help="translate / lm: label smoothing epsilon "
                                              "(default 0.1).")
    direction: Optional[str] = option(None, "--direction", help="translate / lm: forward | reverse (bible-en-es: en-es | "
                                      "es-en).")
    pair_format: Optional[str] = option(None, "--pair-format", help="translate / lm with a decoder: separator | chat "
                                        "(default: chat when the tokenizer has a template).")
    instruction: Optional[str] = option(None, "--instruction", help="translate / lm, chat layout: the request, with {text} "
                                        "(and {source} / {target}).")
    eval_beams: Optional[int] = option(None, "--eval-beams", help="translate: beam width of the dev BLEU during training "
                                       "(default 1, greedy).")
    max_new_tokens: Optional[int] = option(None, "--max-new-tokens", help="translate: tokens generated per dev input "
                                           "(default: --max-length).")


def finetune(
    spec: Finetuning = Finetuning(),
    optimization: Optimization = Optimization(),
    controls: RunControls = RunControls(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (created)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML run config (fields of `polyformer finetune`); "
                                          "options override it."),
    texts: shared.TextColumns = shared.TextColumns(),
    labels: shared.LabelColumns = shared.LabelColumns(),
    text_to_text: TextToText = TextToText(),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="--preset: override a model field, --set num_layers=4 "
                                             "(repeatable)."),
) -> None:
    """Fine-tune a model for a task; early stopping on the dev metric keeps the best weights."""
    from polyformer.config import dataclass_from_yaml
    from polyformer.errors import ConfigError
    from polyformer.tasks import recipe

    fields = {**given(spec), **given(optimization), **given(controls), **given(text_to_text)}
    if out is not None:
        fields["out"] = str(out)
    cols = shared.columns(texts, labels)
    if cols:
        fields["columns"] = cols
    if set_:
        fields["model_config"] = parse_assignments(set_)
    if config is not None:
        finetune_spec = dataclass_from_yaml(recipe.FinetuneSpec, config, fields)
    else:
        needed = ("task", "data", "out") if "preset" in fields else ("task", "model", "data", "out")
        missing = [f"--{name.replace('_', '-')}" for name in needed if name not in fields]
        if missing:
            raise ConfigError(f"finetune needs {', '.join(missing)} (or --config run.yaml)")
        finetune_spec = recipe.FinetuneSpec.from_dict(fields, "command line")
    result = recipe.finetune(finetune_spec)
    summary = ", ".join(f"{key}={value:.4g}" for key, value in result.metrics.items() if isinstance(value, float))
    typer.echo(f"{result.model_dir}  (best dev: {summary})", err=True)


def register(app: typer.Typer) -> None:
    app.command("finetune")(grouped(finetune))
