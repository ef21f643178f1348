"""The one trainer: every objective, one device or many, crash-safe and exactly resumable.

    trainer = Trainer(model, CausalLM(), source, TrainConfig(max_steps=2000, out_dir="runs/gpt"))
    history = trainer.train()              # or trainer.train(resume=True) after a crash

One optimizer step takes `micro_batches` batches from the source — `source.train_batch(step,
micro, rank, world_size)`, a pure function of its arguments, so the data position is the step
and nothing else needs saving. The loss of the step is

    Σ_term  Σ_micro,rank  sums[term]  /  (count of term over all micro-batches and ranks)

so k micro-batches on w ranks give the gradient of one batch k·w times larger: the counts are
summed (and all-reduced) before any backward, and each rank's loss is multiplied by w because
DDP / FSDP average gradients over ranks.

Around that: a learning rate that is a pure function of the step (schedules.py), AdamW with
weight-decay groups (optim.py), bf16/fp16 autocast (fp16 with a GradScaler), gradient clipping,
TF32 matmuls on CUDA (deterministic kernels with `deterministic=True`), optional torch.compile,
periodic evaluation (mean loss over `source.eval_batches()` plus an optional
`evaluate(model) -> dict` hook), the best checkpoint by `metric_for_best`, early stopping, and
atomic checkpoints every `save_every` steps (checkpoint.py). A fresh run seeds each rank with
seed + rank at step 0 (the model itself is built, after `seed_everything(seed)`, by the caller).
Resuming restores weights, optimizer, grad scaler, every rank's RNG states and the loss history,
refuses a run directory whose configuration differs, and rewrites the CSV log to the resumed
step, so the log of a killed-and-resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from polyformer.config import dataclass_from_dict
from polyformer.errors import ConfigError
from polyformer.runtime import AUTOCAST_DTYPES, DTYPES, DTypeName, cpu_has_native_bfloat16, dtype_named, write_atomic
from polyformer.training import checkpoint as ckpt
from polyformer.training import distributed as dist
from polyformer.training.logging import RunLogger
from polyformer.training.optim import build_optimizer, set_learning_rate
from polyformer.training.schedules import SCHEDULES, depends_on_max_steps, learning_rate

if TYPE_CHECKING:
    from polyformer.data.sources import BatchSource
    from polyformer.training.objectives import Batch, Objective

RUN_FILE = "run.yaml"

# TrainConfig fields that may change when a run is resumed (they do not change the updates).
RESUMABLE_FIELDS = (
    "max_steps", "eval_every", "eval_batches", "save_every", "keep_last", "log_every", "out_dir",
    "device", "compile", "progress", "tensorboard", "plot", "early_stopping_patience", "deterministic",
)


@dataclass
class TrainConfig:
    """How to train; saved to RUN_DIR/run.yaml and checked on resume."""

    max_steps: int = 1000
    micro_batches: int = 1  # gradient accumulation: batches per optimizer step
    lr: float = 3e-4
    min_lr: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | inverse_sqrt | constant
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    dtype: DTypeName = "float32"  # autocast dtype: runtime.AUTOCAST_DTYPES (float16 with a GradScaler)
    compile: bool = False
    fsdp: bool = False  # under torchrun: FSDP2 (fully_shard) instead of DDP
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int | None = None  # cap on evaluation batches; 0 disables evaluation
    save_every: int = 0  # 0: save only at the end
    keep_last: int = 2
    log_every: int = 1
    seed: int = 0
    deterministic: bool = False  # CUDA: deterministic kernels (see use_deterministic_kernels); CPU runs repeat without it
    out_dir: str | None = None  # None: train without writing anything
    device: str = "auto"
    metric_for_best: str = "eval_loss"
    greater_is_better: bool = False
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    progress: bool = True
    tensorboard: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        for name in ("max_steps", "micro_batches", "keep_last", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        dtype_named(self.dtype, AUTOCAST_DTYPES)
        if self.fsdp and self.dtype == "float16":
            raise ConfigError("dtype='float16' is not supported with fsdp=True; use dtype='bfloat16'")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ConfigError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> "TrainConfig":
        return dataclass_from_dict(cls, data, source)


@dataclass
class _Step:
    """What one optimizer step produced, kept on the device until logged."""

    sums: torch.Tensor  # (terms,) this rank's summed losses
    counts: torch.Tensor  # (terms,) global counts
    grad_norm: torch.Tensor | None
    tokens: int


@dataclass
class _Timer:
    tokens: int = 0
    start: float = field(default_factory=time.perf_counter)

    def reset(self) -> None:
        self.tokens, self.start = 0, time.perf_counter()


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def _tokens(batch: Batch) -> int:
    return sum(batch[key].numel() for key in ("input_ids", "decoder_input_ids") if key in batch)


def _autocast(device: torch.device, dtype: str) -> AbstractContextManager:
    if dtype == "float32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype].torch)


def use_deterministic_kernels() -> None:
    """Make CUDA runs repeat bit for bit: cuBLAS with a fixed workspace, no cuDNN autotuning,
    `torch.use_deterministic_algorithms` (warn-only: an op without a deterministic kernel warns by
    name instead of stopping the run). CUBLAS_WORKSPACE_CONFIG is read when cuBLAS starts, so a
    value set before the process does any CUDA work takes effect; one already set is kept."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _improved(value: float, best: float | None, greater_is_better: bool) -> bool:
    if best is None:
        return True
    return value > best if greater_is_better else value < best


class Trainer:
    """Trains `model` on `objective` over batches from `source` as `config` says."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        source: BatchSource,
        config: TrainConfig,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.objective = objective
        self.source = source
        self.config = config
        self.evaluate_hook = evaluate
        self.run_info = run_info or {}  # e.g. the data settings; recorded and checked on resume
        self.run_dir = Path(config.out_dir) if config.out_dir else None
        self.info = dist.DistInfo()
        self.device = torch.device("cpu")
        self.state = ckpt.TrainState()

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Join the process group, place and wrap the model, build the optimizer and grad scaler."""
        cfg = self.config
        self.info, self.device = dist.init_distributed(cfg.device)
        if cfg.deterministic:
            use_deterministic_kernels()
        if self.device.type == "cpu" and cfg.dtype == "bfloat16" and not cpu_has_native_bfloat16():
            warnings.warn("dtype bfloat16: this CPU has no native bfloat16 products (AVX512-BF16 / AMX), so autocast "
                          "emulates them and trains many times slower; use --dtype float32 here", stacklevel=2)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model.to(self.device)
        self.wrapped = dist.wrap_model(self.model, self.info, self.device, cfg.fsdp)  # DDP / FSDP / the model
        self.train_model = torch.compile(self.wrapped) if cfg.compile else self.wrapped
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.dtype == "float16")

    def run_config(self) -> dict[str, Any]:
        """The resolved configuration of this run, as written to run.yaml."""
        first = self.source.train_batch(0, 0, self.info.rank, self.info.world_size)
        model_config = getattr(self.model, "config", None)
        return {
            "model": model_config.to_dict() if hasattr(model_config, "to_dict") else type(self.model).__name__,
            "objective": self.objective.describe(),
            "batch": {key: [value.shape[0] * self.info.world_size, *value.shape[1:]] for key, value in first.items()},
            "train": self.config.to_dict(),
            "data": self.run_info,
        }

    def _ignored_on_resume(self) -> set[str]:
        fields = [f for f in RESUMABLE_FIELDS if not (f == "max_steps" and depends_on_max_steps(self.config.schedule))]
        return {f"train.{name}" for name in fields}

    def _prepare_run_dir(self, resume: bool) -> ckpt.Checkpoint | None:
        """Check / write run.yaml on rank 0 and read the checkpoint to resume from."""
        if self.run_dir is None:
            if resume:
                raise ConfigError("resume=True needs config.out_dir (the run directory to resume)")
            return None
        requested = yaml.safe_load(yaml.safe_dump(self.run_config()))  # compare as stored
        run_file = self.run_dir / RUN_FILE
        if run_file.is_file():
            if resume:
                saved = yaml.safe_load(run_file.read_text()) or {}
                ckpt.check_run_config(saved, requested, str(run_file), self._ignored_on_resume())
            elif ckpt.list_checkpoints(self.run_dir):
                raise ConfigError(
                    f"{self.run_dir} already holds a training run; resume it (resume=True / --resume) "
                    "or choose a new output directory"
                )
        if not self.info.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_file, yaml.safe_dump(requested, sort_keys=False))
        if resume:
            return ckpt.resume(self.run_dir)
        ckpt.clean_incomplete(self.run_dir)
        return None

    def _restore(self, loaded: ckpt.Checkpoint | None) -> None:
        """Put every rank in the state of the loaded checkpoint (rank 0 read it), or seed a fresh run."""
        state_dict = dist.broadcast_object(dataclasses.asdict(loaded.state) if loaded else None, self.info)
        if state_dict is None:
            ckpt.seed_everything(self.config.seed + self.info.rank)
            self.state = ckpt.TrainState()
            return
        self.state = ckpt.TrainState(**state_dict)
        model_state = ckpt.load_model_state(self.model, loaded.model_state) if loaded else {}
        dist.load_full_state(self.model, self.optimizer, model_state, loaded.optimizer_state if loaded else {}, self.info)
        if self.state.scaler:
            self.scaler.load_state_dict(self.state.scaler)
        if len(self.state.rng) == self.info.world_size:
            ckpt.set_rng_state(self.state.rng[self.info.rank])
        else:  # a different number of ranks: continue, but dropout masks will differ
            ckpt.seed_everything(self.config.seed + self.info.rank + self.state.step)

    # ---- one optimizer step --------------------------------------------------------------------
    def micro_batches(self, step: int) -> list[Batch]:
        """This rank's micro-batches for optimizer step `step`, on the device."""
        rank, world = self.info.rank, self.info.world_size
        return [_to_device(self.source.train_batch(step, m, rank, world), self.device) for m in range(self.config.micro_batches)]

    def global_counts(self, batches: list[Batch]) -> torch.Tensor:
        """(terms,) counts of each loss term over all micro-batches and ranks."""
        per_batch = [self.objective.counts(batch) for batch in batches]
        local = torch.stack([sum(torch.as_tensor(c[term]) for c in per_batch) for term in self.objective.terms])
        return dist.all_reduce_sum(local.to(self.device, torch.int64), self.info)

    def accumulate(self, batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward over the micro-batches; returns (local sums, global counts)."""
        counts = self.global_counts(batches)
        scale = self.info.world_size / counts.clamp(min=1).to(torch.float32)
        sums = torch.zeros(len(self.objective.terms), device=self.device)
        for index, batch in enumerate(batches):
            with dist.gradient_sync(self.wrapped, index == len(batches) - 1):
                with _autocast(self.device, self.config.dtype):
                    values = self.objective.sums(self.train_model, batch)
                    stacked = torch.stack([values[term].float() for term in self.objective.terms])
                loss = (stacked * scale).sum()
                self.scaler.scale(loss).backward()
            sums += stacked.detach()
        return sums, counts

    def _optimizer_step(self) -> torch.Tensor | None:
        grad_norm = None
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def train_step(self, step: int) -> _Step:
        """One optimizer update using the batches of `step` (0-based)."""
        cfg = self.config
        set_learning_rate(self.optimizer, learning_rate(cfg.schedule, step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps))
        batches = self.micro_batches(step)
        sums, counts = self.accumulate(batches)
        grad_norm = self._optimizer_step()
        return _Step(sums, counts, grad_norm, sum(_tokens(b) for b in batches) * self.info.world_size)

    def _train_row(self, done: _Step, timer: _Timer) -> dict[str, Any]:
        sums = dist.all_reduce_sum(done.sums.clone(), self.info)
        terms = (sums / done.counts.clamp(min=1)).tolist()
        row: dict[str, Any] = {"loss": float(sum(terms))}
        if len(terms) > 1:
            row.update({f"{term}_loss": value for term, value in zip(self.objective.terms, terms)})
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        if done.grad_norm is not None:
            row["grad_norm"] = float(done.grad_norm)
        seconds = time.perf_counter() - timer.start
        row["tokens_per_s"] = timer.tokens / seconds if seconds > 0 else 0.0
        return row

    # ---- evaluation ----------------------------------------------------------------------------
    def _eval_enabled(self) -> bool:
        return self.config.eval_batches != 0 or self.evaluate_hook is not None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss (and accuracy) per term over the evaluation batches, plus the hook's metrics."""
        terms = self.objective.terms
        totals = torch.zeros(3, len(terms), dtype=torch.float64, device=self.device)  # sums, counts, correct
        shard = self.info.enabled and not self.config.fsdp  # FSDP needs every rank in every forward
        self.model.eval()
        try:
            if self.config.eval_batches != 0:
                for index, batch in enumerate(islice(self.source.eval_batches(), self.config.eval_batches)):
                    if shard and index % self.info.world_size != self.info.rank:
                        continue
                    batch = _to_device(batch, self.device)
                    with _autocast(self.device, self.config.dtype):
                        values = self.objective.compute(self.model, batch, with_metrics=True)
                    counts = self.objective.counts(batch)
                    for i, term in enumerate(terms):
                        totals[0, i] += values.sums[term].double()
                        totals[1, i] += counts[term]
                        totals[2, i] += values.correct.get(term, 0)
            if shard:
                dist.all_reduce_sum(totals, self.info)
            metrics = self._eval_metrics(totals.tolist())
            if self.evaluate_hook is not None:
                extra = self.evaluate_hook(self.model)
                metrics.update({(k if k.startswith("eval_") else f"eval_{k}"): float(v) for k, v in extra.items()})
        finally:
            self.model.train()
        return dist.broadcast_object(metrics, self.info)

    def _eval_metrics(self, totals: list[list[float]]) -> dict[str, float]:
        sums, counts, correct = totals
        metrics: dict[str, float] = {}
        present = [i for i, count in enumerate(counts) if count > 0]
        if not present:
            return metrics
        metrics["eval_loss"] = sum(sums[i] / counts[i] for i in present)
        for i in present:
            term = self.objective.terms[i]
            if len(self.objective.terms) > 1:
                metrics[f"eval_{term}_loss"] = sums[i] / counts[i]
            metrics[f"eval_{term}_accuracy"] = correct[i] / counts[i]
        return metrics

    def _track_best(self, metrics: dict[str, float]) -> bool:
        """Update the best metric (saving `best`); True when early stopping says stop."""
        cfg, state = self.config, self.state
        value = metrics.get(cfg.metric_for_best)
        if value is None or not math.isfinite(value):
            return False
        if _improved(value, state.best_metric, cfg.greater_is_better):
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            if self.run_dir is not None:
                model_state = dist.full_model_state(self.model)
                if self.info.is_main:
                    ckpt.save_best(self.run_dir, self.model, model_state, {"step": state.step, **metrics})
            return False
        state.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        return patience is not None and state.evals_without_improvement >= patience

    # ---- saving --------------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write a step checkpoint (collective: every rank must call it)."""
        if self.run_dir is None:
            return None
        model_state = dist.full_model_state(self.model)
        optimizer_state = dist.full_optimizer_state(self.model, self.optimizer)
        self.state.rng = dist.gather_objects(ckpt.rng_state(), self.info)
        self.state.scaler = self.scaler.state_dict() if self.scaler.is_enabled() else None
        if not self.info.is_main:
            return None
        return ckpt.save_checkpoint(self.run_dir, self.model, model_state, optimizer_state, self.state, self.config.keep_last)

    # ---- the loop ------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to `max_steps` (or early stop); returns the history of logged rows."""
        cfg = self.config
        owns_group = not torch.distributed.is_initialized()
        self.setup()
        self._restore(self._prepare_run_dir(resume))
        state = self.state
        logger = RunLogger(self.run_dir, cfg.max_steps, state.step, state.history, cfg.progress, cfg.tensorboard, self.info.is_main)
        if resume:
            logger.message(f"resumed at step {state.step}" if state.step else "no checkpoint to resume: starting from step 0")
        self.model.train()
        timer, stop, finished = _Timer(), False, False
        try:
            while state.step < cfg.max_steps and not stop:
                started = time.perf_counter()
                done = self.train_step(state.step)
                state.step += 1
                state.tokens_seen += done.tokens
                timer.tokens += done.tokens
                last = state.step == cfg.max_steps
                row: dict[str, Any] = {}
                if state.step % cfg.log_every == 0 or last:
                    row.update(self._train_row(done, timer))
                state.elapsed_s += time.perf_counter() - started
                if self._eval_enabled() and ((cfg.eval_every and state.step % cfg.eval_every == 0) or last):
                    metrics = self.evaluate()
                    row.update(metrics)
                    stop = self._track_best(metrics)
                if row:
                    row = {"step": state.step, **row}
                    state.history.append(row)
                    logger.log(row, state.history)
                logger.advance(state.step)
                saving = bool(cfg.save_every and state.step % cfg.save_every == 0) or last or stop
                if saving:
                    self.save()
                if row or saving:  # time only training in tokens/s
                    timer.reset()
            if stop:
                logger.message(f"early stopping at step {state.step}: no improvement in {cfg.metric_for_best}")
            finished = True
        finally:
            logger.close(state.history, plot=cfg.plot)
            if owns_group and finished:
                # every rank waits for rank 0's last checkpoint before the group goes away; after an
                # error the group is left to the launcher (tearing it down could block or abort peers)
                dist.barrier(self.info)
                dist.shutdown()
        return state.history
