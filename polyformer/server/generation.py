"""The continuous-batching generation engine: one loop (a thread) per generative model.

Every pass of the loop (a step boundary) first ends the rows whose clients went away, then
prefills the rows waiting for a free slot (each alone, as `polyformer generate` would), and then
decodes one token for every running row in a single batched forward (`SlotSteps.step`). A row
that finishes — EOS, a stop string, its token limit, a cancel — leaves at once and frees its
slot for the next waiting row. Rows are sampled one by one with their own settings and their
own seeded generator through the same processors as `TokenStream` (`process_logits`,
`choose_tokens`), so a seeded row draws the tokens the CLI draws for that seed, and a greedy row
gives the CLI's text whatever else is in the batch. Text is made in the loop too (`TextStreamer`:
stable increments, exact stop strings), so a row stops on the step its stop string appears.

The HTTP side hands in a `Ticket` and reads its events — `TokenEvent`, `PromptEvent` (echoed
prompt log-probabilities), `FinishEvent` — from an asyncio queue; the loop never waits for it.
A failure while serving one row ends that row with reason "error"; the loop goes on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from polyformer.generation.text import TextStreamer
from polyformer.generation.sampling import (
    GenerationConfig,
    choose_tokens,
    make_generator,
    process_logits,
    suppress,
    token_counts,
)
from polyformer.generation.slots import SlotSteps
from polyformer.models import PolyformerModel
from polyformer.server.metrics import Metrics

logger = logging.getLogger("polyformer.server")

TopLogprobs = list[tuple[int, float]]


@dataclass
class RowRequest:
    """One sequence to generate: its prompt ids and its settings (EOS ids already resolved)."""

    prompt_ids: list[int]
    config: GenerationConfig
    top_logprobs: int | None = None  # None: no log-probabilities; k: the chosen token's and the k best
    prompt_logprobs: bool = False  # echo: the log-probability of every prompt token (decoders)


@dataclass
class TokenEvent:
    row: int
    text: str  # the new stable text ("" while a character or a possible stop string is incomplete)
    token_id: int
    logprob: float
    top: TopLogprobs | None = None


@dataclass
class PromptEvent:
    row: int
    logprobs: list[float | None]  # per prompt token (None for the first)
    top: list[TopLogprobs | None]


@dataclass
class FinishEvent:
    row: int
    reason: str  # "stop" | "length" | "cancelled" | "error"
    completion_tokens: int
    error: str | None = None


class Ticket:
    """One request's rows as the HTTP side sees them: events arrive on `events`; `cancel()` ends them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self._engine: GenerationEngine | None = None

    def emit(self, event: TokenEvent | PromptEvent | FinishEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server stopped)
            pass

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._engine is not None:
                self._engine.wake()


@dataclass
class _Row:
    ticket: Ticket
    index: int
    spec: RowRequest
    streamer: TextStreamer
    generator: torch.Generator | None
    submitted: float
    eos: set[int] = field(default_factory=set)
    slot: int | None = None
    tokens: list[int] = field(default_factory=list)
    seen: torch.Tensor | None = None  # (1, V) prompt + generated counts, when a penalty needs them
    generated: torch.Tensor | None = None
    last_time: float = 0.0


class GenerationEngine:
    """The decode loop of one model; `submit` rows, read their events from the ticket."""

    def __init__(self, name: str, model: PolyformerModel, tokenizer, slots: int, metrics: Metrics) -> None:
        self.name, self.model, self.tokenizer, self.metrics = name, model, tokenizer, metrics
        self.steps = SlotSteps(model, slots)
        self._pending: deque[_Row] = deque()
        self._running: dict[int, _Row] = {}
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"generate-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)

    def wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify()

    def submit(self, ticket: Ticket, rows: list[RowRequest]) -> None:
        """Queue the rows of one request (numbered 0..len-1 in its events)."""
        ticket._engine = self
        now = time.perf_counter()
        queued = []
        for index, spec in enumerate(rows):
            config = spec.config
            generator = None if config.greedy else make_generator(config.seed, self.model.device)
            queued.append(_Row(ticket, index, spec, TextStreamer(self.tokenizer, config.stop), generator, now,
                               set(config.eos_ids())))
        with self._wakeup:
            self._pending.extend(queued)
            self._wakeup.notify()

    def counts(self) -> tuple[int, int]:
        """(rows running, rows waiting)."""
        return len(self._running), len(self._pending)

    # ---- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wakeup:
                    while not self._stopping and not self._pending and not self._running:
                        self._wakeup.wait()
                    if self._stopping:
                        break
                    joining = self._take_pending()
                self._drop_cancelled()
                for row in joining:
                    self._start(row)
                if self._running:
                    self._advance()
                self._report()
        for row in [*self._running.values(), *self._pending]:
            self._finish(row, "error", "the server is shutting down")

    def _take_pending(self) -> list[_Row]:
        """The waiting rows that get a free slot now (cancelled ones are dropped)."""
        joining = []
        free = self.steps.slots - self.steps.in_use()
        while self._pending and len(joining) < free:
            row = self._pending.popleft()
            if row.ticket.cancelled:
                self._finish(row, "cancelled")
            else:
                joining.append(row)
        return joining

    def _drop_cancelled(self) -> None:
        for row in [r for r in self._running.values() if r.ticket.cancelled]:
            self._finish(row, "cancelled")

    def _start(self, row: _Row) -> None:
        """Prefill a row into a free slot and choose its first token."""
        try:
            row.slot = self.steps.acquire()
            self._running[row.slot] = row  # type: ignore[index]
            logits = self.steps.prefill(row.slot, row.spec.prompt_ids, all_logits=row.spec.prompt_logprobs)  # type: ignore[arg-type]
            if logits.dim() == 2:
                self._emit_prompt_logprobs(row, logits)
                logits = logits[-1]
            self.metrics.prompt_tokens.labels(self.name).inc(len(row.spec.prompt_ids))
            self._next_token(row, logits[None])
        except Exception as error:  # noqa: BLE001 - one row's failure must not stop the loop
            logger.exception("generation failed for a row of %s", self.name)
            self._finish(row, "error", f"{type(error).__name__}: {error}")

    def _advance(self) -> None:
        """One batched decode step for every running row."""
        slots = sorted(self._running)
        rows = [self._running[slot] for slot in slots]
        try:
            logits = self.steps.step(slots, [row.tokens[-1] for row in rows])  # (B, V)
        except Exception as error:  # noqa: BLE001
            logger.exception("a decode step of %s failed", self.name)
            for row in rows:
                self._finish(row, "error", f"{type(error).__name__}: {error}")
            return
        self.metrics.batch_size.labels(self.name, "decode").observe(len(rows))
        for index, row in enumerate(rows):
            try:
                self._next_token(row, logits[index: index + 1])
            except Exception as error:  # noqa: BLE001
                logger.exception("generation failed for a row of %s", self.name)
                self._finish(row, "error", f"{type(error).__name__}: {error}")

    def _next_token(self, row: _Row, logits: torch.Tensor) -> None:
        """Sample a row's next token from its logits (1, V), emit it, and end the row when it is done."""
        config = row.spec.config
        if config.counts_tokens and row.seen is None:
            prompt = torch.tensor([row.spec.prompt_ids], device=logits.device)
            row.seen = token_counts(prompt, logits.shape[-1])
            row.generated = torch.zeros_like(row.seen)
        scores = process_logits(logits, config, row.seen, row.generated)
        if len(row.tokens) < config.min_new_tokens:
            scores = suppress(scores, sorted(row.eos))
        token = int(choose_tokens(scores, config.greedy, row.generator)[0])
        normaliser = scores.logsumexp(-1)  # (1,)
        logprob = float(scores[0, token] - normaliser[0])
        top = _top(scores[0] - normaliser[0], row.spec.top_logprobs) if row.spec.top_logprobs else None
        if row.seen is not None:
            row.seen[0, token] += 1
            row.generated[0, token] += 1  # type: ignore[index]
        row.tokens.append(token)
        piece = row.streamer.push(token)
        reason = "stop" if token in row.eos or row.streamer.stopped else None
        if reason is None and len(row.tokens) >= config.max_new_tokens:
            reason = "length"
        if reason is not None:
            piece += row.streamer.flush()
        self._timing(row)
        row.ticket.emit(TokenEvent(row.index, piece, token, logprob, top))
        if reason is not None:
            self._finish(row, reason)

    def _emit_prompt_logprobs(self, row: _Row, logits: torch.Tensor) -> None:
        """Log-probabilities of prompt tokens 1..T-1 under the positions before them (logits (T, V))."""
        ids = torch.tensor(row.spec.prompt_ids[1:], device=logits.device)
        logprobs = logits[:-1].float().log_softmax(-1)  # (T-1, V)
        chosen = logprobs.gather(-1, ids[:, None])[:, 0].tolist()
        k = row.spec.top_logprobs or 0
        tops = [_top(position, k) if k else None for position in logprobs]
        row.ticket.emit(PromptEvent(row.index, [None, *chosen], [None, *tops]))

    def _timing(self, row: _Row) -> None:
        now = time.perf_counter()
        if not row.tokens[:-1]:
            self.metrics.ttft.labels(self.name).observe(now - row.submitted)
        else:
            self.metrics.inter_token.labels(self.name).observe(now - row.last_time)
        row.last_time = now
        self.metrics.generated_tokens.labels(self.name).inc()

    def _finish(self, row: _Row, reason: str, error: str | None = None) -> None:
        if row.slot is not None and self._running.get(row.slot) is row:
            del self._running[row.slot]
            self.steps.release(row.slot)
        row.slot = None
        if reason == "cancelled":
            self.metrics.cancelled.labels(self.name).inc()
        row.ticket.emit(FinishEvent(row.index, reason, len(row.tokens), error))

    def _report(self) -> None:
        running, waiting = self.counts()
        self.metrics.rows_running.labels(self.name).set(running)
        self.metrics.rows_waiting.labels(self.name).set(waiting)


def _top(logprobs: torch.Tensor, k: int) -> TopLogprobs:
    """The k most likely tokens of one position's log-probabilities (V,), best first."""
    values, ids = logprobs.topk(min(k, logprobs.shape[-1]))
    return [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist())]
