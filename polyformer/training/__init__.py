"""Training: one trainer for every objective, exact accumulation, crash-safe resume, DDP / FSDP2.

- `objectives`: summed losses + counts (CausalLM, MaskedLM [+NSP], Seq2SeqLM, Classification)
- `trainer`: `TrainConfig`, `Trainer`
- `schedules`, `optim`: learning rate as a function of the step; AdamW with weight-decay groups
- `checkpoint`: atomic checkpoints, `resume(run_dir)`, `seed_everything(seed)` (every entry point seeds with it first)
- `distributed`: torchrun process groups, DDP / FSDP2 wrapping, collectives
- `logging`: progress bar, metrics.csv, TensorBoard, plot.png
"""

from polyformer.training.checkpoint import latest_checkpoint, resume, seed_everything
from polyformer.training.objectives import CausalLM, Classification, MaskedLM, Objective, Seq2SeqLM, build_objective
from polyformer.training.trainer import BatchSource, TrainConfig, Trainer

__all__ = [
    "BatchSource",
    "CausalLM",
    "Classification",
    "MaskedLM",
    "Objective",
    "Seq2SeqLM",
    "TrainConfig",
    "Trainer",
    "build_objective",
    "latest_checkpoint",
    "resume",
    "seed_everything",
]
