"""What ingestion writes, and how it reports: the rows of media and text items, the keys an
entry owns in the store, the batches it is written in, and the report of a run. Shared by the
pipeline and uploads (an upload is a one-entry batch through the same stages)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from indexer.sources import Entry
from retrieval.media.decode import DecodedMedia
from retrieval.store import NewItem


@dataclass
class IngestReport:
    source: str
    added: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    replaced: int = 0
    removed_captions: int = 0  # captions an entry no longer has
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    warnings: list[tuple[str, str]] = field(
        default_factory=list
    )  # (where, message): indexed, changed
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "decode": 0.0, "encode": 0.0, "write": 0.0}
    )
    entries: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "entries": self.entries,
            "added": self.added,
            "unchanged": self.unchanged,
            "replaced": self.replaced,
            "removed_captions": self.removed_captions,
            "failed": [{"where": w, "reason": r} for w, r in self.failed],
            "warnings": [{"where": w, "message": m} for w, m in self.warnings],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def media_item(
    key: str, dm: DecodedMedia, content_hash: str, attrs: dict[str, Any], source: str
) -> NewItem:
    """The row of a decoded media file; its vector comes from `Ingestor.encode`."""
    return NewItem(
        key=key,
        modality=str(dm.modality),
        content_hash=content_hash,
        vector=None,  # type: ignore[arg-type]
        path=str(dm.path) if dm.path else None,
        mime=dm.mime,
        size_bytes=dm.size_bytes,
        width=dm.width,
        height=dm.height,
        duration=dm.duration,
        attrs=attrs,
        source=source,
    )


def text_item(key: str, text: str, attrs: dict[str, Any], source: str) -> NewItem:
    return NewItem(
        key=key,
        modality="text",
        content_hash=text_hash(text),
        vector=None,  # type: ignore[arg-type]
        text=text,
        attrs=attrs,
        source=source,
    )


def media_keys(e: Entry) -> list[str]:
    if len(e.media) <= 1:
        return [e.key] * len(e.media)
    # An entry with both an image and a sound: the image keeps the id, the sound gets a suffix.
    return [e.key if i == 0 else f"{e.key}#{ref.modality}" for i, ref in enumerate(e.media)]


def entry_keys(e: Entry) -> list[str]:
    keys = media_keys(e) + [f"{e.key}#caption{i}" for i in range(len(e.captions))]
    if e.text is not None and not e.media:
        keys.append(e.key)
    return keys


def batches(it: Iterator[Entry], n: int) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    for e in it:
        batch.append(e)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
