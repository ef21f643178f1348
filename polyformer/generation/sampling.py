"""The pure logits processors that turn a model's scores into a next token.

Every processor is a small function over next-token logits (B, V) that returns new logits (B, V);
filtered-out tokens get -inf. `process_logits` applies them in a fixed order (penalties, bias,
temperature, then the support filters) and `choose_tokens` takes the arg-max (temperature 0) or
a draw from a per-request seeded `torch.Generator`. Keeping them pure makes each one testable on
a known distribution and reusable by the batched engine, beam search and the server alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from polyformer.errors import ConfigError

if TYPE_CHECKING:
    from polyformer.generation.settings import Sampling

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
    logits: torch.Tensor, sampling: Sampling, seen: torch.Tensor | None = None,
    generated: torch.Tensor | None = None,
) -> torch.Tensor:
    """All processors in order; those that are off cost nothing (the logits come back as they are).

    seen (B, V): prompt + generated counts; generated (B, V): generated only. Both are needed only
    when `sampling.counts_tokens`.
    """
    logits = logits.float()
    if sampling.counts_tokens:
        logits = repetition_penalty(logits, seen, sampling.repetition_penalty)
        logits = presence_frequency_penalty(logits, generated, sampling.presence_penalty, sampling.frequency_penalty)
    logits = add_logit_bias(logits, sampling.logit_bias)
    if sampling.greedy:
        return logits
    logits = apply_temperature(logits, sampling.temperature)
    logits = top_k_filter(logits, sampling.top_k)
    logits = top_p_filter(logits, sampling.top_p)
    return min_p_filter(logits, sampling.min_p)


def choose_tokens(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next tokens (B,) from processed logits (B, V): arg-max, or a draw from their softmax."""
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def next_tokens(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None, *,
                seen: torch.Tensor | None = None, generated: torch.Tensor | None = None,
                forbid: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One decode step's choice for a request: logits (B, V) → processed scores (B, V), tokens (B,), log-probs (B,).

    Each token's log-probability is taken under the distribution it was drawn from; `forbid` are
    tokens that may not come yet (EOS before min_new_tokens); seen / generated as `process_logits`.
    """
    scores = process_logits(logits, sampling, seen, generated)
    if forbid:
        scores = suppress(scores, forbid)
    tokens = choose_tokens(scores, sampling.greedy, generator)
    logprobs = scores.gather(-1, tokens[:, None]).squeeze(-1) - scores.logsumexp(-1)
    return scores, tokens, logprobs


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A per-request generator: seeded when asked, otherwise from fresh entropy."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
