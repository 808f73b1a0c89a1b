"""Multipart bodies read inside the handlers, after authentication.

FastAPI parses declared Form/File parameters before it runs any dependency, so an anonymous
client could make the server spool a whole upload before hearing 401. Reading the form in the
handler puts the key check first; the OpenAPI schema is then declared by hand (`openapi_extra`).
"""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import ApiError


def multipart_body(schema: dict[str, object], required: bool = True) -> dict[str, object]:
    return {
        "requestBody": {
            "required": required,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


async def read_form(request: Request, *, max_files: int, max_fields: int) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ApiError(415, "Send multipart/form-data.", "unsupported_content_type")
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException:
        raise  # includes the 413 raised while streaming an oversized body
    except Exception as exc:  # the multipart parser raises several unrelated types
        raise ApiError(400, f"Malformed multipart body: {exc}", "bad_multipart") from exc
