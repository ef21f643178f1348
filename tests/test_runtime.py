"""The runtime module: device names, the precision table and the one atomic file writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

import polyformer as pf
from polyformer.config import preset
from polyformer.errors import ConfigError
from polyformer.models import PolyformerModel
from polyformer.runtime import AUTOCAST_DTYPES, DTYPES, WEIGHT_DTYPES, dtype_named, resolve_device, write_atomic


@pytest.fixture
def umask():
    """Set a umask for one test, restoring the old one after."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_ordinary_permissions(tmp_path, umask, mask, expected):
    umask(mask)
    for content in ("text", b"bytes", lambda tmp: tmp.write_text("a library's own writer")):
        path = write_atomic(tmp_path / "sub" / "file.txt", content)
        assert mode(path) == expected


def test_exported_model_folders_are_readable_by_others(tmp_path, umask):
    umask(0o022)
    model = PolyformerModel(preset("gpt-tiny", vocab_size=64))
    for layout in ("native", "hf"):
        out = pf.save(model, tmp_path / layout, format=layout)
        files = sorted(p for p in out.iterdir() if p.is_file())
        assert files and all(mode(p) & stat.S_IROTH for p in files), [(p.name, oct(mode(p))) for p in files]


def test_write_atomic_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "meta.json"
    write_atomic(path, "old")
    write_atomic(path, "new", durable=True)
    assert path.read_text() == "new"

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_one_table_of_precision_names():
    assert AUTOCAST_DTYPES == ("float32", "bfloat16", "float16")
    assert WEIGHT_DTYPES == ("float32", "bfloat16", "int8")
    assert set(DTYPES) == {"float32", "bfloat16", "float16", "int8"}
    assert dtype_named("BF16", WEIGHT_DTYPES, field="precision", aliases=True) == "bfloat16"
    with pytest.raises(ConfigError, match=r"dtype='int8' is not one of float32, bfloat16, float16$"):
        dtype_named("int8", AUTOCAST_DTYPES)
