"""Name-map tables between polyformer parameter names and a checkpoint family's names.

A family (BERT, GPT-2, Llama, Marian, ...) is described as data: a list of `Rule`s, each mapping
one polyformer tensor to one or more of the family's tensors. Several source tensors are
concatenated along dim 0 on import and split again on export (our fused q/k/v and gate/up
projections); an optional per-tensor transform handles layout differences (GPT-2's Conv1D
weights are transposed). `{i}` in a name stands for a layer index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch

from polyformer.errors import CheckpointError

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.io.hf.dialect import Dialect

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Rule:
    ours: str
    theirs: tuple[str, ...]
    layers: str = ""  # "" (no {i}), "encoder" (num_layers) or "decoder" (decoder_layers)
    to_ours: Transform | None = None  # applied to each of their tensors on import
    to_theirs: Transform | None = None  # applied to each split piece on export
    split: Callable[[ModelConfig], list[int]] | None = None  # sizes along dim 0 when len(theirs) > 1


def rule(ours: str, *theirs: str, **options) -> Rule:
    return Rule(ours, tuple(theirs), **options)


def transpose(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.t().contiguous() if tensor.dim() == 2 else tensor


def qkv_sizes(config: ModelConfig) -> list[int]:
    kv = config.kv_heads * config.dim_head
    return [config.num_heads * config.dim_head, kv, kv]


def kv_sizes(config: ModelConfig) -> list[int]:
    kv = config.kv_heads * config.dim_head
    return [kv, kv]


def halves(config: ModelConfig) -> list[int]:
    return [config.ffn_size, config.ffn_size]


@dataclass
class Family:
    """Everything needed to move one checkpoint family in and out of polyformer."""

    name: str
    model_types: tuple[str, ...]
    config_from_hf: Callable[[dict], ModelConfig]
    config_to_hf: Callable[[ModelConfig], dict]
    rules: Callable[[ModelConfig], list[Rule]]
    normalize: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda state: state
    ignore: tuple[str, ...] = ()  # regexes of their tensors we neither need nor warn about
    tied: Callable[[ModelConfig], list[str]] = field(default=lambda config: [])  # their names left out when tied

    @classmethod
    def of(cls, dialect: Dialect, config_from_hf: Callable[[dict], ModelConfig],
           config_to_hf: Callable[[ModelConfig], dict], rules: Callable[[ModelConfig], list[Rule]], **options) -> Family:
        """A Hugging Face family: named by its dialect, read and written by its module's functions."""
        return cls(dialect.name, dialect.model_types or (dialect.name,), config_from_hf, config_to_hf, rules, **options)


def _expand(rule_: Rule, config: ModelConfig) -> list[tuple[str, tuple[str, ...]]]:
    if not rule_.layers:
        return [(rule_.ours, rule_.theirs)]
    count = config.num_layers if rule_.layers == "encoder" else config.decoder_layers
    return [
        (rule_.ours.format(i=i), tuple(name.format(i=i) for name in rule_.theirs))
        for i in range(count)
    ]


def import_state(
    family: Family, config: ModelConfig, theirs: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Their tensors → our state dict; absent tensors are reported later by `load_into`."""
    theirs = family.normalize(dict(theirs))
    used: set[str] = set()
    ours: dict[str, torch.Tensor] = {}
    for rule_ in family.rules(config):
        for our_name, their_names in _expand(rule_, config):
            if any(name not in theirs for name in their_names):
                continue
            pieces = [theirs[name] for name in their_names]
            if rule_.to_ours is not None:
                pieces = [rule_.to_ours(piece) for piece in pieces]
            ours[our_name] = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
            used.update(their_names)
    unexpected = [
        name for name in theirs
        if name not in used and not any(re.search(pattern, name) for pattern in family.ignore)
    ]
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} tensor(s) not understood for a {family.name} checkpoint, "
            f"e.g. {', '.join(sorted(unexpected)[:3])}; the file does not match its config.json"
        )
    return ours


def export_state(family: Family, config: ModelConfig, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict → their tensor names, leaving out tensors the family ties."""
    theirs: dict[str, torch.Tensor] = {}
    tied = set(family.tied(config))
    for rule_ in family.rules(config):
        for our_name, their_names in _expand(rule_, config):
            if our_name not in ours:
                continue
            tensor = ours[our_name]
            pieces = [tensor] if len(their_names) == 1 else list(torch.split(tensor, rule_.split(config), dim=0))
            for name, piece in zip(their_names, pieces):
                if name in tied:
                    continue
                theirs[name] = rule_.to_theirs(piece) if rule_.to_theirs is not None else piece
    return theirs


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], missing_ok: set[str], source: str) -> None:
    """Copy state into the model, checking shapes and that nothing required is missing."""
    expected = model.state_dict()
    for name, tensor in state.items():
        if name not in expected:
            raise CheckpointError(f"{source}: tensor {name} has no place in this model")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: tensor {name} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(expected[name].shape)}; the weights do not match config.json"
            )
    tied = tied_names(model)
    absent = [name for name in expected if name not in state and name not in tied and name not in missing_ok]
    if absent:
        raise CheckpointError(
            f"{source}: {len(absent)} weight(s) missing, e.g. {', '.join(absent[:3])}; the checkpoint "
            "is incomplete or was saved for a different architecture"
        )
    model.load_state_dict(state, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def tied_names(model: torch.nn.Module) -> set[str]:
    """Parameter names that share storage with an earlier-named parameter."""
    seen: dict[int, str] = {}
    tied: set[str] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in seen:
            tied.add(name)
        else:
            seen[key] = name
    return tied
