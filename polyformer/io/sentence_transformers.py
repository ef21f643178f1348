"""sentence-transformers folders: read their pipeline description and write folders it loads.

A sentence-transformers model is a folder whose `modules.json` lists a pipeline of modules:
Transformer (a Hugging Face model + tokenizer, with `sentence_bert_config.json` holding
`max_seq_length` and `do_lower_case`) → Pooling (`1_Pooling/config.json`) → optional Normalize.
polyformer reads that description into a `SentenceFolder` and rebuilds the same pipeline from
its own model, tokenizer and `polyformer.core.pooling.pool`; writing goes the other way, so a
folder saved here loads in `sentence_transformers.SentenceTransformer` with the same outputs.

Pooling configs come in two spellings: the classic `pooling_mode_*_tokens` booleans and the newer
single `pooling_mode` string. Both are read; the booleans are written, since every version of
sentence-transformers understands them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyformer.errors import CheckpointError, ConfigError, UnknownModelError
from polyformer.io.safetensors_io import read_json, write_json

MODULES_FILE = "modules.json"
TRANSFORMER_CONFIG = "sentence_bert_config.json"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
_MODULE_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
}
# sentence-transformers' pooling names (new `pooling_mode` values) ↔ polyformer.core.pooling modes
_ST_TO_OURS = {"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last", "weightedmean": "weighted-mean"}
_OURS_TO_ST = {ours: theirs for theirs, ours in _ST_TO_OURS.items()}
_LEGACY_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class SentenceFolder:
    """What a sentence-transformers folder says about its pipeline."""

    root: Path
    transformer: Path  # folder with config.json, weights and tokenizer files
    pooling: str  # a polyformer.core.pooling mode
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool = False


def is_sentence_transformers_folder(path: str | Path) -> bool:
    return (Path(path) / MODULES_FILE).is_file()


def _module_kind(entry: Any, source: Path) -> str:
    """'Transformer', 'Pooling' or 'Normalize' for a modules.json entry; otherwise an error."""
    kind = str(entry.get("type", "")).rsplit(".", 1)[-1] if isinstance(entry, dict) else ""
    if kind not in _MODULE_TYPES:
        raise UnknownModelError(
            f"{source}: module {entry!r} is not supported; polyformer reads Transformer → Pooling → Normalize pipelines"
        )
    return kind


def _modules(directory: Path) -> dict[str, Path]:
    """Module kind → its folder, in pipeline order."""
    source = directory / MODULES_FILE
    try:
        entries = json.loads(source.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot read ({err})") from None
    if not isinstance(entries, list):
        raise CheckpointError(f"{source}: expected a JSON list of modules")
    found: dict[str, Path] = {}
    for entry in entries:
        kind = _module_kind(entry, source)
        if kind in found:
            raise UnknownModelError(f"{source}: more than one {kind} module is not supported")
        found[kind] = directory / str(entry.get("path", ""))
    if "Transformer" not in found:
        raise CheckpointError(f"{source}: no Transformer module listed")
    return found


def pooling_mode(config: dict[str, Any], source: Path) -> str:
    """The one polyformer pooling mode a `1_Pooling/config.json` asks for."""
    if "pooling_mode" in config:
        value = config["pooling_mode"]
        modes = [value] if isinstance(value, str) else list(value)
    else:
        modes = [mode for key, mode in _LEGACY_FLAGS.items() if config.get(key)] or ["mean"]
    if len(modes) != 1:
        raise ConfigError(f"{source}: concatenated pooling modes {modes} are not supported; choose one")
    if modes[0] not in _ST_TO_OURS:
        raise ConfigError(
            f"{source}: pooling mode {modes[0]!r} is not supported; supported: {', '.join(_ST_TO_OURS)}"
        )
    return _ST_TO_OURS[modes[0]]


def read_folder(directory: str | Path) -> SentenceFolder:
    """Parse modules.json, the pooling config and sentence_bert_config.json of a folder."""
    directory = Path(directory)
    modules = _modules(directory)
    transformer = modules["Transformer"]
    settings = read_json(transformer / TRANSFORMER_CONFIG) if (transformer / TRANSFORMER_CONFIG).is_file() else {}
    pooling = "mean"  # sentence-transformers' default when a folder lists no Pooling module
    if "Pooling" in modules:
        pooling_file = modules["Pooling"] / "config.json"
        pooling = pooling_mode(read_json(pooling_file), pooling_file) if pooling_file.is_file() else "mean"
    max_len = settings.get("max_seq_length")
    return SentenceFolder(
        root=directory,
        transformer=transformer,
        pooling=pooling,
        normalize="Normalize" in modules,
        max_seq_length=int(max_len) if max_len is not None else None,
        do_lower_case=bool(settings.get("do_lower_case", False)),
    )


def pooling_config(mode: str, dimension: int) -> dict[str, Any]:
    """A `1_Pooling/config.json` for one polyformer pooling mode (classic boolean spelling)."""
    if mode not in _OURS_TO_ST:
        raise ConfigError(f"pooling mode {mode!r} has no sentence-transformers equivalent; use one of {', '.join(_OURS_TO_ST)}")
    chosen = _OURS_TO_ST[mode]
    flags = {key: name == chosen for key, name in _LEGACY_FLAGS.items()}
    return {"word_embedding_dimension": dimension, **flags, "include_prompt": True}


def write_folder(
    directory: str | Path,
    model,
    tokenizer,
    pooling: str,
    normalize: bool = True,
    max_seq_length: int | None = None,
    do_lower_case: bool = False,
) -> Path:
    """Write model (HF layout), tokenizer, pooling and normalize modules as a sentence-transformers folder."""
    from polyformer.io.hf import save_hf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_hf(model, directory, tokenizer)
    write_json({"max_seq_length": max_seq_length, "do_lower_case": do_lower_case}, directory / TRANSFORMER_CONFIG)
    write_json(pooling_config(pooling, model.config.hidden_size), directory / POOLING_DIR / "config.json")
    modules = [("Transformer", ""), ("Pooling", POOLING_DIR)]
    normalize_dir = directory / NORMALIZE_DIR
    if normalize:
        normalize_dir.mkdir(exist_ok=True)
        modules.append(("Normalize", NORMALIZE_DIR))
    elif normalize_dir.is_dir():
        shutil.rmtree(normalize_dir)
    entries = [
        {"idx": index, "name": str(index), "path": path, "type": _MODULE_TYPES[kind]}
        for index, (kind, path) in enumerate(modules)
    ]
    _write_json_list(entries, directory / MODULES_FILE)
    return directory


def _write_json_list(entries: list[dict[str, Any]], path: Path) -> None:
    """Write a JSON list atomically (write_json takes objects only)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    os.replace(tmp, path)


__all__ = ["SentenceFolder", "is_sentence_transformers_folder", "pooling_config", "pooling_mode", "read_folder", "write_folder"]
