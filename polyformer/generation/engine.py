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
from dataclasses import dataclass

import torch

from polyformer.core import KVCache
from polyformer.errors import ConfigError, DataError
from polyformer.generation.sampling import (
    GenerationConfig,
    choose_tokens,
    make_generator,
    process_logits,
    suppress,
    token_counts,
)
from polyformer.models import PolyformerModel


@dataclass
class Step:
    """One decode step for the whole batch."""

    tokens: torch.Tensor  # (B,) the new token per row (padding for rows finished earlier)
    logprobs: torch.Tensor  # (B,) log-probability of each token under the distribution it was drawn from
    active: torch.Tensor  # (B,) bool: the row produced a real token this step


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
    if model.config.position == "learned":
        needed = (int(mask.sum(-1).max()) if model.config.arch == "decoder" else 1) + config.max_new_tokens
        if needed > model.config.max_positions or input_ids.shape[1] > model.config.max_positions:
            raise ConfigError(
                f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({config.max_new_tokens}) exceeds the "
                f"model's context of {model.config.max_positions} positions"
            )
    return mask


def eos_ids_for(model: PolyformerModel, config: GenerationConfig) -> list[int]:
    """The request's EOS ids, falling back to the model's."""
    ids = config.eos_ids()
    if not ids and model.config.eos_token_id is not None:
        ids = [model.config.eos_token_id]
    return ids


def pad_id_for(model: PolyformerModel, eos_ids: list[int]) -> int:
    if model.config.pad_token_id is not None:
        return model.config.pad_token_id
    return eos_ids[0] if eos_ids else 0


class TokenStream:
    """Iterate over decode steps of one batched request; `finish(row)` ends a row early."""

    def __init__(self, model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, config: GenerationConfig) -> None:
        self.mask = check_request(model, input_ids, attention_mask, config)
        self.model, self.input_ids, self.config = model, input_ids, config
        self.eos_ids = eos_ids_for(model, config)
        self.pad_id = pad_id_for(model, self.eos_ids)
        batch = input_ids.shape[0]
        self.finish_reasons: list[str | None] = [None] * batch
        self.done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        self.generator = make_generator(config.seed, input_ids.device)

    def finish(self, row: int, reason: str = "stop") -> None:
        if self.finish_reasons[row] is None:
            self.finish_reasons[row] = reason
        self.done[row] = True

    def __iter__(self) -> Iterator[Step]:
        return self._steps()

    @torch.inference_mode()  # on a generator, torch enters the mode around each step only, not the caller's code
    def _steps(self) -> Iterator[Step]:
        config, vocab = self.config, self.model.config.vocab_size
        prompt_counts = token_counts(self.input_ids, vocab, self.mask)  # (B, V)
        generated = torch.zeros_like(prompt_counts)
        logits = self.prefill()
        for step in range(config.max_new_tokens):
            scores = process_logits(logits, config, prompt_counts + generated, generated)
            if step < config.min_new_tokens:
                scores = suppress(scores, self.eos_ids)
            tokens = choose_tokens(scores, config.greedy, self.generator)  # (B,)
            logprobs = scores.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
            active = ~self.done
            tokens = tokens.masked_fill(~active, self.pad_id)
            logprobs = logprobs.masked_fill(~active, 0.0)
            generated[active] += torch.nn.functional.one_hot(tokens[active], vocab).to(generated.dtype)
            for row in (active & self._is_eos(tokens)).nonzero().flatten().tolist():
                self.finish(row, "stop")
            yield Step(tokens, logprobs, active)  # the consumer may finish rows here
            if bool(self.done.all()):
                return
            if step + 1 < config.max_new_tokens:
                logits = self.advance(tokens)
        for row in (~self.done).nonzero().flatten().tolist():
            self.finish(row, "length")

    def _is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.eos_ids:
            return torch.zeros_like(tokens, dtype=torch.bool)
        return torch.isin(tokens, torch.tensor(self.eos_ids, device=tokens.device))

    def prefill(self) -> torch.Tensor:
        """Run the prompt (decoders) or the encoder + start token; return next-token logits (B, V)."""
        self.cache = KVCache()
        if self.model.config.arch == "encoder-decoder":
            start = self.model.config.decoder_start_token_id
            start = self.model.config.pad_token_id if start is None else start
            first = torch.full((self.input_ids.shape[0], 1), start or 0, device=self.input_ids.device)
            out = self.model(self.input_ids, self.mask, decoder_input_ids=first, cache=self.cache)
            self.memory = out.encoder_last_hidden_state  # (B, S, hidden), reused every step
            return out.logits[:, -1]
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (B, T) left padding: count real tokens
        out = self.model(self.input_ids, self.mask, position_ids=self.positions, cache=self.cache)
        self.positions = self.positions[:, -1:]  # (B, 1)
        return out.logits[:, -1]

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the step's tokens (B,) through the cache; return the next logits (B, V)."""
        if self.model.config.arch == "encoder-decoder":
            out = self.model(self.input_ids, self.mask, decoder_input_ids=tokens[:, None], cache=self.cache,
                             encoder_hidden_states=self.memory)
            return out.logits[:, -1]
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)  # (B, past + 1)
        self.positions = self.positions + 1
        out = self.model(tokens[:, None], self.mask, position_ids=self.positions, cache=self.cache)
        return out.logits[:, -1]


def stream(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
           config: GenerationConfig | None = None) -> Iterator[torch.Tensor]:
    """Yield the new tokens (B,) step by step (padding for rows already finished)."""
    for step in TokenStream(model, input_ids, attention_mask, config or GenerationConfig()):
        yield step.tokens


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


def stream_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig) -> Iterator[tuple[int, str]]:
    """Yield (row, text increment) for a batch of prompts; rows stop at EOS or a stop string."""
    yield from _text_pieces(*_start_text(model, tokenizer, prompts, config))


def generate_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig) -> list[TextCompletion]:
    """Complete each prompt; texts are cut exactly at the first stop string."""
    token_stream, streamers = _start_text(model, tokenizer, prompts, config)
    for _ in _text_pieces(token_stream, streamers):
        pass
    reasons = [reason or "length" for reason in token_stream.finish_reasons]
    return [TextCompletion(s.text(), s.ids, r) for s, r in zip(streamers, reasons)]


def _start_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig) -> tuple[TokenStream, list[TextStreamer]]:
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise DataError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r:.80}")
    batch = tokenizer(prompts, padding_side="left")
    token_stream = TokenStream(model, batch["input_ids"], batch["attention_mask"], config)
    return token_stream, [TextStreamer(tokenizer, config.stop) for _ in prompts]


def _text_pieces(token_stream: TokenStream, streamers: list[TextStreamer]) -> Iterator[tuple[int, str]]:
    for step in token_stream:
        for row in step.active.nonzero().flatten().tolist():
            piece = streamers[row].push(int(step.tokens[row]))
            if piece:
                yield row, piece
            if streamers[row].stopped:
                token_stream.finish(row, "stop")
    for row, streamer in enumerate(streamers):
        piece = streamer.flush()
        if piece:
            yield row, piece
