"""Annotated dependencies shared by the routers. Tests swap these through
`app.dependency_overrides`, never by patching module globals.

They are `async` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and for
these attribute lookups the thread hop would cost more than the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.errors import ApiError
from api.metrics import Metrics
from api.runtime import Runtime
from api.security import Principal, require_scope
from api.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(
            503, "The server is still loading the catalogue and models; retry shortly.", "not_ready"
        )
    return runtime


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReadAccess = Annotated[Principal, Depends(require_scope("read"))]
WriteAccess = Annotated[Principal, Depends(require_scope("write"))]
