"""Beam search for decoders and encoder–decoders, with the scoring rules of `transformers.generate`.

Each of the B requests keeps K running beams. At every step the K·V continuations are scored by
accumulated log-probability and the best 2K (more with several EOS ids) are kept, so K beams
can always continue even when some candidates end. A candidate among the top K that ends (EOS
or the length limit) joins the request's finished hypotheses with score
sum_logprobs / new_length ** length_penalty; the K best finished hypotheses are kept. A request
is done when K hypotheses are finished (early_stopping) or no running beam can beat the worst
finished one. The KV cache follows the surviving beams with `KVCache.reorder`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from polyformer.generation.engine import GenerationOutput, TokenStream, repeat_rows
from polyformer.generation.sampling import (
    GenerationConfig,
    process_logits,
    suppress,
    token_counts,
)
from polyformer.models import PolyformerModel

NEG = -1.0e9  # "impossible" score, as a finite number so sums stay ordered


@dataclass
class Beams:
    """Running beams or finished hypotheses of B requests × K beams."""

    tokens: torch.Tensor  # (B, K, t) generated tokens
    logprobs: torch.Tensor  # (B, K, t) per-token log-probabilities
    scores: torch.Tensor  # (B, K) accumulated (running) or length-normalised (finished) log-probability

    def select(self, index: torch.Tensor) -> Beams:
        """Beams index (B, M) of each request."""
        return Beams(gather(self.tokens, index), gather(self.logprobs, index), gather(self.scores, index))

    def join(self, other: Beams, limit: int, pad_id: int) -> Beams:
        """Both sets side by side (B, K + M), token rows padded to `limit`."""
        return Beams(torch.cat([self.tokens, pad_to(other.tokens, limit, pad_id)], 1),
                     torch.cat([self.logprobs, pad_to(other.logprobs, limit, 0.0)], 1),
                     torch.cat([self.scores, other.scores], 1))


def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select beams: x (B, N, ...) and index (B, M) -> (B, M, ...)."""
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, index)


def pad_to(x: torch.Tensor, length: int, value: float) -> torch.Tensor:
    """Right-pad the last dim of x (B, N, t) to `length`."""
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]), value=value)


@torch.inference_mode()
def beam_search(model: PolyformerModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                config: GenerationConfig) -> GenerationOutput:
    """The config.num_return_sequences best hypotheses per request, rows grouped by request."""
    batch, k = input_ids.shape[0], config.num_beams
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    stream = TokenStream(model, *repeat_rows(input_ids, mask, k), config)
    eos = torch.tensor(stream.eos_ids, dtype=torch.long, device=input_ids.device)
    vocab, limit, device = model.config.vocab_size, config.max_new_tokens, input_ids.device
    keep = max(2, 1 + len(stream.eos_ids)) * k  # candidates kept per request
    in_top_k = torch.arange(keep, device=device) < k  # (keep,)
    prompt_counts = token_counts(stream.input_ids, vocab, stream.mask) if config.counts_tokens else None  # (B*K, V)

    empty = torch.zeros(batch, k, 0, dtype=torch.long, device=device)
    start = torch.full((batch, k), NEG, device=device)
    start[:, 0] = 0.0  # identical beams at first: expand only the first
    running = Beams(empty, empty.float(), start)
    finished = Beams(torch.full((batch, k, limit), stream.pad_id, device=device),
                     torch.zeros(batch, k, limit, device=device), torch.full((batch, k), NEG, device=device))
    is_finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)

    scoring = _greedy(config)
    logits = stream.prefill()  # (B*K, V)
    for step in range(limit):
        logprobs = logits.float().log_softmax(-1)
        if scoring.counts_tokens:
            generated = token_counts(running.tokens.view(batch * k, -1), vocab)
            logprobs = process_logits(logprobs, scoring, prompt_counts + generated, generated)
        else:
            logprobs = process_logits(logprobs, scoring)
        if step < config.min_new_tokens:
            logprobs = suppress(logprobs, stream.eos_ids)
        total = (logprobs.view(batch, k, vocab) + running.scores[..., None]).view(batch, k * vocab)
        top_scores, top_index = total.topk(keep, dim=-1)  # (B, keep)
        origin, token = top_index // vocab, top_index % vocab
        token_lp = logprobs.view(batch, k * vocab).gather(1, top_index)  # (B, keep)
        candidates = Beams(torch.cat([gather(running.tokens, origin), token[..., None]], -1),
                           torch.cat([gather(running.logprobs, origin), token_lp[..., None]], -1), top_scores)
        ends = torch.isin(token, eos) | (step + 1 == limit)  # (B, keep)

        # the best K candidates that go on, and the best K finished hypotheses so far
        alive_scores = top_scores + ends.float() * NEG
        going_on = alive_scores.topk(k, dim=-1).indices  # (B, K)
        running = Beams(candidates.tokens, candidates.logprobs, alive_scores).select(going_on)
        beam_origin = gather(origin, going_on)  # (B, K)
        just_ended = ends & in_top_k
        closed = is_finished.all(-1, keepdim=True) & config.early_stopping | ~improvable  # (B, 1) nothing may join
        final = top_scores / float(step + 1) ** config.length_penalty + (closed | ~just_ended).float() * NEG
        merged = finished.join(Beams(candidates.tokens, candidates.logprobs, final), limit, stream.pad_id)
        best = merged.scores.topk(k, dim=-1).indices
        finished, is_finished = merged.select(best), gather(torch.cat([is_finished, just_ended], 1), best)

        best_running = running.scores[:, :1] / float(step + 1) ** config.length_penalty  # (B, 1)
        worst_finished = torch.where(is_finished, finished.scores.min(-1, keepdim=True).values, NEG)  # (B, K)
        improvable = improvable & (best_running > worst_finished).any(-1, keepdim=True)
        if not improvable.any() or (config.early_stopping and is_finished.all()) or ends.all() or step + 1 == limit:
            break
        stream.cache.reorder((beam_origin + torch.arange(batch, device=device)[:, None] * k).flatten())
        logits = stream.advance(running.tokens[..., -1].flatten())
    return _output(finished, config.num_return_sequences, stream.pad_id, eos)


def _greedy(config: GenerationConfig) -> GenerationConfig:
    """Beam search scores log-probabilities: penalties and bias apply, sampling filters do not."""
    return replace(config, temperature=0.0, num_beams=1, num_return_sequences=1)


def _output(finished: Beams, n: int, pad_id: int, eos: torch.Tensor) -> GenerationOutput:
    tokens = finished.tokens[:, :n].flatten(0, 1)  # (B*n, limit)
    logprobs = finished.logprobs[:, :n].flatten(0, 1)
    lengths = _lengths(tokens, eos, pad_id)
    width = max(lengths)
    reasons = ["stop" if bool(torch.isin(row[n_ - 1], eos)) else "length" for row, n_ in zip(tokens, lengths)]
    keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < torch.tensor(lengths, device=tokens.device)[:, None]
    return GenerationOutput(tokens[:, :width], (logprobs * keep)[:, :width], lengths, reasons,
                            scores=finished.scores[:, :n].flatten())


def _lengths(tokens: torch.Tensor, eos: torch.Tensor, pad_id: int) -> list[int]:
    """New tokens per hypothesis: up to and including the first EOS, else the full limit."""
    stops, lengths = set(eos.tolist()), []
    for row in tokens.tolist():
        ends = [i for i, t in enumerate(row) if t in stops]
        lengths.append(ends[0] + 1 if ends else len(row))
    return lengths
