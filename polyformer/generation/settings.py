"""Decoding settings: what to generate and how, in four groups, each validated where it is built.

- `Sampling`: how the next token is chosen (temperature and the support filters, penalties, logit
  bias, the seed of the draws).
- `Stopping`: how long a row runs (length limits, stop strings, EOS ids).
- `Beams`: beam search and how many candidates per prompt.
- `Execution`: how the loop runs (KV cache kind, compiled decode step); never what it gives.

`GenerationConfig` holds one of each. Options given by name (`model.generate`, the pipeline, the
CLI, server requests) arrive through `make_config`, which takes every group's fields flat (and
transformers' `do_sample`) and builds the groups; `GenerationConfig.fields()` is the flat view.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from polyformer.config import check_fields
from polyformer.errors import ConfigError

CacheKind = Literal["auto", "dynamic", "static"]
CACHES: tuple[CacheKind, ...] = get_args(CacheKind)
DEFAULT_SAMPLING_TEMPERATURE = 1.0  # do_sample=True without a temperature


@dataclass
class Sampling:
    """How each next token is chosen from the model's logits."""

    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off (HF: divide positive / multiply negative logits of seen tokens)
    presence_penalty: float = 0.0  # OpenAI: subtracted once from every generated token's logit
    frequency_penalty: float = 0.0  # OpenAI: subtracted per occurrence of a generated token
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None  # of the request's draws

    def __post_init__(self) -> None:
        _int_at_least("top_k", self.top_k, 0)
        _number_in("temperature", self.temperature, 0.0, float("inf"), low_open=False)
        _number_in("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _number_in("min_p", self.min_p, 0.0, 1.0, low_open=False)
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            _number(name, getattr(self, name))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def counts_tokens(self) -> bool:
        """Whether a penalty needs per-row token counts (otherwise the loop keeps none)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


@dataclass
class Stopping:
    """How long each row runs."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0  # EOS is held back until then
    stop: list[str] = field(default_factory=list)  # the text ends just before the first one
    eos_token_id: int | list[int] | None = None  # None = the model's (and the tokenizer's)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        _int_at_least("max_new_tokens", self.max_new_tokens, 1)
        _int_at_least("min_new_tokens", self.min_new_tokens, 0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        for token in self.eos_ids():
            if not isinstance(token, int) or token < 0:
                raise ConfigError(f"eos_token_id must be non-negative ints, got {self.eos_token_id!r}")

    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)


@dataclass
class Beams:
    """Beam search (num_beams > 1) and the candidates each prompt gets."""

    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    num_return_sequences: int = 1  # the n best beams, or n independent samples

    def __post_init__(self) -> None:
        _int_at_least("num_beams", self.num_beams, 1)
        _int_at_least("num_return_sequences", self.num_return_sequences, 1)
        _number("length_penalty", self.length_penalty)
        if self.num_return_sequences > self.num_beams and self.num_beams > 1:
            raise ConfigError(f"num_return_sequences ({self.num_return_sequences}) exceeds num_beams ({self.num_beams})")


@dataclass
class Execution:
    """How the decode loop runs; the tokens are the same either way."""

    cache: CacheKind = "auto"  # "dynamic" | "static" | "auto" (static when compiled, else dynamic)
    compile: bool | None = None  # torch.compile the decode step; None = on CUDA only

    def __post_init__(self) -> None:
        if self.cache not in CACHES:
            raise ConfigError(f"cache must be one of {', '.join(CACHES)}, got {self.cache!r}")
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be true, false or null (auto), got {self.compile!r}")


GROUPS: dict[str, type] = {"sampling": Sampling, "stopping": Stopping, "beams": Beams, "execution": Execution}
FIELD_GROUPS: dict[str, str] = {f.name: group for group, kind in GROUPS.items() for f in fields(kind)}


@dataclass
class GenerationConfig:
    """What to generate and how: one of each settings group."""

    sampling: Sampling = field(default_factory=Sampling)
    stopping: Stopping = field(default_factory=Stopping)
    beams: Beams = field(default_factory=Beams)
    execution: Execution = field(default_factory=Execution)

    def __post_init__(self) -> None:
        n = self.beams.num_return_sequences
        if n > 1 and self.beams.num_beams == 1 and self.sampling.greedy:
            raise ConfigError(f"num_return_sequences={n} with greedy decoding gives the same "
                              "text n times: sample (temperature > 0 or do_sample=True) or use num_beams >= n")

    def fields(self) -> dict[str, Any]:
        """Every group's fields, flat (the names `make_config` takes)."""
        return {name: value for group in GROUPS for name, value in asdict(getattr(self, group)).items()}

    @classmethod
    def from_fields(cls, data: dict[str, Any], source: str = "generation options") -> GenerationConfig:
        """The groups built from flat fields; ConfigError naming an unknown or invalid one and `source`."""
        check_fields(data, FIELD_GROUPS, source)
        try:
            groups = {group: kind(**{k: v for k, v in data.items() if FIELD_GROUPS[k] == group})
                      for group, kind in GROUPS.items()}
            return cls(**groups)
        except (ConfigError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from None


def make_config(config: GenerationConfig | None = None, *, do_sample: bool | None = None, **options) -> GenerationConfig:
    """`config` (or the defaults) with `options` (any group's fields, by name) replacing fields.

    This is where options given by name arrive (model.generate, the pipeline, the CLI, requests),
    so it also takes transformers' `do_sample`: False decodes greedily (temperature 0, whatever
    temperature is set), True samples at the temperature set, or at 1.0 when it is 0. It switches
    the temperature and is not stored: later options decide again.
    """
    flat = {**(config.fields() if config is not None else {}), **options}
    if do_sample is not None:
        if not isinstance(do_sample, bool):
            raise ConfigError(f"generation options: do_sample must be true or false, got {do_sample!r}")
        temperature = flat.get("temperature", Sampling.temperature)
        if not do_sample:
            flat["temperature"] = 0.0
        elif temperature == 0:
            flat["temperature"] = DEFAULT_SAMPLING_TEMPERATURE
    return GenerationConfig.from_fields(flat)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _number(name: str, value: object) -> None:
    if not _is_number(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _number_in(name: str, value: object, low: float, high: float, low_open: bool) -> None:
    bad_low = not _is_number(value) or (value <= low if low_open else value < low)  # type: ignore[operator]
    if bad_low or value > high:  # type: ignore[operator]
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
