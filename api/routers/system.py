"""Health, readiness, catalogue statistics and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from api.deps import MetricsDep, ReadAccess, RuntimeDep, SettingsDep
from api.errors import ApiError
from api.eval_metrics import eval_metric_lines
from api.schemas import Health, Ready, Stats, error_responses, json_error_responses
from retrieval.catalogue_check import describe
from retrieval.live_eval import load_last_eval

router = APIRouter(tags=["system"])

_PUBLIC_LIMITS = (
    "max_body_bytes",
    "max_k",
    "max_image_bytes",
    "max_image_pixels",
    "max_audio_bytes",
    "max_audio_seconds",
    "max_text_chars",
    "max_captions",
    "request_timeout_s",
    "rate_limit_per_minute",
    "rate_limit_burst",
)


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: catalogue open and models loaded (status `degraded` with a reason when "
    "index repairs could not be saved, e.g. on a full disk; searches still work)",
    responses=error_responses(503),
)
async def readyz(request: Request) -> Ready:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(
            503, "The server is still loading the catalogue and models; retry shortly.", "not_ready"
        )
    counts = await run_in_threadpool(runtime.catalogue.counts)
    # Still 200: searches work from memory, so taking the server out of rotation would only
    # lose reads; monitoring reads `status` (and /v1/stats `info.degraded`).
    reason = runtime.catalogue.degraded
    return Ready(status="degraded" if reason else "ready", counts=counts, reason=reason)


@router.get(
    "/v1/stats",
    response_model=Stats,
    summary="Catalogue statistics: counts per modality, embedding space, indexes, limits",
    responses=error_responses(401, 403, 429),
)
async def stats(principal: ReadAccess, runtime: RuntimeDep, settings: SettingsDep) -> Stats:
    info: dict[str, Any] = await run_in_threadpool(describe, runtime.catalogue)
    # Server paths and DB URLs are operator details, not something API clients need.
    public = {k: v for k, v in info.items() if k not in ("data_dir", "db", "counts")}
    public["last_eval"] = load_last_eval(runtime.catalogue.data_dir)  # `crossmedia eval`
    return Stats(
        counts=info.get("counts") or runtime.catalogue.counts(),
        model=runtime.encoder.space.model,
        reranker=runtime.search.reranker is not None,
        info=public,
        limits={k: getattr(settings, k) for k in _PUBLIC_LIMITS},
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (text exposition format)",
    responses={
        200: {"content": {"text/plain": {"example": 'crossmedia_items{modality="image"} 239\n'}}},
        **json_error_responses(401, 403, 429),
    },
)
async def metrics(
    request: Request, principal: ReadAccess, metrics: MetricsDep
) -> PlainTextResponse:
    runtime = getattr(request.app.state, "runtime", None)
    counts = await run_in_threadpool(runtime.catalogue.counts) if runtime is not None else None
    last = load_last_eval(runtime.catalogue.data_dir) if runtime is not None else None
    return PlainTextResponse(
        metrics.render(counts) + eval_metric_lines(last),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
