"""The state of one running server: settings, metrics, admission, the loaded models, draining.

Models load in a background thread after the server starts listening, so `/health` can answer
503 while they load and 200 once every engine runs. `Admission` bounds the work: at most
`max_concurrent` requests in service and `max_queue` waiting (first come, first served); past
that a request is refused at once (429 with Retry-After). `drain()` (SIGTERM) stops admitting
anything new (503) while what is in flight finishes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

from polyformer.server.errors import APIError
from polyformer.server.metrics import Metrics
from polyformer.server.registry import ServedIndex, ServedModel, load_index, load_model
from polyformer.server.settings import ServerSettings

logger = logging.getLogger("polyformer.server")


class Admission:
    """Requests in service and waiting, on the event loop (no locks: one thread touches it)."""

    def __init__(self, max_running: int, max_waiting: int, metrics: Metrics) -> None:
        self.max_running, self.max_waiting, self.metrics = max_running, max_waiting, metrics
        self.running = 0
        self._waiters: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self) -> bool:
        """Wait for a place in service; False (at once) when the queue is full too."""
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            self._report()
            return True
        if len(self._waiters) >= self.max_waiting:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._report()
        try:
            await waiter  # leave() hands its place over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # the place was handed over just as the wait was cancelled
            else:
                self._waiters.remove(waiter)
            self._report()
            raise
        self._report()
        return True

    def leave(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._report()
                return
        self.running -= 1
        self._report()

    def _report(self) -> None:
        self.metrics.running.set(self.running)
        self.metrics.waiting.set(len(self._waiters))


class Service:
    """Everything the routes and the middleware share."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.admission = Admission(settings.max_concurrent, settings.max_queue, self.metrics)
        self.models: dict[str, ServedModel] = {}
        self.indexes: dict[str, ServedIndex] = {}
        self.state = "loading"  # loading | ready | failed | draining
        self.error: str | None = None
        self.inflight = 0
        self._loader: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._load, name="load-models", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            for spec in self.settings.models:
                logger.info("loading model %s from %s", spec.name, spec.source)
                served = load_model(spec, self.settings, self.metrics)
                for worker in served.workers():
                    worker.start()
                self.models[spec.name] = served
            for spec in self.settings.indexes:
                logger.info("opening index %s at %s", spec.name, spec.source)
                index = load_index(spec, self.settings, self.metrics)
                index.embedder.start()
                self.indexes[spec.name] = index
        except Exception as error:  # noqa: BLE001 - reported by /health and the CLI
            self.error = " ".join(f"{type(error).__name__}: {error}".split())
            self.state = "failed"
            logger.error("loading failed: %s", self.error)
            return
        if self.state == "loading":
            self.state = "ready"
            logger.info("ready: %d model(s), %d index(es)", len(self.models), len(self.indexes))

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._loader is not None:
            self._loader.join(timeout)

    def drain(self) -> None:
        if self.state != "draining":
            logger.info("draining: refusing new requests, finishing %d in flight", self.inflight)
            self.state = "draining"

    def stop(self) -> None:
        self.wait_loaded(60)
        for served in [*self.models.values(), *self.indexes.values()]:
            for worker in served.workers():
                worker.stop()

    # ---- lookups ------------------------------------------------------------------------------
    def ready(self) -> None:
        if self.state == "loading":
            raise APIError(503, "the models are still loading; retry shortly", code="loading",
                           headers={"Retry-After": "1"})
        if self.state == "failed":
            raise APIError(503, f"the server failed to load its models: {self.error}", code="load_failed")

    def model(self, name: str, capability: str) -> ServedModel:
        """The served model `name`, which must offer `capability`."""
        self.ready()
        served = self.models.get(name)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise APIError(404, f"model {name!r} is not served here (served: {known})", "model", "model_not_found")
        if capability not in served.capabilities():
            raise APIError(400, f"model {name!r} does not offer {capability} (it offers "
                                f"{', '.join(served.capabilities())})", "model", "unsupported_model")
        return served

    def index(self, name: str) -> ServedIndex:
        self.ready()
        served = self.indexes.get(name)
        if served is None:
            known = ", ".join(sorted(self.indexes)) or "none"
            raise APIError(404, f"index {name!r} is not served here (served: {known})", "index", "index_not_found")
        return served
