"""One uploaded file: validate, keep a copy in the data directory, then a one-entry batch through
the same stages as ingestion (decode -> embed -> write).

Two steps so a server can keep the expensive part off its write lock: `prepare_upload` (validate,
decode, embed, copy the file; touches no index) runs alongside searches, `commit_upload` (store
write + index add) is the short part that must exclude them. `add_upload` does both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.pipeline import Ingestor
from indexer.rows import media_item, text_hash, text_item
from retrieval.errors import MediaTooLargeError, StorageFullError, UnsupportedMediaError
from retrieval.fsutil import atomic_write_bytes, is_disk_full
from retrieval.media.decode import MediaRef, decode_media
from retrieval.media.sniff import sniff
from retrieval.modality import Modality
from retrieval.store import ItemRecord, NewItem

_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "audio/wav": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
}


@dataclass
class PreparedUpload:
    """An upload decoded and embedded, its file kept; nothing in the store or indexes yet."""

    item: NewItem
    captions: list[NewItem]


def add_upload(
    ing: Ingestor,
    data: bytes,
    filename: str,
    *,
    captions: list[str] | tuple[str, ...] = (),
    attrs: dict[str, Any] | None = None,
) -> ItemRecord:
    """Index one uploaded file; searchable when this returns. The same bytes twice are one item."""
    return commit_upload(ing, prepare_upload(ing, data, filename, captions=captions, attrs=attrs))


def prepare_upload(
    ing: Ingestor,
    data: bytes,
    filename: str,
    *,
    captions: list[str] | tuple[str, ...] = (),
    attrs: dict[str, Any] | None = None,
) -> PreparedUpload:
    """Validate, decode and embed the file and its captions, and keep a copy of the file.
    Repeated captions count once (first position kept). A full disk raises StorageFullError."""
    kind = sniff(data[:64], filename)
    if kind is None or kind[0] == Modality.TEXT:
        raise UnsupportedMediaError(
            f"{Path(filename).name or 'upload'}: not a supported image or audio file "
            "(JPEG, PNG, GIF, WebP, BMP, TIFF, WAV, FLAC, OGG, MP3)."
        )
    modality, mime = kind
    if len(data) > ing.limits.max_bytes(modality):
        raise MediaTooLargeError(f"Upload of {len(data)} bytes exceeds the {modality} limit.")
    digest = hashlib.sha256(data).hexdigest()
    dest = ing.catalogue.data_dir / "media" / digest[:2] / f"{digest}{_EXT.get(mime, '')}"
    decoded = decode_media(data, MediaRef(modality, dest, mime), ing.limits)  # validate first
    key = f"upload:{digest}"
    item = media_item(
        key, decoded, digest, {**(attrs or {}), "filename": Path(filename).name[:255]}, "upload"
    )
    # Two equal captions would be two rows with one key: keep the first of each.
    caps = list(dict.fromkeys(c.strip() for c in captions if c and c.strip()))
    texts = [
        text_item(f"{key}#caption:{text_hash(c)[:16]}", c, {"caption_of": key}, "upload")
        for c in caps
    ]
    ing.encode([(item, decoded)], texts)
    if not dest.exists():
        _keep_copy(dest, data)
    return PreparedUpload(item, texts)


def commit_upload(ing: Ingestor, prepared: PreparedUpload) -> ItemRecord:
    """Write what changed to the store and the indexes (under the catalogue's write lock)."""
    key = prepared.item.key
    texts = prepared.captions
    stored = ing.catalogue.store.existing([key] + [t.key for t in texts])
    new = [it for it in [prepared.item, *texts] if stored.get(it.key) != it.content_hash]
    ing.catalogue.write(new, [(key, t.key, "caption") for t in texts])
    record = ing.catalogue.store.get_by_key(key)
    assert record is not None
    return record


def _keep_copy(dest: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(dest, data)
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFullError(
                f"The disk holding the catalogue's media folder is full ({exc.strerror or exc}): "
                "the upload was not stored. Free some space and upload it again."
            ) from exc
        raise
