"""Text in, text out: prompts padded as the model reads them, stop strings, streaming, n-best.

Prompts are tokenized and padded the way each architecture reads a batch: decoder prompts on the
left (the next token follows the last column), encoder–decoder sources on the right (the encoder
numbers positions from the first column). Greedy and sampled requests run through the token
stream, so a row ends as soon as its text meets a stop string; `num_return_sequences` samples
repeat each prompt's row. Beam search ranks whole hypotheses, so it runs to its end and the stop
strings then cut each hypothesis (they do not steer the search). Every `TextCompletion` holds its
prompt's candidates, best first, and reads as its best one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from polyformer.errors import DataError
from polyformer.generation.engine import TokenStream, check_streamable, generate, repeat_rows
from polyformer.generation.sampling import GenerationConfig
from polyformer.models import PolyformerModel


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
class Candidate:
    """One continuation of a prompt."""

    text: str  # cut at the first stop string; EOS and special tokens not included
    token_ids: list[int]  # the new tokens (EOS included when hit; up to the one completing a stop string)
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    score: float | None = None  # beam search: length-normalised log-probability (as transformers' sequences_scores)


@dataclass
class TextCompletion:
    """A prompt's candidates, best first (beam order, or the order of the samples); reads as the first."""

    candidates: list[Candidate]

    @property
    def text(self) -> str:
        return self.candidates[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.candidates[0].token_ids

    @property
    def finish_reason(self) -> str:
        return self.candidates[0].finish_reason

    @property
    def score(self) -> float | None:
        return self.candidates[0].score


def stream_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig,
                add_special_tokens: bool = True) -> Iterator[tuple[int, str]]:
    """(row, text increment) pairs for a batch of prompts; rows stop at EOS or a stop string.

    The request is checked when this is called, before the first piece is asked for.
    add_special_tokens=False for prompts that already hold them (rendered chat templates).
    """
    check_streamable(config)
    input_ids, mask = encode_prompts(model, tokenizer, prompts, add_special_tokens)
    token_stream = TokenStream(model, input_ids, mask, config)
    return _text_pieces(token_stream, [TextStreamer(tokenizer, config.stop) for _ in prompts])


def generate_text(model: PolyformerModel, tokenizer, prompts: list[str], config: GenerationConfig,
                  add_special_tokens: bool = True) -> list[TextCompletion]:
    """Complete each prompt with config.num_return_sequences candidates, cut exactly at the first stop string."""
    input_ids, mask = encode_prompts(model, tokenizer, prompts, add_special_tokens)
    if config.num_beams > 1:
        candidates = _beam_candidates(model, tokenizer, input_ids, mask, config)
    else:
        candidates = _streamed_candidates(model, tokenizer, input_ids, mask, config)
    n = config.num_return_sequences
    return [TextCompletion(candidates[i * n : (i + 1) * n]) for i in range(len(prompts))]


def _streamed_candidates(model: PolyformerModel, tokenizer, input_ids: torch.Tensor, mask: torch.Tensor,
                         config: GenerationConfig) -> list[Candidate]:
    """Greedy or sampled rows (each prompt's samples together, as `generate` draws them); a stop string ends a row."""
    token_stream = TokenStream(model, *repeat_rows(input_ids, mask, config.num_return_sequences), config)
    streamers = [TextStreamer(tokenizer, config.stop) for _ in range(token_stream.input_ids.shape[0])]
    for _ in _text_pieces(token_stream, streamers):
        pass
    reasons = [reason or "length" for reason in token_stream.finish_reasons]
    return [Candidate(s.text(), s.ids, reason) for s, reason in zip(streamers, reasons)]


def _beam_candidates(model: PolyformerModel, tokenizer, input_ids: torch.Tensor, mask: torch.Tensor,
                     config: GenerationConfig) -> list[Candidate]:
    """The n best hypotheses per prompt, each cut at its first stop string."""
    out = generate(model, input_ids, mask, config)  # beam search: scores are set
    rows = [row[:length] for row, length in zip(out.sequences.tolist(), out.lengths)]
    return [_cut(tokenizer, row, config.stop, reason, score)
            for row, reason, score in zip(rows, out.finish_reasons, out.scores.tolist())]


def _cut(tokenizer, ids: list[int], stops: list[str], reason: str, score: float) -> Candidate:
    """A finished hypothesis as text; at a stop string its tokens end where a streamed row would have stopped."""
    text, stopped = cut_at_stop(tokenizer.decode(ids), stops)
    if not stopped:
        return Candidate(text, ids, reason, score)
    streamer = TextStreamer(tokenizer, stops)
    for token in ids:
        streamer.push(token)
        if streamer.stopped:
            break
    return Candidate(streamer.text(), streamer.ids, "stop", score)


def encode_prompts(model: PolyformerModel, tokenizer, prompts: list[str],
                   add_special_tokens: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as the model reads a batch: input_ids, attention_mask (B, longest), on the model's device.

    Decoder prompts are left-padded, encoder–decoder sources right-padded; never truncated (a
    prompt longer than the context is an error from the engine's request check).
    """
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise DataError(f"prompts must be a non-empty list of non-empty strings, got {prompts!r:.80}")
    rows = [tokenizer.encode(p, add_special_tokens=add_special_tokens) for p in prompts]
    side = "right" if model.config.arch == "encoder-decoder" else "left"
    return pad_batch(rows, model.config.pad_token_id or 0, side, model.device)


def pad_batch(rows: list[list[int]], pad_id: int, side: str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows as a batch padded on `side` ("left" or "right"): input_ids and attention_mask, both (B, longest)."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[index, span] = torch.tensor(row)
            mask[index, span] = 1
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
