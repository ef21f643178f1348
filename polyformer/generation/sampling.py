"""Decoding settings and the pure logits processors that turn a model's scores into a next token.

Every processor is a small function over next-token logits (B, V) that returns new logits (B, V);
filtered-out tokens get -inf. `process_logits` applies them in a fixed order (penalties, bias,
temperature, then the support filters) and `choose_tokens` takes the arg-max (temperature 0) or
a draw from a per-request seeded `torch.Generator`. Keeping them pure makes each one testable on
a known distribution and reusable by the batched engine, beam search and the server alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from polyformer.errors import ConfigError

CACHES = ("auto", "dynamic", "static")


@dataclass
class GenerationConfig:
    """What to generate and how: lengths, the sampling recipe, stopping, and beam search."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off (HF: divide positive / multiply negative logits of seen tokens)
    presence_penalty: float = 0.0  # OpenAI: subtracted once from every generated token's logit
    frequency_penalty: float = 0.0  # OpenAI: subtracted per occurrence of a generated token
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    eos_token_id: int | list[int] | None = None  # None = the model's
    seed: int | None = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = False
    num_return_sequences: int = 1
    cache: str = "auto"  # "dynamic" | "static" | "auto" (static when compiled, else dynamic)
    compile: bool | None = None  # torch.compile the decode step; None = on CUDA only

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first field with an invalid value."""
        _int_at_least("max_new_tokens", self.max_new_tokens, 1)
        _int_at_least("min_new_tokens", self.min_new_tokens, 0)
        _int_at_least("top_k", self.top_k, 0)
        _int_at_least("num_beams", self.num_beams, 1)
        _int_at_least("num_return_sequences", self.num_return_sequences, 1)
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        _number_in("temperature", self.temperature, 0.0, float("inf"), low_open=False)
        _number_in("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _number_in("min_p", self.min_p, 0.0, 1.0, low_open=False)
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty", "length_penalty"):
            if not _is_number(getattr(self, name)):
                raise ConfigError(f"{name} must be a number, got {getattr(self, name)!r}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"stop must be a list of non-empty strings, got {self.stop!r}")
        if self.num_return_sequences > self.num_beams and self.num_beams > 1:
            raise ConfigError(f"num_return_sequences ({self.num_return_sequences}) exceeds num_beams ({self.num_beams})")
        if self.num_return_sequences > 1 and self.num_beams == 1 and self.greedy:
            raise ConfigError(f"num_return_sequences={self.num_return_sequences} with greedy decoding gives the same "
                              "text n times: sample (temperature > 0 or do_sample=True) or use num_beams >= n")
        if self.cache not in CACHES:
            raise ConfigError(f"cache must be one of {', '.join(CACHES)}, got {self.cache!r}")
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be true, false or null (auto), got {self.compile!r}")
        for token in self.eos_ids():
            if not isinstance(token, int) or token < 0:
                raise ConfigError(f"eos_token_id must be non-negative ints, got {self.eos_token_id!r}")

    def eos_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def counts_tokens(self) -> bool:
        """Whether a penalty needs per-row token counts (otherwise the loop keeps none)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


DEFAULT_SAMPLING_TEMPERATURE = 1.0  # do_sample=True without a temperature


def make_config(config: GenerationConfig | None = None, *, do_sample: bool | None = None, **options) -> GenerationConfig:
    """`config` (or the defaults) with `options` replacing fields; unknown fields name themselves.

    This is where options given by name arrive (model.generate, the pipeline, the CLI, requests),
    so it also takes transformers' `do_sample`: False decodes greedily (temperature 0, whatever
    temperature is set), True samples at the temperature set, or at 1.0 when it is 0. It switches
    the temperature and is not stored: later options decide again.
    """
    from dataclasses import asdict

    from polyformer.config import dataclass_from_dict

    fields = {**(asdict(config) if config is not None else {}), **options}
    if do_sample is not None:
        if not isinstance(do_sample, bool):
            raise ConfigError(f"generation options: do_sample must be true or false, got {do_sample!r}")
        temperature = fields.get("temperature", GenerationConfig.temperature)
        if not do_sample:
            fields["temperature"] = 0.0
        elif temperature == 0:
            fields["temperature"] = DEFAULT_SAMPLING_TEMPERATURE
    return dataclass_from_dict(GenerationConfig, fields, "generation options")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _number_in(name: str, value: object, low: float, high: float, low_open: bool) -> None:
    bad_low = not _is_number(value) or (value <= low if low_open else value < low)  # type: ignore[operator]
    if bad_low or value > high:  # type: ignore[operator]
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")


# ---- processors: logits (B, V) -> logits (B, V) ------------------------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature in (0.0, 1.0) else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits per row (ties with the k-th kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest most-likely set whose probability reaches p (at least one token)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs  # (B, V) probability of strictly more likely tokens
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the most likely token's."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(-1)
    threshold = probs.amax(-1, keepdim=True) * min_p  # (B, 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def repetition_penalty(logits: torch.Tensor, counts: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF semantics: seen tokens' positive logits are divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalised, logits)


def presence_frequency_penalty(logits: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI semantics: logit - presence * [count > 0] - frequency * count, counts (B, V)."""
    if presence == 0.0 and frequency == 0.0:
        return logits
    return logits - presence * (counts > 0).to(logits.dtype) - frequency * counts.to(logits.dtype)


def add_logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    if not bias:
        return logits
    vocab = logits.shape[-1]
    for token in bias:
        if not isinstance(token, int) or not 0 <= token < vocab:
            raise ConfigError(f"logit_bias names token id {token!r}, outside the vocabulary of {vocab}")
    ids = torch.tensor(list(bias), device=logits.device)
    values = torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
    return logits.index_add(-1, ids, values.expand(logits.shape[0], -1))


def suppress(logits: torch.Tensor, token_ids: list[int]) -> torch.Tensor:
    """Forbid the given tokens (EOS before min_new_tokens)."""
    if not token_ids:
        return logits
    out = logits.clone()
    out[..., token_ids] = float("-inf")
    return out


def token_counts(ids: torch.Tensor, vocab_size: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """How often each token occurs per row: ids (B, T) [mask (B, T)] -> counts (B, V)."""
    weights = torch.ones_like(ids) if mask is None else mask.to(ids.dtype)
    counts = torch.zeros(ids.shape[0], vocab_size, dtype=ids.dtype, device=ids.device)
    return counts.scatter_add_(1, ids, weights)


def process_logits(
    logits: torch.Tensor, config: GenerationConfig, seen: torch.Tensor | None = None,
    generated: torch.Tensor | None = None,
) -> torch.Tensor:
    """All processors in order; those that are off cost nothing (the logits come back as they are).

    seen (B, V): prompt + generated counts; generated (B, V): generated only. Both are needed only
    when `config.counts_tokens`.
    """
    logits = logits.float()
    if config.counts_tokens:
        logits = repetition_penalty(logits, seen, config.repetition_penalty)
        logits = presence_frequency_penalty(logits, generated, config.presence_penalty, config.frequency_penalty)
    logits = add_logit_bias(logits, config.logit_bias)
    if config.greedy:
        return logits
    logits = apply_temperature(logits, config.temperature)
    logits = top_k_filter(logits, config.top_k)
    logits = top_p_filter(logits, config.top_p)
    return min_p_filter(logits, config.min_p)


def choose_tokens(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next tokens (B,) from processed logits (B, V): arg-max, or a draw from their softmax."""
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A per-request generator: seeded when asked, otherwise from fresh entropy."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
