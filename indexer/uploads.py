"""One uploaded file: validate, keep a copy in the data directory, then a one-entry batch through
the same stages as ingestion (decode -> embed -> write)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from indexer.pipeline import Ingestor, media_item, text_hash, text_item
from retrieval.errors import MediaTooLargeError, UnsupportedMediaError
from retrieval.fsutil import atomic_write_bytes
from retrieval.media.decode import MediaRef, decode_media
from retrieval.media.sniff import sniff
from retrieval.modality import Modality
from retrieval.store import ItemRecord

_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
        "image/bmp": ".bmp", "image/tiff": ".tif", "audio/wav": ".wav", "audio/flac": ".flac",
        "audio/ogg": ".ogg", "audio/mpeg": ".mp3"}


def add_upload(ing: Ingestor, data: bytes, filename: str, *, captions: list[str] | tuple[str, ...] = (),
               attrs: dict[str, Any] | None = None) -> ItemRecord:
    """Index one uploaded file; searchable when this returns. The same bytes twice are one item."""
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
    if not dest.exists():
        atomic_write_bytes(dest, data)
    key = f"upload:{digest}"
    item = media_item(key, decoded, digest, {**(attrs or {}), "filename": Path(filename).name[:255]},
                      "upload")
    caps = [c.strip() for c in captions if c and c.strip()]
    texts = [text_item(f"{key}#caption:{text_hash(c)[:16]}", c, {"caption_of": key}, "upload")
             for c in caps]
    ing.encode([(item, decoded)], texts)
    stored = ing.catalogue.store.existing([key] + [t.key for t in texts])
    new = [it for it in [item, *texts] if stored.get(it.key) != it.content_hash]
    ing.catalogue.write(new, [(key, t.key, "caption") for t in texts])
    record = ing.catalogue.store.get_by_key(key)
    assert record is not None
    return record
