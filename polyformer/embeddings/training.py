"""Contrastive fine-tuning of a SentenceEncoder with the one trainer.

    encoder = SentenceEncoder.load("all-MiniLM-L6-v2", max_seq_length=128)
    history = train_contrastive(encoder, read_pair_files("shakespeare-continuation"),
                                TrainConfig(max_steps=200, lr=2e-5, out_dir="runs/minilm-mnrl"),
                                batch_size=32, validation=continuation_pairs("validation")[:320])

The trainer runs `EmbeddingModel` (the encoder's body + pooling) on `PairSource` batches with the
`MultipleNegativesRanking` objective, so everything the trainer does (accumulation, bf16
autocast, checkpoints with exact resume, DDP / FSDP under torchrun, logs) applies unchanged.
The encoder is trained in place; with an `out_dir`, the result is also written to
`RUN_DIR/model` as a sentence-transformers folder (`SentenceEncoder.load` and
`sentence_transformers.SentenceTransformer` both read it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyformer.embeddings.contrastive import EmbeddingModel, MultipleNegativesRanking
from polyformer.embeddings.pairs import Pair, PairSource
from polyformer.training import distributed as dist
from polyformer.training.checkpoint import seed_everything
from polyformer.training.trainer import TrainConfig, Trainer

if TYPE_CHECKING:
    from polyformer.embeddings.encoder import SentenceEncoder

MODEL_DIR = "model"


def train_contrastive(
    encoder: SentenceEncoder,
    pairs: Sequence[Pair],
    config: TrainConfig,
    batch_size: int = 32,
    objective: MultipleNegativesRanking | None = None,
    validation: Sequence[Pair] | None = None,
    run_info: dict[str, Any] | None = None,
    resume: bool = False,
    write_model: bool = True,
) -> list[dict[str, Any]]:
    """Train `encoder` on the pairs; returns the trainer's history (loss, lr, eval_mnrl_accuracy, ...).

    `write_model=False` keeps the trained encoder in memory only (no RUN_DIR/model folder: models
    that have no sentence-transformers layout, such as an encoder–decoder's encoder, train too).

    Every generator is seeded from `config.seed` first (data order, dropout); the encoder's
    weights are the caller's: loaded ones are the same in every process.
    """
    seed_everything(config.seed)
    objective = objective or MultipleNegativesRanking()
    source = PairSource(pairs, encoder, batch_size, seed=config.seed, validation=validation,
                        num_eval_batches=config.eval_batches)
    module = EmbeddingModel(encoder.model, encoder.pooling)
    info = {"pairs": len(pairs), "pooling": encoder.pooling, "max_seq_length": encoder.max_seq_length, **(run_info or {})}
    trainer = Trainer(module, objective, source, config, run_info=info)
    history = trainer.train(resume=resume)
    encoder.model.eval()
    if write_model and config.out_dir and dist.env_info().is_main:
        encoder.model.cpu()
        encoder.save(Path(config.out_dir) / MODEL_DIR)
    return history


__all__ = ["MODEL_DIR", "train_contrastive"]
