"""Contrastive training of sentence encoders: MultipleNegativesRanking with the one trainer.

A batch holds B (anchor, positive[, negative]) tuples as `input_ids` / `attention_mask` of shape
(B, C, T), C = 2 or 3 texts per row. Every text is embedded (pooled, unit length) and anchor i is
scored against every positive and every hard negative of the batch by scaled cosine similarity;
the loss is the cross-entropy of picking its own positive (Henderson et al. 2017, Sentence-BERT's
MultipleNegativesRankingLoss):

    loss_i = -log softmax_j(scale · cos(a_i, c_j))[i],   c = [p_1..p_B, n_1..n_B]

`symmetric=True` adds the reverse direction (positive i picks its anchor among all anchors) and
averages the two, as sentence-transformers' MultipleNegativesSymmetricRankingLoss.

Larger batches give more negatives. Two ways past memory and device limits:
- **gradient cache** (`mini_batch=m`, Gao et al. 2021): embed the batch m texts at a time without
  a graph, compute the loss and its gradient with respect to the embeddings, then re-run each
  chunk with a graph and back-propagate that gradient. Same gradient as one big batch, memory of
  a chunk. Dropout masks are replayed: each chunk's RNG state is saved and restored.
- **across ranks** under DDP: embeddings of every rank are gathered (`all_gather`), so every
  anchor meets the negatives of the global batch; the gather's backward sums the gradients of
  all ranks for the local shard, so w processes give exactly the gradient of one process on the
  combined batch.

The loss is returned as a sum over anchors with `counts = B` (see training/objectives.py), so
micro-batch accumulation stays exact. `EmbeddingModel` is the module the trainer runs: the
model's body + pooling (+ normalisation), with one forward for all texts of a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from polyformer.core.pooling import POOLING_MODES
from polyformer.embeddings.encoder import embed
from polyformer.errors import ConfigError, DataError
from polyformer.models import Headless, PolyformerModel
from polyformer.training.objectives import Batch, TermValues

TERM = "mnrl"


class EmbeddingModel(Headless):
    """A PolyformerModel's body + pooling as a module: (N, T) ids → (N, D) sentence vectors.

    It shares (not copies) the body's parameters; the head, unused by embeddings, is left out so
    DDP sees no parameter without a gradient. State-dict keys are `body.*` as in PolyformerModel.
    """

    def __init__(self, model: PolyformerModel, pooling: str, normalize: bool = True) -> None:
        if pooling not in POOLING_MODES:
            raise ConfigError(f"pooling={pooling!r} is not one of {', '.join(POOLING_MODES)}")
        super().__init__(model)
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return embed(self, input_ids, attention_mask, self.pooling, self.normalize)


def mnrl_sums(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    labels: torch.Tensor,
    scale: float,
    symmetric: bool = False,
    all_anchors: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed MNRL loss of `anchors` (B, D) against `candidates` (M, D); label i = index of the positive.

    Vectors are compared by dot product (unit vectors: cosine). With `symmetric`, positive i
    (`positives`, B rows) also picks its anchor among `all_anchors` (the anchors of every rank),
    whose index is `labels[i]` too. Returns (loss sum over the B anchors, correct top-1 count).
    """
    scores = scale * anchors.float() @ candidates.float().T  # (B, M)
    loss = F.cross_entropy(scores, labels, reduction="sum")
    correct = (scores.argmax(dim=1) == labels).sum()
    if symmetric:
        assert all_anchors is not None and positives is not None
        backward = scale * positives.float() @ all_anchors.float().T  # (B, B_global)
        loss = (loss + F.cross_entropy(backward, labels, reduction="sum")) / 2
    return loss, correct


# ---- gathering across ranks ------------------------------------------------------------------------
class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward gives each rank the summed gradient of its own shard."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = torch_dist.get_world_size(), torch_dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        torch_dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)  # every rank's loss touches every shard
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(rows of every rank concatenated in rank order, offset of this rank's rows)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()) or torch_dist.get_world_size() == 1:
        return tensor, 0
    return _GatherWithGrad.apply(tensor), torch_dist.get_rank() * tensor.shape[0]


# ---- gradient cache --------------------------------------------------------------------------------
class _CachedEmbeddings(torch.autograd.Function):
    """Embeddings computed chunk by chunk without a graph; backward re-runs each chunk with one."""

    @staticmethod
    def forward(ctx, run: Callable, chunks: list, token: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.run, ctx.chunks, ctx.states = run, chunks, []
        device = chunks[0][0].device.type
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        outputs = []
        with torch.no_grad():
            for chunk in chunks:
                ctx.states.append(_rng_state(chunk[0].device))
                outputs.append(run(*chunk))
        return torch.cat(outputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        sizes = [chunk[0].shape[0] for chunk in ctx.chunks]
        device, dtype, enabled = ctx.autocast
        with torch.enable_grad(), torch.autocast(device, dtype=dtype, enabled=enabled):
            for index, (chunk, state, part) in enumerate(zip(ctx.chunks, ctx.states, grad.split(sizes))):
                _set_rng_state(state)
                with ctx.run.sync(index == len(ctx.chunks) - 1):
                    torch.autograd.backward(ctx.run(*chunk), part)
        return None, None, None


class _ChunkRunner:
    """Calls the (possibly DDP-wrapped) model on a chunk; `sync(last)` skips DDP's all-reduce but once."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # DDP.no_sync() around the trainer's call clears this flag: then no chunk may sync either
        self.allowed = getattr(model, "require_backward_grad_sync", True)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def sync(self, last: bool):
        from polyformer.training.distributed import gradient_sync

        return gradient_sync(self.model, last and self.allowed)


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


# ---- the objective ---------------------------------------------------------------------------------
@dataclass
class MultipleNegativesRanking:
    """In-batch-negatives ranking loss over (anchor, positive[, negative]) batches of shape (B, C, T).

    scale: multiplies the cosine similarities (sentence-transformers' default 20, i.e. temperature 0.05).
    symmetric: also rank anchors for each positive and average both directions.
    mini_batch: gradient-cache chunk size in texts (None: one forward over the whole batch).
    gather: under DDP, score against the embeddings of every rank (the global batch) in training;
        evaluation batches are scored on their own (the trainer shares them out among ranks).
    """

    scale: float = 20.0
    symmetric: bool = False
    mini_batch: int | None = None
    gather: bool = True
    name: ClassVar[str] = "multiple-negatives-ranking"
    terms: ClassVar[tuple[str, ...]] = (TERM,)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ConfigError(f"scale must be positive, got {self.scale!r}")
        if self.mini_batch is not None and self.mini_batch < 1:
            raise ConfigError(f"mini_batch must be a positive number of texts, got {self.mini_batch!r}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}

    def counts(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {TERM: torch.tensor(_columns(batch)[0], dtype=torch.int64)}

    def sums(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return self.compute(model, batch).sums

    def embeddings(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """(B, C, D) embeddings of the batch's texts (through the gradient cache when mini_batch is set)."""
        rows, columns = _columns(batch)
        ids = batch["input_ids"].transpose(0, 1).reshape(rows * columns, -1)  # (C·B, T): column-major
        mask = batch["attention_mask"].transpose(0, 1).reshape(rows * columns, -1)
        if self.mini_batch is None or not torch.is_grad_enabled():
            flat = model(ids, mask)
        else:
            chunks = list(zip(ids.split(self.mini_batch), mask.split(self.mini_batch)))
            token = next(p for p in model.parameters() if p.requires_grad)  # puts the cache in the graph
            flat = _CachedEmbeddings.apply(_ChunkRunner(model), chunks, token)
        return flat.view(columns, rows, -1).transpose(0, 1)  # (B, C, D)

    def compute(self, model: nn.Module, batch: Batch, with_metrics: bool = False) -> TermValues:
        local = self.embeddings(model, batch)
        rows = local.shape[0]
        if self.gather and torch.is_grad_enabled():  # training: every rank takes part (evaluation may not)
            every, offset = gather_with_grad(local)  # (B_global, C, D)
        else:
            every, offset = local, 0
        anchors = every[offset:offset + rows, 0]
        candidates = every[:, 1:].transpose(0, 1).reshape(-1, every.shape[-1])  # positives first, then negatives
        labels = torch.arange(offset, offset + rows, device=local.device)
        loss, correct = mnrl_sums(
            anchors, candidates, labels, self.scale, self.symmetric,
            all_anchors=every[:, 0], positives=every[offset:offset + rows, 1],
        )
        return TermValues({TERM: loss}, {TERM: correct} if with_metrics else {})


def _columns(batch: Batch) -> tuple[int, int]:
    """(rows B, texts per row C) of a contrastive batch; DataError for anything else."""
    for key in ("input_ids", "attention_mask"):
        if key not in batch:
            raise DataError(f"a contrastive batch needs {key} of shape (B, C, T); got keys {', '.join(sorted(batch))}")
    shape = tuple(batch["input_ids"].shape)
    if len(shape) != 3 or shape[1] not in (2, 3) or tuple(batch["attention_mask"].shape) != shape:
        raise DataError(f"a contrastive batch holds (anchor, positive[, negative]) rows: input_ids (B, 2|3, T), got {shape}")
    return shape[0], shape[1]


__all__ = ["EmbeddingModel", "MultipleNegativesRanking", "gather_with_grad", "mnrl_sums"]
