"""`polyformer serve`: an OpenAI-compatible HTTP server for any number of models and indexes.

    polyformer serve --model smol=SmolLM2-135M-Instruct --model minilm=all-MiniLM-L6-v2
    polyformer serve --model runs/rt --index reviews=runs/reviews-index --port 8080 --api-key s3cret
    POLYFORMER_API_KEY=s3cret polyformer serve --model smol=SmolLM2-135M-Instruct --dtype int8

Binds 127.0.0.1 unless --host says otherwise. Sources are checked before the server starts (a
bad path is one error line, exit 2); models then load in the background (`/health` is 503 until
they are ready). SIGTERM drains: new requests get 503, those in flight finish, exit 0.
"""

from __future__ import annotations

import logging
from typing import Optional

import typer

from polyformer.errors import ConfigError


def serve(
    model: Optional[list[str]] = typer.Option(None, "--model", help="NAME=PATH_OR_CATALOG (repeatable): a catalog "
                                              "name, model folder, .gguf file or fine-tuning run."),
    index: Optional[list[str]] = typer.Option(None, "--index", help="NAME=DIR (repeatable): a `polyformer index` directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default loopback only)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, logged)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Require Authorization: Bearer KEY on /v1/* "
                                          "(default: $POLYFORMER_API_KEY, else none)."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights: float32 | bfloat16 | int8."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    max_concurrent: int = typer.Option(16, "--max-concurrent", help="Requests in service at once (also the "
                                       "sequences decoded together per model)."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests waiting for service; beyond that 429."),
    max_batch_tokens: int = typer.Option(8192, "--max-batch-tokens", help="Padded tokens per embedding / "
                                         "classification batch."),
    max_body_bytes: int = typer.Option(2 * 1024 * 1024, "--max-body-bytes", help="Largest request body (413 above)."),
    drain_seconds: float = typer.Option(60.0, "--drain-seconds", help="After SIGTERM, how long in-flight requests may run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error."),
) -> None:
    """Serve models over HTTP: OpenAI-compatible completions, chat, embeddings, plus classify, rerank, search."""
    from polyformer.server.settings import ServerSettings, parse_served

    settings = ServerSettings(
        models=[parse_served(m, "--model") for m in model or []],
        indexes=[parse_served(i, "--index") for i in index or []],
        host=host, port=port, api_key=api_key, dtype=dtype, device=device, max_concurrent=max_concurrent,
        max_queue=max_queue, max_batch_tokens=max_batch_tokens, max_body_bytes=max_body_bytes,
        drain_seconds=drain_seconds,
    )
    _check_sources(settings)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from polyformer.server.runner import serve as run

    service = run(settings, log_level=log_level)
    if service.state == "failed":
        raise ConfigError(f"the server stopped: {service.error}")


def _check_sources(settings) -> None:
    """Every model source must resolve (catalog items are fetched now) and every index must exist."""
    from pathlib import Path

    from polyformer.locations import resolve

    for spec in settings.models:
        resolve(spec.source)
    for spec in settings.indexes:
        if not (Path(spec.source) / "meta.json").is_file():
            raise ConfigError(f"--index {spec.name}={spec.source}: not an index directory (no meta.json); "
                              "build one with `polyformer index build`")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
