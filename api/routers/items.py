"""Items: upload (indexed when the call returns), read, delete, and their media files."""

from __future__ import annotations

import json
import unicodedata
from collections import OrderedDict
from pathlib import Path as FsPath
from pathlib import PurePath
from threading import Lock
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.deps import ReadAccess, RuntimeDep, SettingsDep, WriteAccess
from api.errors import ApiError
from api.forms import multipart_body, read_form
from api.media import check_upload
from api.schemas import UPLOAD_MULTIPART_SCHEMA, Deleted, Item, error_responses
from indexer.uploads import commit_upload, prepare_upload
from retrieval.limits import MAX_TEXT_CHARS
from retrieval.media.image import thumbnail
from retrieval.store import ItemRecord

router = APIRouter(prefix="/v1/items", tags=["items"])

# SQLite integers are signed 64-bit; a larger id can never exist and must not reach the driver.
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Item id.", examples=[17])]

_MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}


def item_out(rec: ItemRecord) -> Item:
    has_media = rec.modality in ("image", "audio") and rec.path is not None
    return Item(
        id=rec.id,
        key=rec.key,
        modality=rec.modality,  # type: ignore[arg-type]
        mime=rec.mime,
        size_bytes=rec.size_bytes,
        width=rec.width,
        height=rec.height,
        duration=rec.duration,
        text=rec.text,
        attrs=rec.attrs,
        linked=list(rec.linked),
        media_url=f"/v1/items/{rec.id}/media" if has_media else None,
        thumb_url=f"/v1/items/{rec.id}/media?thumb=256" if rec.modality == "image" else None,
    )


def _get(runtime: RuntimeDep, item_id: int) -> ItemRecord:
    rec = runtime.catalogue.get_item(item_id)
    if rec is None:
        raise ApiError(404, f"No item with id {item_id}.", "item_not_found")
    return rec


def _parse_captions(values: list[str], limit: int) -> list[str]:
    captions: list[str] = []
    for value in values:
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ApiError(
                    422, "captions: not a valid JSON list of strings.", "invalid_captions"
                ) from exc
            if not isinstance(parsed, list) or not all(isinstance(c, str) for c in parsed):
                raise ApiError(
                    422, "captions: the JSON must be a list of strings.", "invalid_captions"
                )
            captions.extend(parsed)
        elif stripped:
            captions.append(stripped)
    captions = [c.strip() for c in captions if c.strip()]
    if any(len(c) > MAX_TEXT_CHARS for c in captions):
        raise ApiError(
            422,
            f"A caption is longer than {MAX_TEXT_CHARS} characters (the ingestion limit).",
            "caption_too_long",
        )
    if len(captions) > limit:
        raise ApiError(
            422,
            f"At most {limit} captions per item (CROSSMEDIA_MAX_CAPTIONS).",
            "too_many_captions",
        )
    return captions


def _parse_attrs(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        attrs = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(
            422, 'attrs must be a JSON object, e.g. {"label": "dog"}.', "invalid_attrs"
        ) from exc
    if not isinstance(attrs, dict):
        raise ApiError(422, 'attrs must be a JSON object, e.g. {"label": "dog"}.', "invalid_attrs")
    return attrs


def _safe_filename(name: str | None) -> str:
    # The library stores files under content hashes; the name only hints at the type.
    base = PurePath((name or "upload").replace("\\", "/")).name
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ")
    return base[:200] or "upload"


@router.post(
    "",
    status_code=201,
    response_model=Item,
    summary="Upload one media file; it is indexed and searchable when this call returns",
    description=(
        "Multipart form: `file` (an image or audio file), optional `captions` (repeat the field, "
        "or send one JSON list) and `attrs` (a JSON object of filterable attributes). "
        "Uploading the same bytes again returns the existing item."
    ),
    openapi_extra=multipart_body(UPLOAD_MULTIPART_SCHEMA),
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 503, 504, 507),
)
async def upload_item(
    request: Request,
    principal: WriteAccess,
    runtime: RuntimeDep,
    settings: SettingsDep,
    response: Response,
) -> Item:
    form = await read_form(request, max_files=3, max_fields=2 * settings.max_captions + 10)
    file = form.get("file")
    if not isinstance(file, UploadFile) or len(form.getlist("file")) != 1:
        raise ApiError(422, "The form needs one 'file' field with the media file.", "missing_file")
    captions = form.getlist("captions")
    attrs = form.get("attrs")
    if not all(isinstance(v, str) for v in captions):
        raise ApiError(422, "captions: send text fields, not files.", "invalid_captions")
    if attrs is not None and not isinstance(attrs, str):
        raise ApiError(422, "attrs: send a text field, not a file.", "invalid_attrs")
    caption_list = _parse_captions([str(v) for v in captions], settings.max_captions)
    attr_dict = _parse_attrs(attrs)
    data = await file.read()
    filename = _safe_filename(file.filename)
    check_upload(data, filename)

    def ingest() -> ItemRecord:
        # Decode and embed alongside searches; only the store + index write excludes them.
        prepared = prepare_upload(
            runtime.ingestor, data, filename, captions=caption_list, attrs=attr_dict
        )
        with runtime.writing(settings.write_lock_timeout_s):
            return commit_upload(runtime.ingestor, prepared)

    rec = await run_in_threadpool(ingest)
    response.headers["Location"] = f"/v1/items/{rec.id}"
    return item_out(rec)


@router.get(
    "/{item_id}",
    response_model=Item,
    summary="One item's metadata",
    responses=error_responses(401, 403, 404, 422, 429),
)
async def get_item(item_id: ItemId, principal: ReadAccess, runtime: RuntimeDep) -> Item:
    return item_out(await run_in_threadpool(_get, runtime, item_id))


@router.delete(
    "/{item_id}",
    response_model=Deleted,
    summary="Delete an item (and captions that describe only it) from the store and indexes",
    responses=error_responses(401, 403, 404, 422, 429, 503, 507),
)
async def delete_item(
    item_id: ItemId, principal: WriteAccess, runtime: RuntimeDep, settings: SettingsDep
) -> Deleted:
    def delete() -> bool:
        with runtime.writing(settings.write_lock_timeout_s):
            return runtime.catalogue.delete_item(item_id)

    if not await run_in_threadpool(delete):
        raise ApiError(404, f"No item with id {item_id}.", "item_not_found")
    return Deleted(id=item_id)


class _ThumbCache:
    """A small LRU of rendered thumbnails; keyed by content hash so a replaced file misses."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._data: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, int], value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)


_thumbs = _ThumbCache()


@router.get(
    "/{item_id}/media",
    summary="The item's file (supports HTTP Range); `?thumb=N` for a JPEG thumbnail of an image",
    response_class=FileResponse,
    responses={
        200: {"description": "The file.", "content": {"image/*": {}, "audio/*": {}}},
        206: {
            "description": "Partial content for a Range request.",
            "content": {"image/*": {}, "audio/*": {}},
        },
        **error_responses(400, 401, 403, 404, 416, 422, 429),
    },
)
async def get_media(
    request: Request,
    item_id: ItemId,
    principal: ReadAccess,
    runtime: RuntimeDep,
    settings: SettingsDep,
    thumb: Annotated[
        int | None, Query(ge=1, le=4096, description="Longest side of a JPEG thumbnail (px).")
    ] = None,
) -> Response:
    rec = await run_in_threadpool(_get, runtime, item_id)
    path: FsPath | None = runtime.catalogue.media_path(rec, extra_roots=settings.media_roots)
    if path is None:
        raise ApiError(404, f"Item {item_id} ({rec.modality}) has no media file.", "no_media")
    if thumb is not None:
        lo, hi = settings.thumb_sizes
        if rec.modality != "image":
            raise ApiError(422, "Thumbnails exist only for images.", "no_thumbnail")
        if not lo <= thumb <= hi:
            raise ApiError(422, f"thumb must be between {lo} and {hi}.", "bad_thumb_size")
        key = (rec.content_hash, thumb)
        body = _thumbs.get(key)
        if body is None:
            body = await run_in_threadpool(thumbnail, path, thumb)
            _thumbs.put(key, body)
        return Response(body, media_type="image/jpeg", headers=_MEDIA_HEADERS)
    size = path.stat().st_size
    range_header = request.headers.get("range")
    if range_header is not None:
        # Same parser FileResponse uses, run first so errors get the JSON error shape.
        try:
            FileResponse._parse_range_header(range_header, size)
        except MalformedRangeHeader as exc:
            raise ApiError(400, f"Malformed Range header: {exc.content}", "bad_range") from exc
        except RangeNotSatisfiable as exc:
            raise ApiError(
                416,
                f"Range not satisfiable for a file of {size} bytes.",
                headers={"Content-Range": f"bytes */{size}"},
            ) from exc
    return FileResponse(
        path,
        media_type=rec.mime or "application/octet-stream",
        headers=_MEDIA_HEADERS,
        content_disposition_type="inline",
    )
