"""OpenAI-style errors: every failure answers `{"error": {"message", "type", "param", "code"}}`.

`APIError` carries the status and the fields; the handlers installed by `install_handlers` turn
it, a routing miss (404 / 405), a request-body validation failure (400, never FastAPI's 422
shape), a user mistake raised deep inside polyformer (`PolyformerError`, 400) and any other
exception (500, logged with its traceback) into that body.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyformer.errors import PolyformerError

logger = logging.getLogger("polyformer.server")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "invalid_request_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
         503: "service_unavailable"}


class APIError(Exception):
    """A request that gets an error status; `param` names the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


class ClientGone(Exception):
    """The client disconnected before its answer was ready (logged as 499; nobody reads the body)."""


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.message, error.param, error.code), error.status, error.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def validation_error(error: ValidationError | RequestValidationError) -> APIError:
    """The first problem of a pydantic validation, as a 400 naming the field."""
    first = error.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    kind = first.get("type", "")
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if kind == "json_invalid":
        return bad_request(f"the request body is not valid JSON ({message.removeprefix('Invalid JSON: ')})", None,
                           "invalid_json")
    if kind == "model_type":
        return bad_request("the request body must be a JSON object", None, "invalid_type")
    if kind == "missing":
        return bad_request(f"{param} is required", param, "missing_field")
    if kind == "extra_forbidden":
        return bad_request(f"unknown field {param!r}", param, "unknown_field")
    return bad_request(f"{param}: {message}" if param else message, param, "invalid_value")


def install_handlers(app: FastAPI) -> None:
    """Answer every error with the OpenAI error body."""

    @app.exception_handler(APIError)
    async def _api(request: Request, error: APIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.url.path} does not take {request.method}"
        else:
            message = str(error.detail)
        return error_response(APIError(error.status_code, message, headers=dict(error.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, error: ClientGone) -> JSONResponse:
        return JSONResponse(error_body(499, "client closed the request", None, "client_closed"), 499)

    @app.exception_handler(PolyformerError)
    async def _user(request: Request, error: PolyformerError) -> JSONResponse:
        return error_response(bad_request(" ".join(str(error).split())))

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, f"internal error: {type(error).__name__}", code="internal_error"))
