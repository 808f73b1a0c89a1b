"""One error shape for every 4xx/5xx: {"error": {"code": str, "message": str}}.

Runtime exceptions (retrieval.errors) are mapped to statuses here, so the library never needs to know
about HTTP and bad input can never surface as a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from retrieval.encoders.base import UnsupportedModalityError
from retrieval.errors import (
    CatalogueBusyError,
    CatalogueError,
    CrossmediaError,
    MediaError,
    MediaTooLargeError,
    ModelUnavailableError,
    SpaceMismatchError,
    StorageFullError,
    UnknownModelError,
    UnsupportedMediaError,
)
from retrieval.filters import FilterError
from retrieval.fsutil import is_disk_full

log = logging.getLogger("crossmedia.api")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
    507: "storage_full",
}

# Another process (`crossmedia index`) holds the catalogue's write lock: worth a retry soon.
BUSY_RETRY_AFTER_S = 2

# Most specific first: the first isinstance match wins.
_ENGINE_ERRORS: list[tuple[type[Exception], int, str]] = [
    (FilterError, 422, "invalid_filters"),
    (MediaTooLargeError, 413, "media_too_large"),
    (UnsupportedMediaError, 415, "unsupported_media"),
    (MediaError, 422, "invalid_media"),
    (UnsupportedModalityError, 422, "unsupported_modality"),
    (SpaceMismatchError, 409, "space_mismatch"),
    (UnknownModelError, 400, "unknown_model"),
    (ModelUnavailableError, 503, "model_unavailable"),
    (CatalogueBusyError, 503, "catalogue_busy"),
    (CatalogueError, 503, "catalogue_unavailable"),
    (StorageFullError, 507, "storage_full"),
]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    code = code or _STATUS_CODES.get(status, "error")
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


class ApiError(StarletteHTTPException):
    """An HTTPException that carries a machine-readable code for the error body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code or _STATUS_CODES.get(status, "error")


def engine_error_status(exc: Exception) -> tuple[int, str]:
    for cls, status, code in _ENGINE_ERRORS:
        if isinstance(exc, cls):
            return status, code
    return 500, "engine_error"


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "Invalid request."


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    routes = request.app.router.routes
    allowed = [
        m
        for m in _METHODS
        if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette lists only the first route that matched the path (GET of
            # /v1/items/{id}); name every method any route offers there.
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, message, code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(list(exc.errors())), "invalid_request")

    @app.exception_handler(CrossmediaError)
    async def _engine(request: Request, exc: CrossmediaError) -> JSONResponse:
        status, code = engine_error_status(exc)
        if status >= 500:
            log.error("engine error on %s: %s", request.url.path, exc)
        headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)} if code == "catalogue_busy" else None
        return error_response(status, str(exc) or exc.__class__.__name__, code, headers)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if not is_disk_full(exc):
            raise exc  # on to the 500 handler below
        # e.g. an index file save after the store took the write
        log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            507,
            f"The disk holding the catalogue is full ({exc}). Free some space and retry.",
            "storage_full",
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal server error; see the server log.", "internal_error")
