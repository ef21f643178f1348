"""A tiny encoder, a random (anchor, positive[, negative]) source and a runnable DDP training script.

Run under torchrun (tests/test_contrastive.py does) or alone:

    python tests/contrastive_tiny.py --out DIR [--mini-batch 3] [--no-gather] [--negatives]

Trains `STEPS` steps of MultipleNegativesRanking on `ROWS` global rows per step and writes the
trainer's run directory (metrics.csv, checkpoints) to DIR.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch

from polyformer.config import preset
from polyformer.data.sources import rank_rows
from polyformer.embeddings.contrastive import EmbeddingModel, MultipleNegativesRanking
from polyformer.models import PolyformerModel
from polyformer.training.trainer import TrainConfig, Trainer

VOCAB = 50
ROWS = 8
STEPS = 3


def tiny_encoder(seed: int = 0, dropout: float = 0.0) -> PolyformerModel:
    torch.manual_seed(seed)
    config = preset("bert-tiny", vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2,
                    intermediate_size=64, max_positions=32, dropout=dropout, attention_dropout=dropout)
    return PolyformerModel(config)


class RandomPairs:
    """Rows of C random texts (ids 5..VOCAB-1) of random lengths, right-padded; pure in (seed, step, micro)."""

    def __init__(self, rows: int = ROWS, columns: int = 2, length: int = 9, seed: int = 0) -> None:
        self.rows, self.columns, self.length, self.seed = rows, columns, length, seed

    def _batch(self, key: tuple[int, ...], rows: range) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(hash(key) % (2**31))
        ids = torch.randint(5, VOCAB, (self.rows, self.columns, self.length), generator=generator)
        lengths = torch.randint(2, self.length + 1, (self.rows, self.columns), generator=generator)
        mask = (torch.arange(self.length)[None, None, :] < lengths[..., None]).long()
        ids = ids * mask
        return {"input_ids": ids[rows.start:rows.stop], "attention_mask": mask[rows.start:rows.stop]}

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        return self._batch((self.seed, step, micro), rank_rows(self.rows, rank, world_size))

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        yield self._batch((self.seed, -1), range(self.rows))


def train(out: str, mini_batch: int | None, gather: bool, columns: int, symmetric: bool) -> None:
    config = TrainConfig(max_steps=STEPS, lr=1e-3, weight_decay=0.0, out_dir=out, progress=False,
                         tensorboard=False, plot=False, eval_every=STEPS, save_every=0)
    objective = MultipleNegativesRanking(scale=20.0, symmetric=symmetric, mini_batch=mini_batch, gather=gather)
    Trainer(EmbeddingModel(tiny_encoder(), "mean"), objective, RandomPairs(columns=columns), config).train()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mini-batch", type=int, default=None)
    parser.add_argument("--no-gather", action="store_true")
    parser.add_argument("--negatives", action="store_true")
    parser.add_argument("--symmetric", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train(args.out, args.mini_batch, not args.no_gather, 3 if args.negatives else 2, args.symmetric)
