"""A fine-tuning run's directory and trainer settings, shared by every task's fine-tuning.

`start_run` creates the run directory with `finetune.yaml` (the spec) in it, `train_config`
turns the spec into the trainer's settings (BERT's recipe unless a task overrides fields), and
`finish_run` trains, then keeps the best dev weights (else the last) with the tokenizer in
OUT/model and the best evaluation in `dev_metrics.json`. The recipes (`recipe.finetune`, and
`generative.finetune_text_to_text` for translate / lm) build the model and data; this module
only runs them, so it imports neither.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from polyformer.io.loader import save
from polyformer.io.native import load_native
from polyformer.runtime import write_atomic
from polyformer.training.checkpoint import BEST, CHECKPOINTS
from polyformer.training.trainer import TrainConfig

if TYPE_CHECKING:
    from polyformer.tasks.base import Task, TaskOptions
    from polyformer.tasks.recipe import FinetuneSpec
    from polyformer.tokenizers import Tokenizer
    from polyformer.training.trainer import Trainer

SPEC_FILE = "finetune.yaml"


@dataclass
class FinetuneResult:
    model_dir: Path
    metrics: dict[str, float]  # dev metrics of the kept (best) weights
    history: list[dict[str, Any]]


def start_run(spec: FinetuneSpec) -> dict[str, Any]:
    """Create the run directory with the spec in it; the settings the trainer records as run info."""
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / SPEC_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return {"finetune": {k: v for k, v in spec.to_dict().items() if k not in ("out", "progress", "device")}}


def finish_run(spec: FinetuneSpec, trainer: Trainer, tokenizer: Tokenizer) -> FinetuneResult:
    """Train, then keep the best dev weights (else the last) with the tokenizer in OUT/model."""
    out = Path(spec.out)
    history = trainer.train()
    best_dir = out / CHECKPOINTS / BEST
    final = load_native(best_dir) if (best_dir / "model.safetensors").is_file() else trainer.model.cpu().eval()
    metrics = _best_metrics(best_dir, history)
    save(final, out / "model")
    tokenizer.save(out / "model")
    write_atomic(out / "dev_metrics.json", json.dumps(metrics, indent=2) + "\n")
    return FinetuneResult(out / "model", metrics, history)


def train_and_dev(task: Task, spec: FinetuneSpec, options: TaskOptions) -> tuple[list[Any], list[Any]]:
    """The training and dev examples: --data's train / dev splits, or all of a --data file and a --dev-data file."""
    if spec.dev_data:  # built-in data keeps to its train split, so its test split stays unseen
        train = task.load(spec.data, "train" if spec.data == task.builtin else "all", options)
        dev = task.load(spec.dev_data, "all", options)
    else:
        train, dev = task.load(spec.data, "train", options), task.load(spec.data, "dev", options)
    return train, dev[: spec.dev_limit] if spec.dev_limit else dev


def train_config(spec: FinetuneSpec, steps_per_epoch: int, metric: str, greater_is_better: bool = True,
                 **settings: Any) -> TrainConfig:
    """The trainer's settings of a fine-tuning run (BERT's recipe; `settings` override TrainConfig fields)."""
    max_steps = spec.max_steps or max(1, math.ceil(spec.epochs * steps_per_epoch))
    warmup = spec.warmup_steps if spec.warmup_steps is not None else int(spec.warmup_ratio * max_steps)
    fields: dict[str, Any] = dict(
        max_steps=max_steps, micro_batches=spec.micro_batches, lr=spec.lr or 5e-5, min_lr=0.0,
        warmup_steps=warmup, schedule=spec.schedule or "linear", weight_decay=spec.weight_decay,
        betas=(0.9, 0.999), grad_clip=1.0, dtype=spec.dtype, eval_every=min(spec.eval_every or steps_per_epoch, max_steps),
        eval_batches=0, save_every=0, keep_last=1, seed=spec.seed, deterministic=spec.deterministic,
        out_dir=spec.out, device=spec.device,
        metric_for_best=f"eval_{metric}", greater_is_better=greater_is_better, early_stopping_patience=spec.patience,
        progress=spec.progress,
    )
    return TrainConfig(**{**fields, **settings})


def _best_metrics(best_dir: Path, history: list[dict[str, Any]]) -> dict[str, float]:
    if (best_dir / "metrics.json").is_file():
        return json.loads((best_dir / "metrics.json").read_text())
    evaluated = [row for row in history if any(key.startswith("eval_") for key in row)]
    return evaluated[-1] if evaluated else {}
