"""Plain records passed in and out of the store (no ORM objects leave it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ItemRecord:
    id: int
    key: str
    modality: str
    path: str | None
    content_hash: str
    mime: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    text: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    linked: list[int] = field(default_factory=list)  # caption ids of media, media ids of a caption


@dataclass
class NewItem:
    """An encoded item ready to be written; `vector` float32 (dim,)."""

    key: str
    modality: str
    content_hash: str
    vector: np.ndarray
    path: str | None = None
    mime: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    text: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    tokens: np.ndarray | None = None  # (n_tokens, token_dim), stored fp16
    segments: list[tuple[float, float, np.ndarray]] = field(default_factory=list)


@dataclass
class WriteResult:
    added: dict[str, int]  # key -> new id, by modality via `modalities`
    modalities: dict[int, str]
    removed: dict[int, str]  # ids replaced or deleted -> modality
