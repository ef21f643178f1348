"""Batched generation with a KV cache: token streams for decoders and encoder–decoders.

`TokenStream` runs the decode loop one step at a time and yields each step's tokens, so the
same loop serves `generate` (collect everything), streaming (forward each step) and the text
layer at the end of this module (which finishes a row when it meets a stop string). Decoders take
left-padded batches: positions count only real tokens and the attention mask grows with each
step, so every row decodes as if it were alone. Encoder–decoders run the encoder once and start
every row from `decoder_start_token_id`. Rows finish independently (EOS, a stop string, or
the length limit); finished rows are fed padding until the whole batch is done.
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
    _check_streamable(config)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return (step.tokens for step in token_stream)


def _check_streamable(config: GenerationConfig) -> None:
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise ConfigError("streaming decodes one sequence per prompt: use num_beams=1 and num_return_sequences=1")


def generate(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             config: GenerationConfig | None = None) -> GenerationOutput:
    """Generate for a (left-padded) batch; beam search when config.num_beams > 1.

    Rows come grouped by prompt, config.num_return_sequences per prompt (the best beams, or
    independent samples).
    """
    config = config or GenerationConfig()
    if config.num_beams > 1:
        from polyformer.generation.beam import beam_search  # beam builds on this module

        return beam_search(model, input_ids, attention_mask, config)
    if config.num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(config.num_return_sequences, 0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(config.num_return_sequences, 0)
    token_stream = TokenStream(model, input_ids, attention_mask, config)
    return collect(token_stream, list(token_stream))


def collect(token_stream: TokenStream, steps: list[Step]) -> GenerationOutput:
    """Stack a finished stream's steps into a GenerationOutput."""
    tokens = torch.stack([s.tokens for s in steps], dim=1)  # (B, T_new)
    logprobs = torch.stack([s.logprobs for s in steps], dim=1)
    lengths = torch.stack([s.active for s in steps], dim=1).sum(-1).tolist()
    reasons = [reason or "length" for reason in token_stream.finish_reasons]
    return GenerationOutput(tokens, logprobs, lengths, reasons)


# ---- text: stop strings and streaming detokenization ------------------------------------------


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text up to the earliest occurrence of any stop string, and whether one occurred."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def _pending_stop_prefix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class TextStreamer:
    """Incremental detokenizer for one sequence: `push` token ids, get only stable new text.

    It decodes the whole growing token list and emits the new suffix, holding back text that ends
    in U+FFFD (half a multi-byte character) or that could be the start of a stop string; at a
    stop string it emits exactly the text before it and sets `stopped`.
    """

    def __init__(self, tokenizer, stop: list[str] | None = None) -> None:
        self.tokenizer, self.stop = tokenizer, list(stop or [])
        self.ids: list[int] = []
        self.emitted = ""
        self.stopped = False

    def push(self, *ids: int) -> str:
        if self.stopped:
            return ""
        self.ids.extend(ids)
        text, self.stopped = cut_at_stop(self.tokenizer.decode(self.ids), self.stop)
        if not self.stopped:
            text = text.rstrip("\ufffd")
            text = text[: len(text) - _pending_stop_prefix(text, self.stop)]
        return self._emit(text)

    def flush(self) -> str:
        """The rest of the text once generation has ended."""
        if self.stopped:
            return ""
        text, self.stopped = cut_at_stop(self.tokenizer.decode(self.ids), self.stop)
        return self._emit(text)

    def text(self) -> str:
        """The whole text so far, cut at the first stop string."""
        return cut_at_stop(self.tokenizer.decode(self.ids), self.stop)[0]

    def _emit(self, text: str) -> str:
        if len(text) <= len(self.emitted) or not text.startswith(self.emitted):
            return ""  # not stable yet (a later token rewrote the tail); wait for more
        new, self.emitted = text[len(self.emitted):], text
        return new


@dataclass
class TextCompletion:
    text: str  # cut at the first stop string; EOS and special tokens not included
    token_ids: list[int]  # the new tokens generated (EOS included when hit)
    finish_reason: str  # "stop" (EOS or stop string) or "length"


def stream_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig,
                add_special_tokens: bool = True) -> Iterator[tuple[int, str]]:
    """(row, text increment) pairs for a batch of prompts; rows stop at EOS or a stop string.

    The request is checked when this is called, before the first piece is asked for.
    add_special_tokens=False for prompts that already hold them (rendered chat templates).
    """
    _check_streamable(config)
    return _text_pieces(*_start_text(model, tokenizer, prompts, config, add_special_tokens))


def generate_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig,
                  add_special_tokens: bool = True) -> list[TextCompletion]:
    """Complete each prompt; texts are cut exactly at the first stop string."""
    _check_streamable(config)
    token_stream, streamers = _start_text(model, tokenizer, prompts, config, add_special_tokens)
    for _ in _text_pieces(token_stream, streamers):
        pass
    reasons = [reason or "length" for reason in token_stream.finish_reasons]
    return [TextCompletion(s.text(), s.ids, r) for s, r in zip(streamers, reasons)]


def _start_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig,
                add_special_tokens: bool = True) -> tuple[TokenStream, list[TextStreamer]]:
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise DataError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r:.80}")
    # never truncated: a prompt longer than the context is an error from check_request
    input_ids, mask = left_pad([tokenizer.encode(p, add_special_tokens=add_special_tokens) for p in prompts],
                               model.config.pad_token_id or 0, model.device)
    token_stream = TokenStream(model, input_ids, mask, config)
    return token_stream, [TextStreamer(tokenizer, config.stop) for _ in prompts]


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as a left-padded batch: input_ids and attention_mask, both (B, longest)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            ids[index, width - len(row):] = torch.tensor(row)
            mask[index, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _text_pieces(token_stream: TokenStream, streamers: list[TextStreamer]) -> Iterator[tuple[int, str]]:
    for step in token_stream:
        for row in step.active_rows:
            piece = streamers[row].push(step.token_ids[row])
            if piece:
                yield row, piece
            if streamers[row].stopped:
                token_stream.finish(row, "stop")
    for row, streamer in enumerate(streamers):
        piece = streamer.flush()
        if piece:
            yield row, piece
