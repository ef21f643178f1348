"""`polyformer embed-train`: contrastive fine-tuning of a sentence encoder (MultipleNegativesRanking).

    polyformer embed-train --model all-MiniLM-L6-v2 --data shakespeare-continuation --out runs/minilm-mnrl
    polyformer embed-train --model SmolLM2-135M-Instruct --pooling last --data pairs.jsonl --out runs/smol

`--data` is a built-in pair set (`shakespeare-continuation`) or .jsonl/.csv files with `anchor`,
`positive` (or `text_a`, `text_b`) and optional `negative`. The run directory holds the trainer's
checkpoints and logs; `RUN_DIR/model` the trained sentence-transformers folder. Runs unchanged
under `torchrun` (negatives are gathered across ranks).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from polyformer.cli.embed import DEVICE_HELP, MODEL_HELP, POOLING_HELP
from polyformer.cli.training_options import DETERMINISTIC_HELP


def embed_train(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: list[str] = typer.Option(..., "--data", help="shakespeare-continuation, or .jsonl/.csv pair files (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Run directory; the trained model goes to OUT/model."),
    validation: Optional[list[str]] = typer.Option(None, "--validation", help="Pair files to evaluate on (built-in sets bring their own)."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help=POOLING_HELP),
    max_seq_length: int = typer.Option(128, "--max-seq-length", min=1, help="Tokens per text in training."),
    batch_size: int = typer.Option(32, "--batch-size", min=2, help="Pairs per micro-batch (global): the in-batch negatives."),
    micro_batches: int = typer.Option(1, "--micro-batches", min=1, help="Gradient accumulation (each micro-batch has its own negatives)."),
    mini_batch: Optional[int] = typer.Option(None, "--mini-batch", min=1,
                                             help="Gradient cache: embed this many texts at a time (large batches in small memory)."),
    scale: float = typer.Option(20.0, "--scale", help="Similarity scale (inverse temperature)."),
    symmetric: bool = typer.Option(False, "--symmetric/--one-way", help="Also rank anchors for each positive."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Optimizer steps (default: one epoch)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01, help="Passes over the pairs (instead of --max-steps)."),
    lr: float = typer.Option(2e-5, "--lr", help="Peak learning rate."),
    warmup_steps: int = typer.Option(10, "--warmup-steps", min=0, help="Linear warmup steps."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Evaluate every N steps (0: at the end)."),
    eval_batches: int = typer.Option(10, "--eval-batches", min=0, help="Validation batches per evaluation."),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Checkpoint every N steps (0: at the end)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data order and dropout: the same seed repeats the run."),
    deterministic: bool = typer.Option(False, "--deterministic/--no-deterministic", help=DETERMINISTIC_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float32", "--dtype", help="Autocast: float32 | bfloat16 | float16."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Fine-tune a sentence encoder on (anchor, positive[, negative]) pairs with in-batch negatives."""
    from polyformer.embeddings import SentenceEncoder
    from polyformer.embeddings.contrastive import MultipleNegativesRanking
    from polyformer.embeddings.pairs import BUILTIN_PAIRS, read_pair_files
    from polyformer.embeddings.training import MODEL_DIR, train_contrastive
    from polyformer.errors import ConfigError
    from polyformer.training.trainer import TrainConfig

    spec = data[0] if len(data) == 1 else data
    pairs = read_pair_files(spec, "train")
    if validation:
        held = read_pair_files(validation)
    else:
        held = read_pair_files(spec, "validation") if isinstance(spec, str) and spec in BUILTIN_PAIRS else []
    if max_steps is not None and epochs is not None:
        raise ConfigError("give --max-steps or --epochs, not both")
    steps = max_steps or max(1, math.ceil((epochs or 1.0) * len(pairs) / (batch_size * micro_batches)))
    encoder = SentenceEncoder.load(model, pooling=pooling, max_seq_length=max_seq_length)
    config = TrainConfig(
        max_steps=steps, micro_batches=micro_batches, lr=lr, warmup_steps=min(warmup_steps, steps - 1),
        weight_decay=weight_decay, betas=(0.9, 0.999), dtype=dtype, eval_every=eval_every,
        eval_batches=eval_batches if held else 0, save_every=save_every, seed=seed, deterministic=deterministic,
        out_dir=str(out), device=device, progress=progress,
    )
    objective = MultipleNegativesRanking(scale=scale, symmetric=symmetric, mini_batch=mini_batch)
    history = train_contrastive(encoder, pairs, config, batch_size, objective, held or None,
                                run_info={"model": model, "data": list(data)}, resume=resume)
    last = history[-1] if history else {}
    shown = ", ".join(f"{key} {last[key]:.4f}" for key in ("loss", "eval_loss", "eval_mnrl_accuracy") if key in last)
    typer.echo(f"{out / MODEL_DIR}  ({steps} steps on {len(pairs)} pairs; {shown})", err=True)


def register(app: typer.Typer) -> None:
    app.command("embed-train")(embed_train)
