"""POST /v1/search: text as JSON, or an image/audio file as multipart/form-data."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import ReadAccess, RuntimeDep, SettingsDep
from api.errors import ApiError
from api.forms import read_form
from api.media import load_query_audio, load_query_image
from api.runtime import Runtime
from api.schemas import (
    SEARCH_FORM_MAX_FIELDS,
    SEARCH_MULTIPART_SCHEMA,
    Hit,
    QueryEcho,
    SearchRequest,
    SearchResponse,
    error_responses,
)
from api.settings import Settings
from retrieval.dedup import search_with_collapse
from retrieval.search import Hit as EngineHit
from retrieval.search import Query

router = APIRouter(prefix="/v1", tags=["search"])

_OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": SEARCH_MULTIPART_SCHEMA},
        },
    }
}


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search the catalogue with text, an image or an audio clip",
    description=(
        "Send `application/json` (`SearchRequest`) for a text query, or `multipart/form-data` "
        "with one `image` or `audio` file (plus optional `target`, `k`, `rerank`, `filters` "
        "fields). Results come from the `target` modality's index (`any` merges all), "
        "re-ranked when `rerank` is on. `k` is capped by the server's `max_k` setting."
    ),
    openapi_extra=_OPENAPI_BODY,
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 503, 504),
)
async def search(
    request: Request, principal: ReadAccess, runtime: RuntimeDep, settings: SettingsDep
) -> SearchResponse:
    t0 = time.perf_counter()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        params, query = await _from_json(request, settings)
    elif content_type == "multipart/form-data":
        params, query = await _from_form(request, settings)
    else:
        raise ApiError(
            415,
            "Send application/json (text query) or multipart/form-data (image or audio).",
            "unsupported_content_type",
        )
    t_decode = (time.perf_counter() - t0) * 1e3
    result = await run_in_threadpool(_run_search, runtime, query, params)
    timings = {"decode": round(t_decode, 3)}
    timings.update({k: round(v, 3) for k, v in result.timings_ms.items()})
    timings["total"] = round((time.perf_counter() - t0) * 1e3, 3)
    return SearchResponse(
        results=[_hit(h) for h in result.hits],
        timings_ms=timings,
        query=QueryEcho(
            modality=query.modality.value,
            target=params.target,
            k=params.k,
            rerank=runtime.search.reranker is not None and params.rerank is not False,
            mode=result.query.get("mode", params.mode),
            transcript=result.query.get("transcript"),
        ),
    )


def _run_search(runtime: Runtime, query: Query, params: SearchRequest) -> Any:
    with runtime.lock.read():
        return search_with_collapse(
            runtime.search,
            query,
            collapse_duplicates=params.collapse,
            target=params.target,
            k=params.k,
            rerank=params.rerank,
            filters=params.conditions(),
            mode=params.mode,
        )


def _hit(h: EngineHit) -> Hit:
    has_media = h.modality in ("image", "audio")
    score = float(h.score)
    return Hit(
        id=h.id,
        modality=h.modality,  # type: ignore[arg-type]
        score=score if math.isfinite(score) else 0.0,
        text=h.text,
        attrs=h.attrs,
        mime=h.mime,
        media_url=f"/v1/items/{h.id}/media" if has_media else None,
        thumb_url=f"/v1/items/{h.id}/media?thumb=256" if h.modality == "image" else None,
        segment=getattr(h, "segment", None),
        matched=h.matched,  # type: ignore[arg-type]
    )


def _check_k(params: SearchRequest, settings: Settings) -> SearchRequest:
    if params.k > settings.max_k:
        raise ApiError(
            422,
            f"k={params.k} exceeds the server's limit of {settings.max_k} (CROSSMEDIA_MAX_K).",
            "k_too_large",
        )
    return params


def _check_text(text: str, settings: Settings) -> str:
    if not text.strip():
        raise ApiError(422, "The text query is empty.", "empty_query")
    if len(text) > settings.max_text_chars:
        raise ApiError(
            422,
            f"The text query is longer than {settings.max_text_chars} characters "
            "(CROSSMEDIA_MAX_TEXT_CHARS).",
            "query_too_long",
        )
    return text


async def _from_json(request: Request, settings: Settings) -> tuple[SearchRequest, Query]:
    body = await request.body()
    try:
        params = SearchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, _first_error(exc), "invalid_request") from exc
    return _check_k(params, settings), Query(text=_check_text(params.text, settings))


async def _from_form(request: Request, settings: Settings) -> tuple[SearchRequest, Query]:
    form = await read_form(request, max_files=2, max_fields=SEARCH_FORM_MAX_FIELDS)
    fields: dict[str, Any] = {}
    for name in ("target", "k", "rerank", "mode", "collapse"):
        value = form.get(name)
        if isinstance(value, str) and value != "":
            fields[name] = value
    for name in ("filters", "where"):
        raw = form.get(name)
        if isinstance(raw, str) and raw.strip():
            try:
                fields[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ApiError(
                    422,
                    f'{name} must be a JSON object, e.g. {{"label": "dog"}}.',
                    f"invalid_{name}",
                ) from exc
    files = {n: form.get(n) for n in ("image", "audio")}
    uploads = {n: f for n, f in files.items() if isinstance(f, UploadFile)}
    text = form.get("text")
    given = len(uploads) + (1 if isinstance(text, str) and text else 0)
    if given != 1:
        raise ApiError(
            422, "Send exactly one of: an 'image' file, an 'audio' file or 'text'.", "bad_query"
        )
    try:
        params = SearchRequest.model_validate(
            {"text": text if isinstance(text, str) and text else "-", **fields}
        )
    except ValidationError as exc:
        raise ApiError(422, _first_error(exc), "invalid_request") from exc
    _check_k(params, settings)
    if not uploads:
        assert isinstance(text, str)
        return params, Query(text=_check_text(text, settings))
    name, upload = next(iter(uploads.items()))
    data = await upload.read()
    if not data:
        raise ApiError(422, f"The '{name}' file is empty.", "empty_file")
    if name == "image":
        image = await run_in_threadpool(load_query_image, data, settings)
        return params, Query(image=image)
    audio = await run_in_threadpool(load_query_audio, data, settings)
    return params, Query(audio=audio)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err['msg']}" if where else str(err["msg"])
