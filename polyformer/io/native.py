"""polyformer's own checkpoint format: config.json ({"polyformer": ModelConfig}) + model.safetensors.

Tensor names are the model's own parameter names; tied tensors are stored once and re-tied on load.
"""

from __future__ import annotations

from pathlib import Path

from polyformer.config import ModelConfig
from polyformer.io.hf.common import load_into, tied_names
from polyformer.io.safetensors_io import read_json, read_tensors, write_json, write_tensors
from polyformer.models import PolyformerModel


def is_native(directory: Path) -> bool:
    config = directory / "config.json"
    return config.is_file() and "polyformer" in read_json(config)


def save_native(model: PolyformerModel, directory: str | Path) -> None:
    directory = Path(directory)
    tied = tied_names(model)
    state = {name: tensor for name, tensor in model.state_dict().items() if name not in tied}
    write_tensors(state, directory / "model.safetensors", metadata={"format": "polyformer"})
    write_json({"polyformer": model.config.to_dict()}, directory / "config.json")


def load_native(directory: str | Path, allow_pickle: bool = False) -> PolyformerModel:
    directory = Path(directory)
    config = ModelConfig.load(directory / "config.json")
    state = read_tensors(directory / "model.safetensors", allow_pickle=allow_pickle)
    model = PolyformerModel(config)
    load_into(model, state, set(), str(directory / "model.safetensors"))
    return model.eval()
