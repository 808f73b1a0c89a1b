"""The FastAPI application: `create_app(settings)` wires routers, limits, security and the page."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from api.errors import install_error_handlers
from api.limits import BodySizeLimitMiddleware, TimeoutMiddleware
from api.metrics import Metrics, MetricsMiddleware
from api.openapi import install_schema_limits
from api.routers import items, search, system
from api.runtime import Runtime
from api.security import build_security_state
from api.settings import Settings

log = logging.getLogger("crossmedia.api")

STATIC_DIR = Path(__file__).parent / "static"

_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

DESCRIPTION = """
Cross-media search over one catalogue: text, images and audio in one embedding space.

**Auth.** When the server has API keys (`CROSSMEDIA_API_KEYS`), send
`Authorization: Bearer <key>`. Scope `read`: search, items, media, stats, metrics.
Scope `write`: upload and delete. Missing/unknown key: 401; wrong scope: 403.
A server without keys is open and only binds to loopback.

**Errors** always have the shape `{"error": {"code": "...", "message": "..."}}`.

**Limits** (settings, see `/v1/stats`): body size (413, checked before the body is read),
`k` (422), image pixels and bytes (413), audio seconds (413), request time (504),
per-key rate limit (429 with `Retry-After`).
"""


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. The runtime is loaded in the lifespan from `settings`, unless one is given
    (tests and benchmarks share one runtime across apps; the caller then owns and closes it)."""
    app = FastAPI(
        title="crossmedia",
        version="1.0.0",
        summary="Self-hosted cross-media search: images, audio and text in one embedding space.",
        description=DESCRIPTION,
        lifespan=_lifespan(settings, runtime),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = None
    app.state.metrics = Metrics()
    app.state.keyring, app.state.rate_limiter = build_security_state(settings)

    install_error_handlers(app)
    install_schema_limits(app, settings)

    app.include_router(search.router)
    app.include_router(items.router)
    app.include_router(system.router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_middleware(app, settings)
    return app


def _lifespan(settings: Settings, runtime: Runtime | None) -> Callable[[FastAPI], Any]:
    """Load the runtime once per process (unless the caller brings one) and close what we own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = (
            runtime if runtime is not None else await run_in_threadpool(Runtime.load, settings)
        )
        if not settings.auth_enabled:
            log.warning(
                "No API keys configured: the API is open to every local user and bound to "
                "loopback (%s). Set CROSSMEDIA_API_KEYS to serve beyond this machine.",
                settings.host,
            )
        try:
            yield
        finally:
            loaded, app.state.runtime = app.state.runtime, None
            if owned and loaded is not None:
                await run_in_threadpool(loaded.close)

    return lifespan


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first. CORS is outermost so that even a 413 or 504 carries its headers
    # and a permitted browser origin can read the error.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Retry-After", "Location"],
        )
