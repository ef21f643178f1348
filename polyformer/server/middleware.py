"""The ASGI layer in front of the routes: access log, metrics, draining, API key, body limit, admission.

In order, for every HTTP request:
1. count it in flight (a drain waits for these), time it, and when it is answered write one
   access-log line and count it in `polyformer_requests_total{endpoint, status}`;
2. while draining, answer 503 (except `/metrics`);
3. with an API key set, `/v1/*` needs `Authorization: Bearer KEY` (else 401);
4. read the body, at most `max_body_bytes` (else 413, also when Content-Length says so first);
5. for the model endpoints, wait for a place in service (`Admission`); with the queue full,
   answer 429 with Retry-After at once. A client that goes away while queued leaves the queue.

It is plain ASGI (not a BaseHTTPMiddleware), so streamed responses pass through untouched and
the place in service is held until the last byte of a stream is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from polyformer.server.errors import error_body
from polyformer.server.service import Service

access_log = logging.getLogger("polyformer.server.access")

ADMITTED = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/classify", "/v1/rerank", "/v1/search"}
ENDPOINTS = ADMITTED | {"/v1/models", "/v1/tokenize", "/v1/detokenize", "/health", "/metrics", "/"}
OPEN_PATHS = ("/health", "/metrics")


class Guard:
    """Wraps the FastAPI app; see the module docstring."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def tracked_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.service.inflight += 1
        try:
            await self._handle(scope, receive, tracked_send)
        finally:
            self.service.inflight -= 1
            self._record(scope, status["code"], time.perf_counter() - started)

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        path, settings = scope["path"], self.service.settings
        if self.service.state == "draining" and path != "/metrics":
            await _reply(send, 503, "the server is shutting down; retry on another replica", "shutting_down",
                         {"Retry-After": str(settings.retry_after_seconds), "Connection": "close"})
            return
        if settings.api_key and path.startswith("/v1/") and not _authorized(scope, settings.api_key):
            await _reply(send, 401, "missing or wrong API key: send Authorization: Bearer KEY", "invalid_api_key",
                         {"WWW-Authenticate": "Bearer"})
            return
        body = await _read_body(scope, receive, settings.max_body_bytes)
        if body is None:
            await _reply(send, 413, f"the request body is larger than {settings.max_body_bytes} bytes",
                         "request_too_large", {"Connection": "close"})
            return
        replay = _replay(body, receive)
        if path not in ADMITTED or scope["method"] != "POST":
            await self.app(scope, replay, send)
            return
        admitted = await _admit(self.service, receive)
        if admitted is None:
            return  # the client went away while queued
        if not admitted:
            await _reply(send, 429, "too many requests in service and waiting; retry shortly", "rate_limit_exceeded",
                         {"Retry-After": str(settings.retry_after_seconds)})
            return
        try:
            await self.app(scope, replay, send)
        finally:
            self.service.admission.leave()

    def _record(self, scope: dict, status: int, seconds: float) -> None:
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        metrics = self.service.metrics
        metrics.requests.labels(endpoint, str(status)).inc()
        metrics.latency.labels(endpoint).observe(seconds)
        client = scope.get("client") or ("-", 0)
        access_log.info('%s "%s %s" %d %.1fms', client[0], scope["method"], path, status, seconds * 1000)


async def _admit(service: Service, receive: Any) -> bool | None:
    """True once in service, False when refused, None when the client disconnected while waiting."""
    entering = asyncio.ensure_future(service.admission.enter())
    await asyncio.sleep(0)  # enter() runs: an immediate place or refusal needs no disconnect watcher
    if entering.done():
        return entering.result()
    watching = asyncio.ensure_future(_disconnected(receive))
    done, _ = await asyncio.wait({entering, watching}, return_when=asyncio.FIRST_COMPLETED)
    if entering in done:
        watching.cancel()
        return entering.result()
    entering.cancel()
    try:
        await entering
    except asyncio.CancelledError:
        pass
    return None


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(scope: dict, receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than `limit` bytes."""
    headers = dict(scope.get("headers") or [])
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    if scope["method"] in ("GET", "HEAD") and declared is None:
        return b""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A receive that gives the buffered body once, then the client's later messages (disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _authorized(scope: dict, key: str) -> bool:
    headers = dict(scope.get("headers") or [])
    given = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


async def _reply(send: Any, status: int, message: str, code: str, headers: dict[str, str]) -> None:
    body = json.dumps(error_body(status, message, None, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
