"""Batched generation with a KV cache: token streams for decoders and encoder–decoders.

`TokenStream` runs the decode loop one step at a time and yields each step's tokens, so the
same loop serves `generate` (collect everything), streaming (forward each step) and the text
layer (`polyformer.generation.text`, which finishes a row when it meets a stop string). Decoders
take left-padded batches: positions count only real tokens and the attention mask grows with each
step, so every row decodes as if it were alone. Encoder–decoders take right-padded sources (the
encoder numbers positions from 0, so padding must come after a source's tokens), run the encoder
once and start every row from `decoder_start_token_id`. Rows finish independently (EOS, a stop
string, or the length limit); finished rows are fed padding until the whole batch is done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from polyformer.core import KVCache
from polyformer.core.cache import StaticKVCache
from polyformer.errors import ConfigError, DataError
from polyformer.generation.sampling import (
    GenerationConfig,
    choose_tokens,
    make_generator,
    process_logits,
    suppress,
    token_counts,
)
from polyformer.generation.step import ModelSteps, choose_cache
from polyformer.models import PolyformerModel


@dataclass
class Step:
    """One decode step for the whole batch."""

    tokens: torch.Tensor  # (B,) the new token per row (padding for rows finished earlier)
    logprobs: torch.Tensor  # (B,) log-probability of each token under the distribution it was drawn from
    active: torch.Tensor  # (B,) bool: the row produced a real token this step
    token_ids: list[int] = field(default_factory=list)  # `tokens` on the host (the step's one sync)
    active_rows: list[int] = field(default_factory=list)  # rows of `active`, on the host


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # (B, T_new) new tokens, padded with pad_token_id after each row's end
    logprobs: torch.Tensor  # (B, T_new) per-token log-probabilities (0 on padding)
    lengths: list[int]  # real new tokens per row (EOS included)
    finish_reasons: list[str]  # "stop" (EOS or stop string) or "length"
    scores: torch.Tensor | None = None  # (B,) beam search: length-normalised sequence log-probability


def check_request(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: GenerationConfig) -> torch.Tensor:
    """Validate a request; return the attention mask (B, T) (all ones when none was given)."""
    if model.config.head != "lm":
        raise ConfigError(f"generation needs a model with an LM head, this one has head={model.config.head!r}")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0:
        raise DataError(f"input_ids must be a non-empty (batch, length) tensor, got shape {tuple(input_ids.shape)}")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
    if mask.shape != input_ids.shape:
        raise DataError(f"attention_mask shape {tuple(mask.shape)} differs from input_ids {tuple(input_ids.shape)}")
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if input_ids.shape[1] == 0 or empty:
        raise DataError(f"empty prompt (rows {empty or list(range(input_ids.shape[0]))}); give at least one token")
    vocab = model.config.vocab_size
    for token in [*config.eos_ids(), *config.logit_bias]:
        if not 0 <= token < vocab:
            raise ConfigError(f"token id {token} (eos_token_id / logit_bias) is outside the vocabulary of {vocab}")
    check_context(model, input_ids.shape[1], int(mask.sum(-1).max()), config.max_new_tokens)
    return mask


def check_padding(model: PolyformerModel, mask: torch.Tensor | None) -> None:
    """Decoder prompts must be left-padded, encoder–decoder sources right-padded.

    A decoder continues from the last column, so padding there would be continued; an encoder
    numbers positions from the first column, so padding before a source would shift its positions.
    """
    if mask is None or mask.dim() != 2:
        return  # no padding, or a shape the request check reports
    steps = mask.long().diff(dim=-1)  # (B, T-1): +1 where padding gives way to tokens, -1 the reverse
    if model.config.arch == "decoder":
        rows, rule = (steps < 0).any(-1), "decoder prompts must be left-padded (padding before the tokens)"
    else:
        rows, rule = (steps > 0).any(-1), "encoder-decoder sources must be right-padded (padding after the tokens)"
    bad = rows.nonzero().flatten().tolist()
    if bad:
        raise DataError(f"attention_mask rows {bad}: {rule}")


def check_context(model: PolyformerModel, prompt_length: int, real_length: int, max_new_tokens: int) -> None:
    """The prompt and the tokens to generate must fit the model's positions (no silent truncation)."""
    context = model.config.max_positions
    if prompt_length > context:
        raise ConfigError(f"the prompt ({prompt_length} tokens) is longer than the model's context of {context} "
                          "positions; shorten it")
    needed = (real_length if model.config.arch == "decoder" else 1) + max_new_tokens
    if needed > context:
        raise ConfigError(f"prompt ({real_length} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                          f"context of {context} positions; lower max_new_tokens or shorten the prompt")


def eos_ids_for(model: PolyformerModel, config: GenerationConfig) -> list[int]:
    """The request's EOS ids, falling back to the model's (when it is a token the model can produce)."""
    ids = config.eos_ids()
    own = model.config.eos_token_id
    if not ids and own is not None and 0 <= own < model.config.vocab_size:
        ids = [own]
    return ids


def pad_id_for(model: PolyformerModel, eos_ids: list[int]) -> int:
    if model.config.pad_token_id is not None:
        return model.config.pad_token_id
    return eos_ids[0] if eos_ids else 0


class TokenStream:
    """Iterate over decode steps of one batched request; `finish(row)` ends a row early.

    Per step the loop does only what the request asks for: token counts exist only when a
    penalty needs them, sampling filters run only when sampling, and the new tokens cross to
    the host once (for EOS bookkeeping and the consumer).
    """

    def __init__(self, model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: GenerationConfig) -> None:
        self.mask = check_request(model, input_ids, attention_mask, config)
        self.model, self.input_ids, self.config = model, input_ids, config
        self.eos_ids = eos_ids_for(model, config)
        self.pad_id = pad_id_for(model, self.eos_ids)
        batch = input_ids.shape[0]
        self.finish_reasons: list[str | None] = [None] * batch
        self.done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        self.generator = None if config.greedy else make_generator(config.seed, input_ids.device)
        cache, compile = choose_cache(config.cache, config.compile, input_ids.device)
        self.steps = ModelSteps(model, input_ids, self.mask, config.max_new_tokens, cache, compile)

    @property
    def cache(self) -> KVCache | StaticKVCache:
        return self.steps.cache

    def finish(self, row: int, reason: str = "stop") -> None:
        if self.finish_reasons[row] is None:
            self.finish_reasons[row] = reason
            self.done[row] = True

    def __iter__(self) -> Iterator[Step]:
        return self._steps()

    @torch.inference_mode()  # on a generator, torch enters the mode around each step only, not the caller's code
    def _steps(self) -> Iterator[Step]:
        config = self.config
        counts = _Counts(self.input_ids, self.mask, self.model.config.vocab_size) if config.counts_tokens else None
        eos = set(self.eos_ids)
        logits = self.prefill()
        for step in range(config.max_new_tokens):
            scores = process_logits(logits, config, counts.seen, counts.generated) if counts else process_logits(logits, config)
            if step < config.min_new_tokens:
                scores = suppress(scores, self.eos_ids)
            tokens = choose_tokens(scores, config.greedy, self.generator)  # (B,)
            logprobs = scores.gather(-1, tokens[:, None]).squeeze(-1) - scores.logsumexp(-1)
            active = ~self.done
            tokens = tokens.masked_fill(self.done, self.pad_id)
            logprobs = logprobs.masked_fill(self.done, 0.0)
            if counts:
                counts.add(tokens, active)
            token_ids = tokens.tolist()
            active_rows = [row for row, reason in enumerate(self.finish_reasons) if reason is None]
            for row in active_rows:
                if token_ids[row] in eos:
                    self.finish(row, "stop")
            yield Step(tokens, logprobs, active, token_ids, active_rows)  # the consumer may finish rows here
            if all(reason is not None for reason in self.finish_reasons):
                return
            if step + 1 < config.max_new_tokens:
                logits = self.advance(tokens)
        for row, reason in enumerate(self.finish_reasons):
            if reason is None:
                self.finish(row, "length")

    def prefill(self) -> torch.Tensor:
        """Run the prompt (decoders) or the encoder + start token; return next-token logits (B, V)."""
        return self.steps.prefill()

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the step's tokens (B,) through the cache; return the next logits (B, V)."""
        return self.steps.advance(tokens)


class _Counts:
    """Token counts per row for the penalties: prompt + generated (`seen`) and generated only."""

    def __init__(self, input_ids: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> None:
        self.seen = token_counts(input_ids, vocab_size, mask)  # (B, V)
        self.generated = torch.zeros_like(self.seen)

    def add(self, tokens: torch.Tensor, active: torch.Tensor) -> None:
        ones = active.to(self.seen.dtype)[:, None]  # (B, 1): finished rows add nothing
        self.seen.scatter_add_(1, tokens[:, None], ones)
        self.generated.scatter_add_(1, tokens[:, None], ones)


def stream(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
           config: GenerationConfig | None = None) -> Iterator[torch.Tensor]:
    """The new tokens (B,) step by step (padding for rows already finished); the request is checked now."""
    config = config or GenerationConfig()
    check_streamable(config)
    check_padding(model, attention_mask)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return (step.tokens for step in token_stream)


def check_streamable(config: GenerationConfig) -> None:
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise ConfigError("streaming decodes one sequence per prompt: use num_beams=1 and num_return_sequences=1")


def generate(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: GenerationConfig | None = None) -> GenerationOutput:
    """Generate for a batch; beam search when config.num_beams > 1.

    Decoder prompts are left-padded, encoder–decoder sources right-padded. Rows come grouped by prompt, config.num_return_sequences per prompt (the best beams, or
    independent samples).
    """
    config = config or GenerationConfig()
    check_padding(model, attention_mask)  # before rows are repeated, so errors name the caller's rows
    if config.num_beams > 1:
        from polyformer.generation.beam import beam_search  # beam builds on this module

        return beam_search(model, input_ids, attention_mask, config)
    input_ids, attention_mask = repeat_rows(input_ids, attention_mask, config.num_return_sequences)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return collect(token_stream, list(token_stream))


def repeat_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row n times in a row (B*n, T): a prompt's samples or beams sit together."""
    if n == 1:
        return input_ids, attention_mask
    mask = None if attention_mask is None else attention_mask.repeat_interleave(n, 0)
    return input_ids.repeat_interleave(n, 0), mask


def collect(token_stream: TokenStream, steps: list[Step]) -> GenerationOutput:
    """Stack a finished stream's steps into a GenerationOutput."""
    tokens = torch.stack([s.tokens for s in steps], dim=1)  # (B, T_new)
    logprobs = torch.stack([s.logprobs for s in steps], dim=1)
    lengths = torch.stack([s.active for s in steps], dim=1).sum(-1).tolist()
    reasons = [reason or "length" for reason in token_stream.finish_reasons]
    return GenerationOutput(tokens, logprobs, lengths, reasons)
