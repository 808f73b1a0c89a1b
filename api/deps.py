"""Annotated dependencies shared by the routers. Tests swap these through
`app.dependency_overrides`, never by patching module globals.

They are `async` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and for
these attribute lookups the thread hop would cost more than the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.engine import Engine
from api.errors import ApiError
from api.metrics import Metrics
from api.security import Principal, require_scope
from api.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError(503, "The engine is not loaded yet; retry shortly.", "not_ready")
    return engine


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReadAccess = Annotated[Principal, Depends(require_scope("read"))]
WriteAccess = Annotated[Principal, Depends(require_scope("write"))]
