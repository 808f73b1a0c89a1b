"""Request and response bodies of the v1 API, with the examples shown in the OpenAPI docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.errors import ErrorResponse
from retrieval.limits import MAX_TEXT_CHARS

Target = Literal["any", "image", "text", "audio"]
Mode = Literal["vector", "lexical", "hybrid"]
FilterOp = Literal["=", "!=", "<", "<=", ">", ">=", "in"]
ModalityName = Literal["image", "text", "audio"]
AttrValue = str | int | float | bool
# An attribute name the engine's filters accept (retrieval.filters): word characters only.
FilterField = Annotated[str, StringConstraints(pattern=r"^(attrs\.)?\w+$")]

MAX_K_SCHEMA = 1000  # hard schema bound; the server's max_k setting (default 100) is stricter
SEARCH_FORM_MAX_FIELDS = 10  # text fields of a multipart search; more is a 400


class SearchRequest(BaseModel):
    """A text query as JSON. Image and audio queries are sent as multipart/form-data instead."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "a dog running on the beach", "target": "image", "k": 10},
                {"text": "birds singing", "target": "audio", "k": 5, "rerank": False},
                {"text": "cat", "target": "any", "k": 20, "filters": {"label": "cat"}},
            ]
        },
    )

    text: str = Field(min_length=1, max_length=10_000, description="The query text.")
    target: Target = Field("any", description="Modality of the results; 'any' merges all.")
    k: int = Field(10, ge=1, le=MAX_K_SCHEMA, description="Number of results (<= max_k).")
    rerank: bool | None = Field(
        None,
        description="Re-rank the top candidates with the cross-attention re-ranker "
        "(default: on when the server has a re-ranker).",
    )
    filters: dict[FilterField, AttrValue] = Field(
        default_factory=dict, description="Keep only items whose attrs equal these values."
    )
    mode: Mode | None = Field(
        None,
        description="vector, lexical or hybrid (default: hybrid when the query has words, i.e. a "
        "text query or a spoken query in which speech was heard; else vector).",
    )
    collapse: bool = Field(
        False,
        description="Collapse near-duplicates to their best hit: items that ingestion marked with "
        "`attrs.duplicate_of` (`crossmedia index --mark-duplicates`) count once.",
    )
    where: dict[FilterField, AttrValue | dict[FilterOp, AttrValue | list[AttrValue]]] = Field(
        default_factory=dict,
        description="Filters on columns (modality, source, mime, path, duration, width, height, "
        "size_bytes, created_at) or attributes: a value (equality) or operators, e.g. "
        '{"duration": {">=": 2, "<": 10}, "label": {"in": ["cat", "dog"]}}.',
    )

    def conditions(self) -> dict[str, Any] | None:
        """`filters` (equality) and `where` as one filter mapping for the engine."""
        out: dict[str, Any] = {k: {"=": v} for k, v in self.filters.items()}
        for key, cond in self.where.items():
            out.setdefault(key, {}).update(cond if isinstance(cond, dict) else {"=": cond})
        return out or None


SEARCH_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An image or audio query (exactly one file), or a text field.",
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "Query image."},
        "audio": {"type": "string", "format": "binary", "description": "Query audio clip."},
        "text": {"type": "string", "description": "Query text (when no file is sent)."},
        "target": {"type": "string", "enum": ["any", "image", "text", "audio"], "default": "any"},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K_SCHEMA, "default": 10},
        "rerank": {"type": "boolean"},
        "filters": {"type": "string", "description": 'JSON object, e.g. {"label": "dog"}.'},
        "where": {"type": "string", "description": 'JSON object, e.g. {"duration": {">=": 2}}.'},
        "mode": {"type": "string", "enum": ["vector", "lexical", "hybrid"]},
    },
    # Exactly one query: an image, an audio clip or a text (any two together are a 422).
    "oneOf": [{"required": ["image"]}, {"required": ["audio"]}, {"required": ["text"]}],
    "maxProperties": SEARCH_FORM_MAX_FIELDS,
}


UPLOAD_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The image or audio file."},
        "captions": {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_TEXT_CHARS},
            "description": 'Caption texts: repeat the field, or send one JSON list ["a", "b"]. '
            "Repeated texts are stored once.",
        },
        "attrs": {
            "type": "string",
            "description": 'Filterable attributes as a JSON object, e.g. {"label": "dog"}.',
            "example": '{"label": "dog"}',
        },
    },
}


class Match(BaseModel):
    id: int = Field(description="The caption's (or the recording's own) item id.")
    text: str | None
    channel: Literal["vector", "caption", "lexical", "transcript"]
    score: float


class Hit(BaseModel):
    id: int
    modality: ModalityName
    score: float
    text: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    mime: str | None = None
    media_url: str | None = Field(None, description="The item's file (images and audio).")
    thumb_url: str | None = Field(None, description="A JPEG thumbnail (images only).")
    segment: dict[str, float] | None = Field(
        None,
        description="For long audio: where the query matched best (offset_s, duration_s, score).",
    )
    matched: list[Match] = Field(
        default_factory=list,
        description="Why a media item matched: its captions or transcript found by a channel.",
    )


class QueryEcho(BaseModel):
    modality: ModalityName
    target: Target
    k: int
    rerank: bool = Field(description="Whether the results were re-ranked.")
    mode: Mode | None = Field(None, description="The search mode the query ran in.")
    transcript: str | None = Field(None, description="What was heard in a spoken query.")


class SearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "id": 17,
                            "modality": "image",
                            "score": 0.31,
                            "text": None,
                            "attrs": {"source": "coco"},
                            "mime": "image/jpeg",
                            "media_url": "/v1/items/17/media",
                            "thumb_url": "/v1/items/17/media?thumb=256",
                        }
                    ],
                    "timings_ms": {
                        "decode": 0.0,
                        "encode": 4.1,
                        "ann": 0.3,
                        "rerank": 9.8,
                        "total": 15.2,
                    },
                    "query": {"modality": "text", "target": "image", "k": 10, "rerank": True},
                }
            ]
        }
    )

    results: list[Hit]
    timings_ms: dict[str, float]
    query: QueryEcho


class Item(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "key": "upload:3f2a9c",
                    "modality": "image",
                    "mime": "image/jpeg",
                    "size_bytes": 48213,
                    "width": 384,
                    "height": 256,
                    "duration": None,
                    "text": None,
                    "attrs": {"label": "dog"},
                    "linked": [18, 19],
                    "media_url": "/v1/items/17/media",
                    "thumb_url": "/v1/items/17/media?thumb=256",
                }
            ]
        }
    )

    id: int
    key: str
    modality: ModalityName
    mime: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    text: str | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    linked: list[int] = Field(
        default_factory=list,
        description="Caption ids of a media item, or the media ids of a caption.",
    )
    media_url: str | None = None
    thumb_url: str | None = None


class Deleted(BaseModel):
    id: int
    deleted: Literal[True] = True


class Stats(BaseModel):
    model_config = ConfigDict(extra="allow")

    counts: dict[str, int]
    model: str
    reranker: bool = Field(description="Whether a re-ranker is loaded (`rerank` has effect).")
    info: dict[str, Any] = Field(default_factory=dict)
    limits: dict[str, Any] = Field(default_factory=dict)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        "ready",
        description='"degraded": searches work, but the index files lag the store in a way only '
        "a writer can fix (e.g. a repair could not be saved on a full disk); see `reason`.",
    )
    counts: dict[str, int]
    reason: str | None = None


def json_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`error_responses` for an operation whose success is not JSON: FastAPI would document a
    model-only entry in the operation's own media type, but errors are always JSON."""
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    return {
        s: {"description": entry["description"], "content": {"application/json": {"schema": ref}}}
        for s, entry in error_responses(*statuses).items()
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses an operation can return."""
    text = {
        400: "Malformed request.",
        401: "Missing or unknown API key.",
        403: "The API key lacks the needed scope.",
        404: "No such item.",
        409: "The catalogue was built in another embedding space.",
        413: "Body, file, image or audio over a limit.",
        415: "Not a supported media type.",
        416: "Range not satisfiable.",
        422: "Invalid parameters or media.",
        429: "Rate limit exceeded; see Retry-After.",
        503: "Model or catalogue unavailable, or another process is writing to the catalogue "
        "(then with Retry-After).",
        504: "Request timed out.",
        507: "The disk holding the catalogue is full; nothing was stored.",
    }
    return {s: {"model": ErrorResponse, "description": text.get(s, "Error.")} for s in statuses}
