"""What every layer needs from the machine: a device, a precision name, a file written safely.

- `resolve_device` turns a device name ("auto", "cpu", "cuda", "cuda:N") into a `torch.device`
  and changes nothing else (training's `distributed.resolve_device` also makes the device current
  for its rank).
- `DTYPES` is the one table of precision names: what each means as a tensor dtype, whether
  training can autocast to it and whether inference can hold weights in it. Training, the
  sentence encoder and `polyformer.precision` each accept the subset that applies to them.
- `lazy_attributes` lets a package load its public names on first use (`import polyformer` stays fast).
- `write_atomic` is the one way files are written: readers see the old file or the new one,
  never half of one; `read_json` the one way JSON is read, with an error that names the file.

This module sits below everything else in the package and imports only `polyformer.errors`
(torch when a device or a tensor dtype is asked for: tokenizing and writing files never load it).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from polyformer.errors import ConfigError, PolyformerError

if TYPE_CHECKING:
    import torch

# ---- devices ---------------------------------------------------------------------------------


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """'auto' → CUDA when there is a GPU, else CPU; 'cuda' → this process's GPU; other names as given.

    local_rank picks the GPU of a bare 'cuda' (default: $LOCAL_RANK, as launchers set it, else 0).
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu' or 'auto'")
    if resolved.index is None:
        rank = _local_rank() if local_rank is None else local_rank
        resolved = torch.device("cuda", rank % torch.cuda.device_count())
    return resolved


def _local_rank() -> int:
    try:
        return int(os.environ.get("LOCAL_RANK", 0))
    except ValueError:
        raise ConfigError(f"LOCAL_RANK must be an integer, got {os.environ['LOCAL_RANK']!r}") from None


# ---- packages ----------------------------------------------------------------------------


def lazy_attributes(module: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for a package whose public names (name → module) load on first use."""
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__


# ---- precision names -------------------------------------------------------------------------

DTypeName = Literal["float32", "bfloat16", "float16", "int8"]
DTYPE_NAMES: tuple[DTypeName, ...] = get_args(DTypeName)


@dataclass(frozen=True)
class DType:
    """What one precision name means."""

    tensor: str | None  # the torch dtype's name; None for int8 (weight-only: values int8, products bfloat16)
    autocast: bool  # training can autocast to it
    weights: bool  # `polyformer.precision` can hold inference weights in it (on any device)

    @property
    def torch(self) -> torch.dtype | None:
        import torch

        return None if self.tensor is None else getattr(torch, self.tensor)


DTYPES: dict[DTypeName, DType] = {
    "float32": DType("float32", autocast=True, weights=True),
    "bfloat16": DType("bfloat16", autocast=True, weights=True),
    "float16": DType("float16", autocast=True, weights=False),  # inference: GPUs only, the whole model
    "int8": DType(None, autocast=False, weights=True),
}
DTYPE_ALIASES: dict[str, DTypeName] = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "i8": "int8"}
AUTOCAST_DTYPES: tuple[DTypeName, ...] = tuple(name for name, kind in DTYPES.items() if kind.autocast)
WEIGHT_DTYPES: tuple[DTypeName, ...] = tuple(name for name, kind in DTYPES.items() if kind.weights)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies in bfloat16 natively (AVX512-BF16 or AMX); without either, CPU
    bfloat16 autocast is emulated and runs many times slower than float32."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def dtype_named(name: object, allowed: Sequence[DTypeName] = DTYPE_NAMES, *, field: str = "dtype",
                aliases: bool = False) -> DTypeName:
    """`name` as one of `allowed` (with `aliases`: also fp32, bf16, ..., any case); ConfigError naming `field`."""
    text = str(name)
    canonical = DTYPE_ALIASES.get(text.lower(), text.lower()) if aliases else text
    if canonical not in allowed:
        known = [alias for alias, target in DTYPE_ALIASES.items() if target in allowed]
        note = f" (aliases: {', '.join(known)})" if aliases and known else ""
        raise ConfigError(f"{field}={name!r} is not one of {', '.join(allowed)}{note}")
    return canonical  # type: ignore[return-value]


# ---- files -----------------------------------------------------------------------------------

Content = str | bytes | Callable[[Path], object]


def write_atomic(path: str | os.PathLike[str], content: Content, *, durable: bool = False) -> Path:
    """Write `path` so that readers see the old file or the new one, never half of one; returns it.

    `content` is text (written as UTF-8), bytes, or a function that writes the file it is given
    (a library's own writer). It goes to a temporary file beside `path`, renamed over it once
    complete. The file gets ordinary permissions, 0666 minus the umask as `open` gives them (not
    the 0600 of `tempfile.mkstemp`), so a saved model folder is readable by whoever may read its
    folder. `durable=True` also flushes the file and the rename to disk before returning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        ordinary = stat.S_IMODE(os.fstat(fd).st_mode)
        with os.fdopen(fd, "wb") as handle:
            if not callable(content):
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        if callable(content):
            content(tmp)
            os.chmod(tmp, ordinary)  # some writers (safetensors) make a fresh 0600 file of their own
        if durable:
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync(path.parent)
    return path


def read_json(path: str | os.PathLike[str], error: type[PolyformerError], what: str = "file") -> Any:
    """Parsed JSON from a file; `error` naming the file (and where a syntax error is) otherwise."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason}); replace the file") from None
    except json.JSONDecodeError as err:
        raise error(f"{path}: malformed JSON at line {err.lineno} column {err.colno} ({err.msg}): not valid JSON; "
                    "replace the file with an intact copy") from None


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries (a rename inside it), to disk.

    A folder that cannot be opened (some filesystems refuse) is left as it is.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
