"""Crash-safe training checkpoints: write everything to a temp folder, then rename it into place.

A run directory holds

    run.yaml                         the resolved run configuration (checked on resume)
    metrics.csv, tb/, plot.png       logs (see logging.py)
    checkpoints/step-000120/         one complete checkpoint per save, the last `keep_last` kept
        config.json                  {"polyformer": ModelConfig}  -> `pf.load(dir)` works
        model.safetensors            model weights (tied weights stored once)
        optimizer.safetensors        optimizer tensors, named "state/<parameter>/<key>"
        optimizer.json               optimizer param groups and non-tensor state
        trainer_state.json           step, loss history, RNG states of every rank, grad scaler,
                                     best metric, the run configuration  (written last)
    checkpoints/best/                weights with the best evaluation metric (+ metrics.json)

No pickle is written or read: tensors go to safetensors, everything else to JSON.

Atomicity: files are written into `checkpoints/.tmp-<name>-<pid>/`, fsync'd, and the folder is
renamed to its final name with one `os.replace`. A process killed at any moment leaves either the
old set of checkpoints or the new one, plus perhaps a `.tmp-*` folder that is never read and is
removed on the next start. Replacing `best` or deleting an old checkpoint first renames the
folder to `.trash-*`, so a folder with a final name is always complete.
"""

from __future__ import annotations

import base64
import os
import random
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyformer.errors import CheckpointError, ConfigError
from polyformer.io.safetensors_io import read_json, read_tensors, write_json, write_tensors

CHECKPOINTS = "checkpoints"
BEST = "best"
STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    step: int = 0  # optimizer updates taken; also the data position (batches are f(step))
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    rng: list[dict[str, Any]] = field(default_factory=list)  # one entry per rank
    scaler: dict[str, Any] | None = None
    run: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> "TrainState":
        try:
            return cls(**data)
        except TypeError as err:
            raise CheckpointError(f"{source}: not a polyformer trainer state ({err})") from None


@dataclass
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    state: TrainState


# ---- RNG states as JSON ------------------------------------------------------------------------
def _encode_bytes(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _decode_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) generator states, JSON-serialisable."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
        "torch": _encode_bytes(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_encode_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(_decode_bytes(state["torch"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_decode_bytes(s) for s in cuda])


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global generator and torch (the CPU and every CUDA device).

    The one seeding function of polyformer. Each entry point that trains calls it first, with the
    run's seed, before anything random is drawn: `pretrain.run` (initial weights; the demo trains
    through it), `tasks.recipe.finetune` (the fresh head), `embeddings.training.train_contrastive`
    (embed-train), and any recipe built on those. The trainer calls it once more at step 0 with
    seed + rank, so each rank has its own dropout stream; a resumed run restores the saved states
    instead (`set_rng_state`). torch starts every process from a random seed, so a model built
    before this call would differ from run to run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


# ---- tensors of a model and an optimizer ---------------------------------------------------------
def tied_sources(model: nn.Module) -> dict[str, str]:
    """{name of a tied tensor: name of the tensor it shares}, for tensors stored once."""
    seen: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied[name] = seen[id(tensor)]
        else:
            seen[id(tensor)] = name
    return tied


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, the rest for JSON) of a name-keyed optimizer state dict."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, entry in state.get("state", {}).items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{param}/{key}"] = value
            else:
                scalars.setdefault(param, {})[key] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {param: dict(values) for param, values in rest.get("scalars", {}).items()}
    for name, tensor in tensors.items():
        param, key = name.removeprefix("state/").rsplit("/", 1)
        state.setdefault(param, {})[key] = tensor
    groups = [dict(group, betas=tuple(group["betas"])) if "betas" in group else group for group in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---- writing -----------------------------------------------------------------------------------
def _fsync_tree(directory: Path) -> None:
    """Flush every file and the folder itself, so a rename never exposes unwritten data."""
    for path in [*directory.iterdir(), directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_dir(parent: Path, name: str) -> Path:
    path = parent / f".tmp-{name}-{os.getpid()}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _discard(path: Path) -> None:
    """Remove a checkpoint folder: rename it out of sight first, then delete it."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _commit(tmp: Path, final: Path) -> None:
    """Move a fully written temp folder to its final name (replacing an older one)."""
    _fsync_tree(tmp)
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_model(directory: Path, model: nn.Module, model_state: dict[str, torch.Tensor]) -> None:
    tied = tied_sources(model)
    stored = {name: tensor for name, tensor in model_state.items() if name not in tied}
    write_tensors(stored, directory / "model.safetensors", metadata={"format": "polyformer"})
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        write_json({"polyformer": config.to_dict()}, directory / "config.json")


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: TrainState,
    keep_last: int,
) -> Path:
    """Write checkpoints/step-NNNNNN atomically, then drop all but the newest `keep_last`."""
    parent = Path(run_dir) / CHECKPOINTS
    final = parent / step_name(state.step)
    tmp = _temp_dir(parent, final.name)
    _write_model(tmp, model, model_state)
    tensors, rest = _split_optimizer_state(optimizer_state)
    write_tensors(tensors, tmp / "optimizer.safetensors", metadata={"format": "polyformer-optimizer"})
    write_json(rest, tmp / "optimizer.json")
    write_json(asdict(state), tmp / STATE_FILE)  # last: its presence marks a complete folder
    _commit(tmp, final)
    for _, old in list_checkpoints(run_dir)[: -max(1, keep_last)]:
        _discard(old)
    return final


def save_best(run_dir: str | Path, model: nn.Module, model_state: dict[str, torch.Tensor], metrics: dict[str, Any]) -> Path:
    """Replace checkpoints/best with these weights and the metrics that earned them."""
    parent = Path(run_dir) / CHECKPOINTS
    tmp = _temp_dir(parent, BEST)
    _write_model(tmp, model, model_state)
    write_json(metrics, tmp / "metrics.json")
    final = parent / BEST
    _commit(tmp, final)
    return final


# ---- reading -----------------------------------------------------------------------------------
def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete step checkpoint, oldest first."""
    parent = Path(run_dir) / CHECKPOINTS
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read one step checkpoint folder (a CheckpointError names any bad file)."""
    path = Path(path)
    state = TrainState.from_dict(read_json(path / STATE_FILE), str(path / STATE_FILE))
    model_state = read_tensors(path / "model.safetensors")
    optimizer_state = _join_optimizer_state(read_tensors(path / "optimizer.safetensors"), read_json(path / "optimizer.json"))
    return Checkpoint(path, model_state, optimizer_state, state)


def clean_incomplete(run_dir: str | Path) -> None:
    """Remove temp and trash folders left by a killed run; restore `best` if it was mid-swap."""
    parent = Path(run_dir) / CHECKPOINTS
    if not parent.is_dir():
        return
    leftovers = sorted(p for p in parent.iterdir() if p.name.startswith((".tmp-", ".trash-")))
    best_trash = [p for p in leftovers if p.name.startswith(f".trash-{BEST}-")]
    if best_trash and not (parent / BEST).exists():
        os.replace(best_trash[-1], parent / BEST)
    for path in leftovers:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def resume(run_dir: str | Path) -> Checkpoint | None:
    """The latest complete checkpoint of a run (falling back past unreadable ones), or None.

    Leftovers of a killed save are removed, and step checkpoints newer than the one returned
    (unreadable ones) are discarded so the resumed run can write those steps again.
    """
    clean_incomplete(run_dir)
    found = list_checkpoints(run_dir)
    for index in range(len(found) - 1, -1, -1):
        try:
            checkpoint = load_checkpoint(found[index][1])
        except CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=2)
            continue
        for _, newer in found[index + 1 :]:
            _discard(newer)
        return checkpoint
    return None


def load_model_state(model: nn.Module, model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's model state completed with the tied names stored once."""
    complete = dict(model_state)
    for name, source in tied_sources(model).items():
        if name not in complete and source in complete:
            complete[name] = complete[source]
    return complete


# ---- run configuration -------------------------------------------------------------------------
def config_differences(saved: Any, requested: Any, ignore: set[str], prefix: str = "") -> list[str]:
    """Dotted names (with both values) where two nested configurations differ."""
    if prefix in ignore:
        return []
    if isinstance(saved, dict) and isinstance(requested, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(requested), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += config_differences(saved.get(key), requested.get(key), ignore, name)
        return out
    if isinstance(saved, (list, tuple)) and isinstance(requested, (list, tuple)):
        saved, requested = list(saved), list(requested)
    return [] if saved == requested else [f"{prefix} (run has {saved!r}, requested {requested!r})"]


def check_run_config(saved: dict[str, Any], requested: dict[str, Any], source: str, ignore: set[str]) -> None:
    """ConfigError naming each field where a resumed run's configuration differs from its run dir's."""
    differences = config_differences(saved, requested, ignore)
    if differences:
        raise ConfigError(
            f"{source}: cannot resume, the configuration differs in {'; '.join(differences[:5])}"
            f"{' ...' if len(differences) > 5 else ''}; resume with the run's settings or choose a new output directory"
        )
