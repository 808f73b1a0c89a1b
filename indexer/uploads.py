"""One uploaded file: validate, keep a copy in the data directory, embed and commit it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.decode import decode_media
from indexer.sources import MediaRef
from retrieval.errors import UnsupportedMediaError
from retrieval.fsutil import atomic_write_bytes
from retrieval.media.sniff import sniff
from retrieval.modality import Modality
from retrieval.store import ItemRecord, NewItem

if TYPE_CHECKING:
    from indexer.pipeline import Ingestor

_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
        "image/bmp": ".bmp", "image/tiff": ".tif", "audio/wav": ".wav", "audio/flac": ".flac",
        "audio/ogg": ".ogg", "audio/mpeg": ".mp3"}


def add_upload(ing: Ingestor, data: bytes, filename: str, *, captions: list[str],
               attrs: dict[str, Any]) -> ItemRecord:
    """Index one uploaded file; searchable when this returns. The same bytes twice are one item."""
    from indexer.pipeline import text_hash

    kind = sniff(data[:64], filename)
    if kind is None or kind[0] == Modality.TEXT:
        raise UnsupportedMediaError(
            f"{Path(filename).name or 'upload'}: not a supported image or audio file "
            "(JPEG, PNG, GIF, WebP, BMP, TIFF, WAV, FLAC, OGG, MP3)."
        )
    modality, mime = kind
    if len(data) > ing.limits.max_bytes(modality):
        from retrieval.errors import MediaTooLargeError

        raise MediaTooLargeError(f"Upload of {len(data)} bytes exceeds the {modality} limit.")
    digest = hashlib.sha256(data).hexdigest()
    dest = ing.catalogue.data_dir / "media" / digest[:2] / f"{digest}{_EXT.get(mime, '')}"
    decoded = decode_media(data, MediaRef(modality, dest, mime), ing.limits)  # validate first
    if not dest.exists():
        atomic_write_bytes(dest, data)
    key = f"upload:{digest}"
    safe_name = Path(filename).name[:255]
    item = NewItem(key=key, modality=str(modality), content_hash=digest, vector=None,  # type: ignore[arg-type]
                   path=str(dest), mime=mime, size_bytes=len(data), width=decoded.width,
                   height=decoded.height, duration=decoded.duration,
                   attrs={**attrs, "filename": safe_name}, source="upload")
    if modality == Modality.AUDIO:
        d = ing.encoder.describe_audio([decoded.payload])[0]
        item.vector, item.tokens, item.segments, item.text = d.vector, d.tokens, d.segments, d.transcript
    else:
        vecs, toks = ing.encoder.encode_with_tokens(modality, [decoded.payload])
        item.vector, item.tokens = vecs[0], None if toks is None else toks[0]
    caps = [c.strip() for c in captions if c and c.strip()]
    cap_items = [NewItem(key=f"{key}#caption:{text_hash(c)[:16]}", modality="text",
                         content_hash=text_hash(c), vector=v, text=c,
                         attrs={"caption_of": key}, source="upload")
                 for c, v in zip(caps, ing.encoder.encode_texts(caps) if caps else [], strict=True)]
    stored = ing.catalogue.store.existing([key] + [c.key for c in cap_items])
    new = [it for it in [item, *cap_items] if stored.get(it.key) != it.content_hash]
    ing.catalogue.write(new, [(key, c.key, "caption") for c in cap_items])
    record = ing.catalogue.store.get_by_key(key)
    assert record is not None
    return record
