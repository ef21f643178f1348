"""Reading and writing tensor files safely.

safetensors is the default and the only format read without asking. Pickle-based files
(`.bin`, `.pt`, `.pth`, `.ckpt`) can run arbitrary code when loaded, so they are refused unless
the caller passes `allow_pickle=True`, and even then they are read with `weights_only=True`.
Every failure becomes a `CheckpointError` naming the file. Writes go to a temp file that is
renamed into place, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polyformer.errors import CheckpointError, UnsafeCheckpointError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _check_safetensors_header(path: Path) -> None:
    """Catch truncation early, with a message that says what is wrong."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        header_len = struct.unpack("<Q", raw)[0]
        if header_len > size - 8:
            raise CheckpointError(f"{path}: truncated or corrupted safetensors file (header says {header_len} bytes, file has {size})")
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: corrupted safetensors header (not JSON)") from None
    try:
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise CheckpointError(f"{path}: corrupted safetensors header (not a table of tensors and their offsets)") from None
    if ends and 8 + header_len + max(ends) > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file ({size} bytes, tensors need {8 + header_len + max(ends)}); "
            "re-download or re-save the checkpoint"
        )


def read_tensors(path: str | Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors in one file, as CPU tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, allow_pickle)
    _check_safetensors_header(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read safetensors file ({err})") from None


def _read_pickle(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load a pickle checkpoint (it can run arbitrary code); convert it to "
            "safetensors, or pass allow_pickle=True / --allow-pickle if you trust its source"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad pickles
        raise CheckpointError(f"{path}: cannot read pickle checkpoint with weights_only=True ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return state


def write_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(contiguous, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict:
    """A JSON object from a file, or a CheckpointError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data
