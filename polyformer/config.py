"""Model configuration: one dataclass describes every form of the Transformer.

BERT, GPT-2, Llama and the original encoder–decoder differ only in the fields below (which
stacks exist, where the norm sits, how positions are encoded, which activation the MLP uses, how
many key/value heads attention shares). The core reads nothing but this config, so a new family
is a new preset or a new checkpoint name map, never new model code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from polyformer.errors import ConfigError
from polyformer.runtime import read_json, write_atomic

# One Literal per string-valued field: the type, and (through get_args) the names validation accepts.
Arch = Literal["encoder", "decoder", "encoder-decoder"]
HeadName = Literal[
    "none",
    "mlm",
    "pretraining",
    "lm",
    "sequence-classification",
    "token-classification",
    "question-answering",
]  # what each one builds and outputs: polyformer.heads.HEAD_KINDS
Norm = Literal["layernorm", "rmsnorm"]
Placement = Literal["pre", "post"]
Position = Literal["learned", "sinusoidal", "rotary", "none"]
Activation = Literal["gelu", "gelu_new", "relu", "silu", "swiglu", "geglu"]
Pooling = Literal["cls", "mean", "max", "last"]

ARCHS: tuple[Arch, ...] = get_args(Arch)
HEADS: tuple[HeadName, ...] = get_args(HeadName)
NORMS: tuple[Norm, ...] = get_args(Norm)
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)
POSITIONS: tuple[Position, ...] = get_args(Position)
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)


@dataclass
class ModelConfig:
    """Everything needed to build a polyformer model; serialised as the native config.json."""

    arch: Arch = "decoder"
    vocab_size: int = 32000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None = num_heads (multi-head); fewer = grouped-query
    head_dim: int | None = None  # None = hidden_size // num_heads
    intermediate_size: int | None = None  # None = 4 * hidden_size
    num_decoder_layers: int | None = None  # encoder-decoder only; None = num_layers
    max_positions: int = 1024
    # normalisation
    norm: Norm = "layernorm"
    norm_placement: Placement = "pre"
    norm_eps: float = 1e-5
    final_norm: bool = True  # a norm after the last block (pre-norm stacks)
    embedding_norm: bool = False  # a norm right after the embeddings (BERT)
    # positions and embeddings
    position: Position = "learned"
    rope_theta: float = 10000.0
    type_vocab_size: int = 0  # token-type (segment) embeddings; 2 for BERT
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(hidden_size) (Marian)
    tie_word_embeddings: bool = True
    # blocks
    activation: Activation = "gelu"
    attention_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True  # LayerNorm's additive bias (nanoGPT-style models have none)
    dropout: float = 0.0
    attention_dropout: float = 0.0
    # heads
    head: HeadName = "none"
    pooler: bool = False  # BERT's dense+tanh over [CLS]
    lm_head_bias: bool = False  # a bias on the vocabulary projection (Marian's final_logits_bias)
    num_labels: int = 2
    labels: list[str] | None = None
    classifier_pooling: Pooling = "cls"  # how sequence classification pools: cls / mean / max / last
    # special tokens
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific facts kept for export

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def ffn_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers

    @property
    def gated_mlp(self) -> bool:
        return self.activation in ("swiglu", "geglu")

    def end_ids(self, *others: int | None) -> list[int]:
        """The model's EOS id and `others` (a tokenizer's), once each, those inside the vocabulary.

        Where generation stops when a request names no EOS, and what an export's generation config lists.
        """
        ids = (self.eos_token_id, *others)
        return list(dict.fromkeys(i for i in ids if i is not None and 0 <= i < self.vocab_size))

    # ---- validation ----------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first field with an invalid value."""
        _choice("arch", self.arch, ARCHS)
        _choice("norm", self.norm, NORMS)
        _choice("norm_placement", self.norm_placement, PLACEMENTS)
        _choice("position", self.position, POSITIONS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("head", self.head, HEADS)
        _choice("classifier_pooling", self.classifier_pooling, POOLINGS)
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "max_positions"):
            _positive(name, getattr(self, name))
        for name in ("num_kv_heads", "head_dim", "intermediate_size", "num_decoder_layers"):
            value = getattr(self, name)
            if value is not None:
                _positive(name, value)
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                "change one of them or set head_dim explicitly"
            )
        if self.num_heads % self.kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.kv_heads}; "
                "grouped-query attention needs each key/value head shared by a whole group"
            )
        if self.position == "rotary" and self.dim_head % 2:
            raise ConfigError(f"rotary positions need an even head dimension, got {self.dim_head}")
        if self.position == "sinusoidal" and self.hidden_size % 2:
            raise ConfigError(f"sinusoidal positions need an even hidden_size, got {self.hidden_size}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.head in ("mlm", "pretraining") and self.arch != "encoder":
            raise ConfigError(f"head={self.head!r} needs arch='encoder', got arch={self.arch!r}")
        if self.head == "pretraining" and not self.pooler:
            raise ConfigError("head='pretraining' (MLM + NSP) needs pooler=True")
        if self.labels is not None and len(self.labels) != self.num_labels:
            raise ConfigError(f"labels has {len(self.labels)} names but num_labels={self.num_labels}")

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        return dataclass_from_dict(cls, data, source)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        write_atomic(path, json.dumps({"polyformer": self.to_dict()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        data = read_json(path, ConfigError, "config file")
        if not isinstance(data, dict) or "polyformer" not in data:
            raise ConfigError(f"{path}: not a polyformer config (no 'polyformer' section)")
        return cls.from_dict(data["polyformer"], source=str(path))


T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: Any, source: str) -> T:
    """A config dataclass from a mapping, naming unknown or invalid fields and where they came from."""
    check_fields(data, {f.name for f in dataclasses.fields(cls)}, source)
    try:
        return cls(**data)
    except (ConfigError, TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None


def check_fields(data: Any, known: Iterable[str], source: str) -> None:
    """ConfigError unless `data` is a mapping whose keys are all `known` field names (naming the others)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    names = set(known)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(names))}")


def dataclass_from_yaml(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """A config dataclass from a YAML run config, with `overrides` (command-line values) on top."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: run config not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if overrides and isinstance(data, dict):
        merged = {**data, **overrides}
        for key, value in overrides.items():  # mappings: the command line adds to the file's entries
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                merged[key] = {**data[key], **value}
        data = merged
    return dataclass_from_dict(cls, data, str(path))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


# ---- presets as data --------------------------------------------------------------------------
_BERT = dict(
    arch="encoder", norm="layernorm", norm_placement="post", norm_eps=1e-12, final_norm=False,
    embedding_norm=True, position="learned", type_vocab_size=2, activation="gelu",
    max_positions=512, vocab_size=30522, pad_token_id=0, pooler=True,
)
_GPT2 = dict(
    arch="decoder", norm="layernorm", norm_placement="pre", norm_eps=1e-5, position="learned",
    activation="gelu_new", vocab_size=50257, max_positions=1024, bos_token_id=50256,
    eos_token_id=50256, head="lm",
)
_LLAMA = dict(
    arch="decoder", norm="rmsnorm", norm_placement="pre", position="rotary", activation="swiglu",
    attention_bias=False, mlp_bias=False, head="lm",
)
_MARIAN = dict(
    arch="encoder-decoder", norm="layernorm", norm_placement="post", final_norm=False,
    position="sinusoidal", scale_embeddings=True, activation="silu", head="lm",
    lm_head_bias=True, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)

PRESETS: dict[str, dict[str, Any]] = {
    "bert-tiny": {**_BERT, "hidden_size": 128, "num_layers": 2, "num_heads": 2, "intermediate_size": 512},
    "bert-mini": {**_BERT, "hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024},
    "bert-base": {**_BERT, "hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072},
    "minilm-l6": {**_BERT, "hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536},
    "gpt-tiny": {**_GPT2, "hidden_size": 128, "num_layers": 4, "num_heads": 4, "max_positions": 256},
    "gpt2": {**_GPT2, "hidden_size": 768, "num_layers": 12, "num_heads": 12},
    "llama-tiny": {
        **_LLAMA, "vocab_size": 32000, "hidden_size": 128, "num_layers": 4, "num_heads": 4,
        "num_kv_heads": 2, "intermediate_size": 352, "max_positions": 512, "norm_eps": 1e-5,
    },
    "smollm2-135m": {
        **_LLAMA, "vocab_size": 49152, "hidden_size": 576, "num_layers": 30, "num_heads": 9,
        "num_kv_heads": 3, "intermediate_size": 1536, "max_positions": 8192, "rope_theta": 100000.0,
        "norm_eps": 1e-5, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
    },
    "transformer-small": {
        **_MARIAN, "vocab_size": 8000, "hidden_size": 256, "num_layers": 3, "num_heads": 4,
        "intermediate_size": 1024, "max_positions": 512,
    },
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset, optionally with fields overridden."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
