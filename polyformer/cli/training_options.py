"""Option groups shared by the training verbs, `polyformer pretrain` and `polyformer finetune`.

Both verbs take the optimizer's steps and schedule and the controls of a run (seed, device,
progress bar) under the same names; each group is declared once here so the two verbs cannot
drift apart. Unset fields (None) fall back to the verb's config file, then to its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from polyformer.cli.options import option

DETERMINISTIC_HELP = "CUDA: deterministic kernels, so GPU runs repeat bit for bit (slower)."


@dataclass
class Optimization:
    """How long and how fast to train (pretrain: TrainConfig fields; finetune: FinetuneSpec fields)."""

    max_steps: Optional[int] = option(None, "--max-steps", help="Optimizer steps (finetune: overrides --epochs).")
    micro_batches: Optional[int] = option(None, "--micro-batches", help="Gradient accumulation: micro-batches per step.")
    lr: Optional[float] = option(None, "--lr", help="Peak learning rate (finetune default 5e-5).")
    warmup_steps: Optional[int] = option(None, "--warmup-steps", help="Linear warmup steps (finetune: overrides --warmup-ratio).")
    schedule: Optional[str] = option(None, "--schedule", help="cosine | linear | inverse_sqrt | constant (finetune default: "
                                     "linear; --preset: inverse_sqrt).")
    weight_decay: Optional[float] = option(None, "--weight-decay", help="AdamW weight decay (not on biases, norms, embeddings).")
    dtype: Optional[str] = option(None, "--dtype", help="float32 | bfloat16 | float16 autocast (bfloat16 on a CPU only "
                                  "with AVX512-BF16 or AMX).")
    eval_every: Optional[int] = option(None, "--eval-every", help="Evaluate every N steps (pretrain: 0 = at the end; "
                                       "finetune default: once per epoch).")


@dataclass
class RunControls:
    """What makes a run repeatable and where it runs."""

    seed: Optional[int] = option(None, "--seed", help="Seed of the initial weights (a fresh head), dropout and data order: "
                                 "the same seed repeats the run.")
    deterministic: Optional[bool] = option(None, "--deterministic/--no-deterministic", help=DETERMINISTIC_HELP)
    device: Optional[str] = option(None, "--device", help="auto | cpu | cuda | cuda:N.")
    progress: Optional[bool] = option(None, "--progress/--no-progress", help="Show the progress bar.")
