"""Training throughput on CPU: polyformer vs transformers on the same weights and the same step.

One step = forward, cross-entropy, backward, AdamW update, in fp32. Each polyformer model is the
transformers model loaded through `pf.load`, so both start from identical weights; the two are
timed in alternation (see timing.py) and reported as tokens/s and their ratio.

Shapes: nanoGPT's shakespeare-char config (GPT-2 block, 4 layers, 128 dims, B12 T64), a GPT-2
124M-shaped model and a BERT-base-shaped masked-LM at CPU-sized batches.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from polyformer.bench.timing import time_alternating


@dataclass(frozen=True)
class TrainShape:
    name: str
    family: str  # gpt2 | bert
    batch: int
    length: int
    hf_config: dict


SHAPES = [
    TrainShape("nanoGPT shakespeare-char (4L/4H/128d)", "gpt2", 12, 64,
               dict(vocab_size=65, n_positions=64, n_embd=128, n_layer=4, n_head=4)),
    TrainShape("GPT-2 124M", "gpt2", 4, 128, dict(vocab_size=50257, n_positions=1024)),
    TrainShape("BERT-base MLM", "bert", 8, 128, dict(vocab_size=30522)),
]


def hf_model(shape: TrainShape) -> torch.nn.Module:
    import transformers

    zero_dropout = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0) if shape.family == "gpt2" else dict(
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if shape.family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape.hf_config, **zero_dropout))
    return transformers.BertForMaskedLM(transformers.BertConfig(**shape.hf_config, **zero_dropout))


def step_fn(model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor, polyformer: bool,
            dtype: torch.dtype | None = None, forward: torch.nn.Module | None = None):
    """One training step as a closure: forward (under autocast when `dtype` is given), loss, backward, AdamW.

    `forward` is the module to call (e.g. a compiled wrapper of `model`); the optimizer always
    holds `model`'s parameters. On CUDA the optimizer is the fused AdamW.
    """
    fused = ids.device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
    run = forward or model
    autocast = torch.autocast(ids.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            out = run(ids) if polyformer else run(input_ids=ids)
            loss = F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def random_batch(shape: TrainShape, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (shape.batch, shape.length + 1), generator=generator)
    if shape.family == "gpt2":
        return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    ids = ids[:, :-1].contiguous()
    labels = ids.masked_fill(torch.rand(ids.shape, generator=generator) > 0.15, -100)
    return ids, labels


def run_shape(shape: TrainShape, repeats: int) -> dict:
    import polyformer as pf

    torch.manual_seed(0)
    reference = hf_model(shape).train()
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(Path(tmp))
        ours = pf.load(tmp).train()
    ids, labels = random_batch(shape, shape.hf_config["vocab_size"])
    timings = time_alternating(
        {"polyformer": step_fn(ours, ids, labels, True), "transformers": step_fn(reference, ids, labels, False)},
        repeats=repeats, warmup=2,
    )
    tokens = shape.batch * shape.length
    rates = {name: tokens / timing.median_s for name, timing in timings.items()}
    return {
        "work": f"train step {shape.name}, B{shape.batch} x T{shape.length}",
        "tokens_per_s": rates,
        "ratio": rates["polyformer"] / rates["transformers"],
        "ratio_best": timings["transformers"].best_s / timings["polyformer"].best_s,
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
    }


def run(repeats: int = 5, quick: bool = False) -> list[dict]:
    shapes = SHAPES[:1] if quick else SHAPES
    return [run_shape(shape, 2 if quick else repeats) for shape in shapes]
