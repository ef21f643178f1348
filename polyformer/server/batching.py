"""Dynamic batching for encoders: concurrent requests' texts run together, within a token budget.

One `DynamicBatcher` (a thread) per model and kind of work (embedding, classification). A
request hands in its items with their token counts and awaits the results. While a batch runs,
new requests queue up; the next pass takes everything queued, sorts it by length and packs it
into batches of at most `max_batch_tokens` padded tokens (`plan_batches`, as `SentenceEncoder`
does offline, like TEI's token budget), so many small concurrent requests cost about what one
large offline call costs. Items of a request whose client went away are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from polyformer.embeddings.encoder import plan_batches
from polyformer.server.metrics import Metrics

logger = logging.getLogger("polyformer.server")

RunBatch = Callable[[list[Any]], Sequence[Any]]


@dataclass
class _Job:
    items: list[Any]
    costs: list[int]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    results: list[Any] = field(default_factory=list)
    left: int = 0


class DynamicBatcher:
    """Run `run(items) -> results` over batches of items gathered from concurrent requests."""

    def __init__(self, name: str, kind: str, run: RunBatch, max_batch_tokens: int, metrics: Metrics) -> None:
        self.name, self.kind, self.run, self.max_batch_tokens, self.metrics = name, kind, run, max_batch_tokens, metrics
        self._queue: list[_Job] = []
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"{kind}-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)

    async def submit(self, items: list[Any], costs: list[int]) -> list[Any]:
        """The results for `items` (in order), computed off the event loop."""
        loop = asyncio.get_running_loop()
        job = _Job(list(items), [max(1, c) for c in costs], loop.create_future(), loop, [None] * len(items), len(items))
        with self._wakeup:
            self._queue.append(job)
            self._wakeup.notify()
        return await job.future

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wakeup:
                    while not self._stopping and not self._queue:
                        self._wakeup.wait()
                    if self._stopping:
                        break
                    jobs, self._queue = self._queue, []
                self._run_jobs([job for job in jobs if not job.future.done()])
        for job in self._queue:
            _settle(job, error=RuntimeError("the server is shutting down"))

    def _run_jobs(self, jobs: list[_Job]) -> None:
        entries = [(job, index) for job in jobs for index in range(len(job.items))]
        costs = [job.costs[index] for job, index in entries]
        for batch in plan_batches(costs, len(costs) or 1, self.max_batch_tokens):
            chosen = [entries[i] for i in batch if not entries[i][0].future.done()]
            if not chosen:
                continue
            try:
                results = self.run([job.items[index] for job, index in chosen])
            except Exception as error:  # noqa: BLE001 - fail these requests, keep the loop
                logger.exception("a %s batch of %s failed", self.kind, self.name)
                for job in {id(job): job for job, _ in chosen}.values():
                    _settle(job, error=error)
                continue
            self.metrics.batch_size.labels(self.name, self.kind).observe(len(chosen))
            for (job, index), result in zip(chosen, results):
                job.results[index] = result
                job.left -= 1
                if job.left == 0:
                    _settle(job)


def _settle(job: _Job, error: BaseException | None = None) -> None:
    def finish() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(job.results)

    try:
        job.loop.call_soon_threadsafe(finish)
    except RuntimeError:  # the event loop is gone
        pass
