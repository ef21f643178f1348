"""Hugging Face checkpoint folders (config.json + safetensors) ↔ polyformer models.

Families register here by `model_type`; each is a `Family` of name-map rules (see common.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from polyformer.config import ModelConfig
from polyformer.errors import CheckpointError, ConfigError, TokenizerError, UnknownModelError
from polyformer.io.hf.common import Family, export_state, import_state, load_into
from polyformer.io.safetensors_io import PICKLE_SUFFIXES, read_json, read_tensors, write_json, write_tensors
from polyformer.models import PolyformerModel

_FAMILY_MODULES = ("bert", "gpt2", "llama", "marian")
GENERATION_CONFIG = "generation_config.json"
_GENERATION_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_eos_token_id")


def families() -> dict[str, Family]:
    """model_type → Family, for every family module present."""
    table: dict[str, Family] = {}
    for name in _FAMILY_MODULES:
        try:
            module = importlib.import_module(f"polyformer.io.hf.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"polyformer.io.hf.{name}":
                raise
            continue
        for model_type in module.FAMILY.model_types:
            table[model_type] = module.FAMILY
    return table


def family_for(hf_config: dict, source: str) -> Family:
    model_type = hf_config.get("model_type")
    if model_type is None:
        raise ConfigError(f"{source}: missing field 'model_type'")
    table = families()
    if model_type not in table:
        raise UnknownModelError(f"{source}: model_type {model_type!r} is not supported; supported: {', '.join(sorted(table))}")
    return table[model_type]


def _weight_files(directory: Path) -> list[Path]:
    """The weight files of a folder: one safetensors file, a sharded index, or (refused by default) pickles."""
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        return [directory / name for name in sorted(set(weight_map.values()))]
    pickles = [directory / name for name in ("pytorch_model.bin", "model.pt") if (directory / name).is_file()]
    if pickles:
        return pickles
    raise CheckpointError(f"{directory}: no model.safetensors (or sharded index) found")


def read_state(directory: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in _weight_files(directory):
        state.update(read_tensors(path, allow_pickle=allow_pickle))
    return state


def load_hf(directory: str | Path, head: str | None = None, allow_pickle: bool = False, **overrides) -> PolyformerModel:
    """A model from a transformers folder. `head` swaps in a fresh head (e.g. for fine-tuning)."""
    directory = Path(directory)
    source = str(directory / "config.json")
    hf_config = read_json(directory / "config.json")
    family = family_for(hf_config, source)
    try:
        config = family.config_from_hf(hf_config)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"{source}: invalid value ({err})") from None
    checkpoint_config = config
    if head is not None or overrides:
        config = config.replace(head=head or config.head, **overrides)
    their_state = read_state(directory, allow_pickle)
    state = import_state(family, checkpoint_config, their_state, str(directory))
    model = PolyformerModel(config)
    fresh: set[str] = set()
    if config.head != checkpoint_config.head:  # a new head starts from its initialisation
        fresh = {name for name in model.state_dict() if name.startswith(("head.", "nsp."))}
        state = {name: tensor for name, tensor in state.items() if not name.startswith(("head.", "nsp."))}
    load_into(model, state, fresh, str(directory))
    return model.eval()


def save_hf(model: PolyformerModel, directory: str | Path, tokenizer: Any = None) -> None:
    """Write the folder transformers' `from_pretrained` and `pipeline` load: config.json,
    model.safetensors, generation_config.json for models that generate, and the tokenizer when given."""
    if tokenizer is not None and not hasattr(tokenizer, "backend"):  # a CharTokenizer: no `tokenizers` pipeline
        raise TokenizerError(f"{type(tokenizer).__name__} has no transformers equivalent; export the model without it "
                             "(tokenizer=None) or save it in the native layout")
    directory = Path(directory)
    config = model.config
    matching = [family for family in families().values() if _can_export(family, config)]
    if not matching:
        raise ConfigError("this model's configuration matches no Hugging Face family polyformer can export")
    family = matching[0]
    hf_config = family.config_to_hf(config)
    state = export_state(family, config, model.state_dict())
    write_tensors(state, directory / "model.safetensors", metadata={"format": "pt"})
    write_json(hf_config, directory / "config.json")
    if config.head == "lm":
        write_json(generation_config(hf_config, tokenizer), directory / GENERATION_CONFIG)
    if tokenizer is not None:
        tokenizer.save(directory)


def generation_config(hf_config: dict, tokenizer: Any = None) -> dict:
    """`generation_config.json`: the special ids generation uses, from the model's config and its tokenizer.

    EOS lists both the model's and the tokenizer's end token when they differ, since polyformer's
    generation stops at either; ids outside the vocabulary are left out.
    """
    vocab = int(hf_config.get("vocab_size") or 0)
    ids = {name: hf_config.get(name) for name in _GENERATION_IDS}
    ends = [ids["eos_token_id"]]
    if tokenizer is not None:
        ids["bos_token_id"] = _first(ids["bos_token_id"], tokenizer.bos_token_id)
        ids["pad_token_id"] = _first(ids["pad_token_id"], tokenizer.pad_token_id)
        ends.append(tokenizer.eos_token_id)
    known = [i for i in dict.fromkeys(ends) if i is not None and 0 <= i < vocab]
    ids["eos_token_id"] = known[0] if len(known) == 1 else known or None
    return {name: value for name, value in ids.items()
            if value is not None and (isinstance(value, list) or 0 <= value < vocab)}


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def _can_export(family: Family, config: ModelConfig) -> bool:
    try:
        family.config_to_hf(config)
    except ConfigError:
        return False
    return True


__all__ = ["GENERATION_CONFIG", "PICKLE_SUFFIXES", "families", "generation_config", "load_hf", "read_state", "save_hf"]
