"""The OpenAPI schema with this server's limits in it, so the documented constraints are the ones
the runtime enforces (a client generated from the schema is refused for nothing it could not see).

Static limits (caption length, form fields, one query per form) are in `api.schemas`; the ones
that come from settings (`max_k`, `max_text_chars`, `max_captions`, `thumb_sizes`) are written in
here once, when the schema is first built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.settings import Settings


def install_schema_limits(app: FastAPI, settings: Settings) -> None:
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            apply_limits(build(), settings)  # build() caches the dict it returns; edited in place
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def apply_limits(schema: dict[str, Any], settings: Settings) -> None:
    paths = schema.get("paths", {})
    search = paths.get("/v1/search", {}).get("post", {}).get("requestBody", {}).get("content", {})
    bodies = [
        schema.get("components", {}).get("schemas", {}).get("SearchRequest", {}),
        search.get("application/json", {}).get("schema", {}),
        search.get("multipart/form-data", {}).get("schema", {}),
    ]
    for body in bodies:
        props = body.get("properties", {})
        if "k" in props:
            props["k"]["maximum"] = settings.max_k
        if "text" in props:
            props["text"]["maxLength"] = settings.max_text_chars
    upload = paths.get("/v1/items", {}).get("post", {}).get("requestBody", {}).get("content", {})
    form = upload.get("multipart/form-data", {}).get("schema", {})
    if "captions" in form.get("properties", {}):
        form["properties"]["captions"]["maxItems"] = settings.max_captions
    media = paths.get("/v1/items/{item_id}/media", {}).get("get", {})
    for param in media.get("parameters", []):
        if param.get("name") == "thumb":
            for option in param["schema"].get("anyOf", [param["schema"]]):
                if option.get("type") == "integer":
                    option["minimum"], option["maximum"] = settings.thumb_sizes
