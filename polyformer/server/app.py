"""`create_app(settings)`: the FastAPI application of `polyformer serve`, for any ASGI server.

    from polyformer.server import ServerSettings, create_app, parse_served
    app = create_app(ServerSettings(models=[parse_served("smol=SmolLM2-135M-Instruct")]))
    # uvicorn module:app, or polyformer.server.runner.serve(settings) with SIGTERM draining

The models load in the background once the app starts (its lifespan), `/health` is 503 until
they are ready. The app holds no per-user state between requests, so replicas behind a load
balancer are interchangeable.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from polyformer import __version__
from polyformer.server import encoder_api, generation_api
from polyformer.server.errors import APIError, install_handlers
from polyformer.server.metrics import CONTENT_TYPE
from polyformer.server.middleware import Guard
from polyformer.server.service import Service
from polyformer.server.settings import ServerSettings

STATIC = Path(__file__).parent / "static"


def create_app(settings: ServerSettings) -> FastAPI:
    """The server app; `app.state.service` holds its models, limits and metrics."""
    service = Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start_loading()
        yield
        service.stop()

    app = FastAPI(title="polyformer", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    install_handlers(app)
    app.include_router(generation_api.router)
    app.include_router(encoder_api.router)
    _add_service_routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, service=service)
    return app


def _add_service_routes(app: FastAPI, service: Service) -> None:
    @app.get("/health")
    async def health() -> JSONResponse:
        status = 200 if service.state == "ready" else 503
        body = {"status": service.state, "models": sorted(service.models), "indexes": sorted(service.indexes)}
        if service.error:
            body["error"] = service.error
        return JSONResponse(body, status)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> dict:
        service.ready()
        return {"object": "list", "data": [_model_card(name, service) for name in sorted(service.models)]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict:
        service.ready()
        if name not in service.models:
            raise APIError(404, f"model {name!r} is not served here", "model", "model_not_found")
        return _model_card(name, service)

    @app.get("/", include_in_schema=False)
    async def playground(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")


def _model_card(name: str, service: Service) -> dict:
    served = service.models[name]
    config = served.model.config
    return {"id": name, "object": "model", "created": served.created, "owned_by": "polyformer",
            "max_model_len": served.context_length, "architecture": config.arch, "head": config.head,
            "capabilities": served.capabilities()}
