"""What every family's config.json translation shares, as data: a `Dialect` per family.

Each family reads and writes its own size fields (`n_embd` or `hidden_size`, ...), but the checks
around them are the same everywhere: which architectures map to which head, how the family
names activations, which of our fields every model of the family has (its layout), which of its
options polyformer supports at one value only. A family module declares those tables once;
`read` checks a config.json against them and gives the fields they decide, `write` checks a
model fits the family and gives the export's `model_type`, `architectures`, activation and
special token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.config import ModelConfig


@dataclass(frozen=True)
class Dialect:
    name: str  # the family's model_type, as messages name it
    shape: str  # how export messages name its models ("GPT-2")
    architectures: dict[str, str]  # their architecture names → our head names
    activation_field: str  # their config field naming the activation
    activations: dict[str, str]  # their activation names → ours
    export_activations: dict[str, str]  # ours → theirs
    layout: dict[str, Any]  # ModelConfig fields every model of the family has
    fixed: dict[str, Any] = field(default_factory=dict)  # their options supported at one value only
    default_activation: str | None = None  # None: the config must name it
    default_head: str = "lm"  # without a known architecture
    export_heads: dict[str, str] | None = None  # our head → the architecture written; default: the inverse
    unknown_architectures: bool = False  # accept architectures outside the table (as the default head)
    same_head_sizes: bool = False  # the family needs num_kv_heads == num_heads and head_dim * num_heads == hidden
    model_types: tuple[str, ...] = ()  # the model_type values read as this family; default: (name,)
    special_tokens: dict[str, int | None] = field(default_factory=dict)  # id fields read and written as they are, with defaults

    def read(self, hf: dict) -> dict[str, Any]:
        """The layout, activation and head of a config.json, after checking its options are supported."""
        for key, supported in self.fixed.items():
            if hf.get(key, supported) != supported:
                raise ConfigError(f"{key}={hf[key]!r} is not supported for {self.name} models (only {supported!r})")
        if self.default_activation is None and self.activation_field not in hf:
            raise ConfigError(f"missing field {self.activation_field!r} for a {self.name} model")
        act = hf.get(self.activation_field, self.default_activation)
        if act not in self.activations:
            raise ConfigError(f"{self.activation_field}={act!r} is not supported; use one of {', '.join(self.activations)}")
        given = hf.get("architectures") or []
        unknown = [arch for arch in given if arch not in self.architectures]
        if unknown and not self.unknown_architectures:
            raise ConfigError(f"architectures={unknown!r} is not supported; {self.name} loads as "
                              f"{', '.join(self.architectures)}")
        head = next((self.architectures[arch] for arch in given if arch in self.architectures), self.default_head)
        tokens = {name: hf.get(name, default) for name, default in self.special_tokens.items()}
        return {**self.layout, "activation": self.activations[act], "head": head, **tokens}

    def write(self, config: ModelConfig) -> dict[str, Any]:
        """model_type, architectures and activation of an export, after checking the model is of this family."""
        wrong = [f"{key}={getattr(config, key)!r}" for key, value in self.layout.items() if getattr(config, key) != value]
        if wrong:
            raise ConfigError(f"not a {self.shape}-shaped model: {', '.join(wrong)}")
        if config.activation not in self.export_activations:
            raise ConfigError(f"activation={config.activation!r} has no {self.shape} equivalent "
                              f"({', '.join(self.export_activations)})")
        if self.same_head_sizes and (config.kv_heads != config.num_heads
                                     or config.dim_head * config.num_heads != config.hidden_size):
            raise ConfigError(f"{self.shape} needs num_kv_heads == num_heads and head_dim == hidden_size // num_heads")
        heads = self.export_heads or {head: arch for arch, head in self.architectures.items()}
        if config.head not in heads:
            raise ConfigError(f"head={config.head!r} has no {self.shape} architecture polyformer exports "
                              f"({', '.join(heads)})")
        return {"model_type": self.name, "architectures": [heads[config.head]],
                self.activation_field: self.export_activations[config.activation],
                **{name: getattr(config, name) for name in self.special_tokens}}


def add_prefix(state: dict, prefix: str, bare: tuple[str, ...]) -> dict:
    """Base-model files name tensors without the task model's prefix (`transformer.`, `model.`); add it."""
    return {(prefix + name if name.startswith(bare) else name): tensor for name, tensor in state.items()}
