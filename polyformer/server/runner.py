"""Run the app under uvicorn: listen, load, serve, and on SIGTERM drain before exiting 0.

The first SIGTERM (or Ctrl-C) puts the service in draining mode: every new request is answered
503 (a load balancer moves on to another replica) while requests in flight — streams included —
run to their end; then the server exits with status 0. A second signal, or `drain_seconds`
passing, exits at once. Port 0 picks a free port; the address is printed to stderr once bound.
"""

from __future__ import annotations

import logging
import socket
import sys
import time

import uvicorn

from polyformer.server.app import create_app
from polyformer.server.service import Service
from polyformer.server.settings import ServerSettings

logger = logging.getLogger("polyformer.server")


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain between the first signal and the exit."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001 - signal handler signature
        if self.drain_deadline is not None:
            self.force_exit = self.should_exit = True
            return
        self.drain_deadline = time.monotonic() + self.service.settings.drain_seconds
        self.service.drain()

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and (self.service.inflight == 0 or time.monotonic() > self.drain_deadline):
            self.should_exit = True
        if self.service.state == "failed":
            self.should_exit = True
        return await super().on_tick(counter)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServerSettings, log_level: str = "info") -> Service:
    """Serve until a signal drains the server; returns the service (its `state` says how it ended)."""
    app = create_app(settings)
    service: Service = app.state.service
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(settings.drain_seconds))
    server = DrainingServer(config, service)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = host if ":" not in host else f"[{host}]"
    sys.stderr.write(f"polyformer serve: listening on http://{shown}:{port}\n")  # at every log level
    sys.stderr.flush()
    server.run(sockets=[sock])
    return service
