"""Batches of encoded examples: the trainer's `BatchSource` for fine-tuning, and batched inference.

A feature is one encoded example: `input_ids` (and `token_type_ids` for segment-aware
tokenizers) plus its target — `labels` (a class index, a float score, or one label per token)
or `start_positions` / `end_positions` (QA). `collate` pads a list of them on the right to the
longest and builds `attention_mask`; encoder–decoders read the text on both sides (the decoder
gets the same tokens, and the heads read the decoder's states).

`ExampleSource` follows the trainer's contract (`polyformer.data.sources.BatchSource`): the
training stream is the concatenation of seeded permutations of the features, one per epoch, and
micro-batch `micro` of step `step` reads stream positions `k * B .. k * B + B - 1` with
`k = step * micro_batches + micro` — a pure function of its arguments, so a run resumes and
splits over ranks exactly. Evaluation is the task's own metric pass (the trainer's `evaluate`
hook), so `eval_batches` yields nothing unless evaluation features are given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polyformer.data.sources import rank_rows, row_generator
from polyformer.errors import DataError
from polyformer.training.objectives import IGNORE_INDEX, model_inputs

if TYPE_CHECKING:
    from polyformer.models import ModelOutput, PolyformerModel
    from polyformer.tasks.encoding import Encoded

Feature = dict[str, Any]
Batch = dict[str, torch.Tensor]
_EPOCH_STREAM = 2


def feature(encoded: Encoded, with_type_ids: bool, **targets: Any) -> Feature:
    """A feature from an encoded input and its targets."""
    out: Feature = {"input_ids": encoded.ids, **targets}
    if with_type_ids:
        out["token_type_ids"] = encoded.type_ids
    return out


def collate(features: Sequence[Feature], pad_id: int, arch: str) -> Batch:
    """Right-pad features to the longest: input_ids, attention_mask, [token_type_ids], targets."""
    length = max(len(f["input_ids"]) for f in features)
    rows = len(features)
    input_ids = torch.full((rows, length), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, length), dtype=torch.long)
    for row, f in enumerate(features):
        input_ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[row, : len(f["input_ids"])] = 1
    batch: Batch = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in features[0]:
        types = torch.zeros((rows, length), dtype=torch.long)
        for row, f in enumerate(features):
            types[row, : len(f["token_type_ids"])] = torch.tensor(f["token_type_ids"])
        batch["token_type_ids"] = types
    if arch == "encoder-decoder":
        batch["decoder_input_ids"], batch["decoder_attention_mask"] = input_ids, mask
    if "labels" in features[0]:
        batch["labels"] = _labels([f["labels"] for f in features], length)
    for key in ("start_positions", "end_positions"):
        if key in features[0]:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
    return batch


def _labels(values: list[Any], length: int) -> torch.Tensor:
    if isinstance(values[0], list):  # token labels (B, T), padded with IGNORE_INDEX
        out = torch.full((len(values), length), IGNORE_INDEX, dtype=torch.long)
        for row, labels in enumerate(values):
            out[row, : len(labels)] = torch.tensor(labels, dtype=torch.long)
        return out
    if isinstance(values[0], float):
        return torch.tensor(values, dtype=torch.float32)  # regression scores (B,)
    return torch.tensor(values, dtype=torch.long)  # class indices (B,)


class ExampleSource:
    """Seeded epochs over fine-tuning features, `batch_size` rows per micro-batch.

    `collator` turns a list of features into a batch (default: `collate`); with `eval_features`,
    `eval_batches` yields them in order, collated the same way, for the trainer's evaluation loss.
    `bucket_batches` > 0 batches examples of similar length together (see `_bucketed`).
    """

    def __init__(self, features: Sequence[Feature], batch_size: int, seed: int, pad_id: int, arch: str,
                 micro_batches: int = 1, collator: Callable[[Sequence[Feature]], Batch] | None = None,
                 eval_features: Sequence[Feature] = (), bucket_batches: int = 0) -> None:
        if not features:
            raise DataError("no training examples")
        if batch_size < 1:
            raise DataError(f"batch size must be positive, got {batch_size}")
        self.features = list(features)
        self.batch_size, self.seed, self.pad_id, self.arch = batch_size, seed, pad_id, arch
        self.micro_batches = micro_batches
        self.collator = collator or (lambda rows: collate(rows, pad_id, arch))
        self.eval_features = list(eval_features)
        self.bucket_batches = bucket_batches
        self._lengths = [sum(len(value) for value in f.values() if isinstance(value, list)) for f in self.features]
        self._orders: dict[int, np.ndarray] = {}

    def steps_per_epoch(self) -> int:
        return max(1, -(-len(self.features) // (self.batch_size * self.micro_batches)))

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            generator = row_generator(self.seed, _EPOCH_STREAM, epoch)
            order = generator.permutation(len(self.features))
            self._orders[epoch] = self._bucketed(order, generator) if self.bucket_batches else order
        return self._orders[epoch]

    def _bucketed(self, order: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        """The epoch's order with similar lengths side by side: windows of `bucket_batches` batches are
        sorted by length and cut into batches, and the batches shuffled, so a batch pads little."""
        width = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), width):
            window = sorted(order[start: start + width].tolist(), key=lambda i: self._lengths[i])
            batches += [window[i: i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        return np.asarray([index for b in generator.permutation(len(batches)) for index in batches[b]])

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> Batch:
        first = (step * self.micro_batches + micro) * self.batch_size
        chosen = []
        for row in rank_rows(self.batch_size, rank, world_size):
            epoch, offset = divmod(first + row, len(self.features))
            chosen.append(self.features[int(self._order(epoch)[offset])])
        return self.collator(chosen)

    def eval_batches(self) -> Iterator[Batch]:
        for start in range(0, len(self.eval_features), self.batch_size):
            yield self.collator(self.eval_features[start: start + self.batch_size])


@torch.inference_mode()
def batched_outputs(model: PolyformerModel, features: Sequence[Feature], pad_id: int,
                    batch_size: int = 32) -> Iterator[tuple[list[int], Batch, ModelOutput]]:
    """(feature indices, batch, model output) over all features, longest first to pad little."""
    model.eval()
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        batch = collate([features[i] for i in rows], pad_id, model.config.arch)
        inputs = {key: value.to(model.device) for key, value in model_inputs(batch).items()}
        yield rows, batch, model(**inputs)
