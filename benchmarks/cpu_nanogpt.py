"""Training step on CPU: polyformer against the nanoGPT-architecture reference (benchmarks/nanogpt_ref.py).

Both build the same GPT (pre-norm, no biases, tied head, GELU, causal SDPA) from the same seed
and run the same step: forward, cross-entropy, backward, gradient clipping at 1.0, AdamW with
decay on the matrices (lr 1e-3, betas 0.9 / 0.99, weight decay 0.1), zero_grad. polyformer's
step uses its own optimizer builder (`polyformer.training.optim.build_optimizer`), as the
Trainer does. Timed in alternation, medians; tokens/s and the ratio.

Shapes: nanoGPT's CPU shakespeare-char configuration (4L/4H/128d, B12 T64, vocabulary 65) and
GPT-2-small shapes (12L/12H/768d, vocabulary 50257) at a CPU-sized batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmarks.nanogpt_ref import NanoConfig, NanoGPT, optimizer, train_step
from polyformer.bench.timing import log, time_alternating


@dataclass(frozen=True)
class NanoShape:
    name: str
    config: NanoConfig
    batch: int


SHAPES = [
    NanoShape("shakespeare-char (4L/4H/128d, vocab 65)", NanoConfig(65, 64, 4, 4, 128), 12),
    NanoShape("GPT-2 small (12L/12H/768d, vocab 50257)", NanoConfig(50257, 128, 12, 12, 768), 4),
]


def polyformer_model(config: NanoConfig):
    from polyformer.config import preset
    from polyformer.models import PolyformerModel

    return PolyformerModel(preset(
        "gpt-tiny", vocab_size=config.vocab_size, max_positions=config.block_size, hidden_size=config.n_embd,
        num_layers=config.n_layer, num_heads=config.n_head, dropout=0.0, attention_dropout=0.0,
        attention_bias=False, mlp_bias=False, norm_bias=False,
    )).train()


def polyformer_step(model, ids: torch.Tensor, targets: torch.Tensor):
    """The Trainer's step on one batch, with its optimizer builder (decay / no-decay groups)."""
    from polyformer.training.optim import build_optimizer

    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    return train_step(model, lambda batch: model(batch).logits, opt, ids, targets)


def run_shape(shape: NanoShape, repeats: int) -> dict:
    torch.manual_seed(0)
    reference = NanoGPT(shape.config).train()
    ours = polyformer_model(shape.config)
    data = torch.randint(0, shape.config.vocab_size, (shape.batch, shape.config.block_size + 1),
                         generator=torch.Generator().manual_seed(0))
    ids, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    log(f"train vs nanoGPT reference: {shape.name}, B{shape.batch} x T{shape.config.block_size}, {repeats} repeats")
    timings = time_alternating({"polyformer": polyformer_step(ours, ids, targets),
                                "nanoGPT reference": train_step(reference, reference, optimizer(reference), ids, targets)}, repeats=repeats, warmup=3)
    tokens = shape.batch * shape.config.block_size
    rates = {name: tokens / timing.median_s for name, timing in timings.items()}
    return {
        "work": f"train step {shape.name}, B{shape.batch} x T{shape.config.block_size}",
        "tokens_per_s": rates,
        "ratio": rates["polyformer"] / rates["nanoGPT reference"],
        "ratio_best": timings["nanoGPT reference"].best_s / timings["polyformer"].best_s,
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
    }


def run(repeats: int = 7, quick: bool = False) -> list[dict]:
    return [run_shape(shape, 2 if quick else (repeats if shape.batch > 4 else 3)) for shape in (SHAPES[:1] if quick else SHAPES)]
