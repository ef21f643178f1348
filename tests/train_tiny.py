"""Tiny models, a random batch source, a tiny corpus and a runnable training script for the trainer tests.

`RandomSource` follows the data side's BatchSource contract: batches are pure functions of
(seed, step, micro); a global micro-batch's rows are split by rank. Label counts differ from one
micro-batch to the next on purpose, so exact token-count normalisation is exercised.
`write_corpus` and `TINY_MODEL` make `polyformer pretrain` runs of a few seconds.

Run as a script (the torchrun tests start it as a subprocess):

    python tests/train_tiny.py --out RUN_DIR --max-steps 12 --save-every 3 [--resume]
        [--fsdp]                FSDP2 instead of DDP under torchrun
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from polyformer.config import ModelConfig, preset
from polyformer.models import PolyformerModel
from polyformer.training.objectives import CausalLM, MaskedLM, Objective, Seq2SeqLM
from polyformer.training.trainer import TrainConfig, Trainer

VOCAB = 64
SMALL = dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
# `polyformer pretrain` options for a model of a few thousand parameters
TINY_MODEL = ["--set", "hidden_size=32", "--set", "num_layers=1", "--set", "num_heads=2", "--set", "intermediate_size=64"]
CORPUS_LINES = [
    "to be or not to be that is the question",
    "whether tis nobler in the mind to suffer",
    "the slings and arrows of outrageous fortune",
    "or to take arms against a sea of troubles",
    "and by opposing end them to die to sleep",
    "no more and by a sleep to say we end",
]

Batch = dict[str, torch.Tensor]


def model_config(kind: str) -> ModelConfig:
    if kind == "causal":
        return preset("gpt-tiny", **SMALL, max_positions=64)
    if kind == "mlm":
        return preset("bert-tiny", **SMALL, max_positions=64, head="pretraining")
    return preset("transformer-small", **SMALL, max_positions=64)


def write_corpus(path: Path) -> Path:
    """Twenty short 'documents' of six lines each (two held out), as a blank-line separated .txt file."""
    docs = ["\n".join(CORPUS_LINES[i % 6:] + CORPUS_LINES[:i % 6]) + f"\nscene {i}" for i in range(20)]
    path.write_text("\n\n".join(docs) + "\n")
    return path


def build_model(kind: str, seed: int = 0) -> PolyformerModel:
    torch.manual_seed(seed)
    return PolyformerModel(model_config(kind))


def objective_for(kind: str) -> Objective:
    return {"causal": CausalLM(), "mlm": MaskedLM(nsp=True), "seq2seq": Seq2SeqLM(label_smoothing=0.1)}[kind]


def _ignore_some(labels: torch.Tensor, generator: torch.Generator, keep: float) -> torch.Tensor:
    drop = torch.rand(labels.shape, generator=generator) > keep
    return labels.masked_fill(drop, -100)


class RandomSource:
    """Random batches of `rows` × `seq_len`, a pure function of (seed, step, micro)."""

    def __init__(self, kind: str, rows: int = 4, seq_len: int = 8, seed: int = 0, eval_count: int = 2):
        self.kind, self.rows, self.seq_len, self.seed = kind, rows, seq_len, seed
        self.eval_count = eval_count

    def _generator(self, step: int, micro: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + (step + 10) * 7919 + micro * 104_729) % 2**62)

    def global_batch(self, step: int, micro: int) -> Batch:
        g = self._generator(step, micro)
        keep = 0.3 + 0.6 * torch.rand((), generator=g).item()  # a different label density per micro-batch
        rows, length = self.rows, self.seq_len
        ids = torch.randint(0, VOCAB, (rows, length + 1), generator=g)
        if self.kind == "causal":
            return {"input_ids": ids[:, :-1], "labels": _ignore_some(ids[:, 1:], g, keep)}
        mask = torch.ones(rows, length, dtype=torch.long)
        mask[0, length - 2 :] = 0  # some padding
        if self.kind == "mlm":
            return {
                "input_ids": ids[:, :-1],
                "attention_mask": mask,
                "token_type_ids": (torch.arange(length) >= length // 2).long().expand(rows, length).clone(),
                "labels": _ignore_some(ids[:, 1:], g, keep * 0.5).masked_fill(mask == 0, -100),
                "next_sentence_label": torch.randint(0, 2, (rows,), generator=g),
            }
        target = torch.randint(0, VOCAB, (rows, length - 2), generator=g)
        target_mask = torch.ones_like(target)
        target_mask[-1, int(torch.randint(1, length - 2, (), generator=g)) :] = 0  # a different length per micro-batch
        return {
            "input_ids": ids[:, :-1],
            "attention_mask": mask,
            "decoder_input_ids": torch.cat([torch.zeros(rows, 1, dtype=torch.long), target[:, :-1]], dim=1),
            "decoder_attention_mask": target_mask,
            "labels": target.masked_fill(target_mask == 0, -100),
        }

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> Batch:
        batch = self.global_batch(step, micro)
        size = self.rows // world_size
        return {key: value[rank * size : (rank + 1) * size] for key, value in batch.items()}

    def eval_batches(self) -> Iterator[Batch]:
        for index in range(self.eval_count):
            yield self.global_batch(-1 - index, 0)


class MergedSource(RandomSource):
    """The k micro-batches of a RandomSource step concatenated into one batch (k times larger)."""

    def __init__(self, inner: RandomSource, k: int):
        super().__init__(inner.kind, inner.rows, inner.seq_len, inner.seed, inner.eval_count)
        self.k = k

    def global_batch(self, step: int, micro: int) -> Batch:
        parts = [RandomSource.global_batch(self, step, m) for m in range(self.k)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> Batch:
        return self.global_batch(step, micro)


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads spin badly on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quiet_config(**overrides) -> TrainConfig:
    """A TrainConfig for tests: CPU, no progress bar, no TensorBoard, no plot unless asked."""
    base = dict(device="cpu", progress=False, tensorboard=False, plot=False, lr=1e-2, warmup_steps=2, weight_decay=0.1)
    return TrainConfig(**{**base, **overrides})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", default="causal", choices=["causal", "mlm", "seq2seq"])
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--micro-batches", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--save-every", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = quiet_config(
        max_steps=args.max_steps, micro_batches=args.micro_batches, save_every=args.save_every,
        eval_every=args.eval_every, out_dir=args.out, fsdp=args.fsdp,
    )
    source = RandomSource(args.kind, rows=args.rows)
    Trainer(build_model(args.kind), objective_for(args.kind), source, config).train(resume=args.resume)


if __name__ == "__main__":
    main()
