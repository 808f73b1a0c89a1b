"""The decode and embed stages as plain functions, so the local pipeline (`Ingestor`, in
threads) and the Ray path (`ray_stages.py`, in tasks and actors on other machines) run the same
code. Decode: read, hash and decode one entry's media under `MediaLimits`. Embed: fill in the
vectors, token sets, segments and transcripts of planned rows."""

from __future__ import annotations

import hashlib

from indexer.rows import media_keys
from indexer.sources import Entry
from retrieval.encoders.base import Encoder
from retrieval.errors import MediaError
from retrieval.media.decode import DecodedMedia, MediaLimits, decode_media
from retrieval.media.files import read_regular_file
from retrieval.modality import Modality
from retrieval.store import NewItem


def decode_entry(
    e: Entry,
    stored: dict[str, str],
    limits: MediaLimits,
    modalities: frozenset[Modality],
    model: str,
) -> list[tuple[str, DecodedMedia, str]] | str:
    """Read, hash and (when new or changed) decode an entry's media; an error string on failure."""
    out = []
    for key, ref in zip(media_keys(e), e.media, strict=True):
        if ref.modality not in modalities:
            return (
                f"{ref.path.name}: model {model!r} has no {ref.modality} "
                "tower; index this catalogue with a model that has one (e.g. --model starter)"
            )
        try:
            data = read_regular_file(
                ref.path,
                limits.max_bytes(ref.modality),
                what=str(ref.modality),
                setting=limits.setting(ref.modality),
            )
        except MediaError as exc:
            return str(exc)
        except OSError as exc:
            return f"{ref.modality} file unreadable: {exc.strerror or exc} ({ref.path})"
        h = hashlib.sha256(data).hexdigest()
        if stored.get(key) == h:
            out.append((key, DecodedMedia.unchanged(ref), h))
            continue
        try:
            out.append((key, decode_media(data, ref, limits), h))
        except Exception as exc:  # noqa: BLE001 - any decoder failure skips this one file
            return f"{ref.path.name}: {type(exc).__name__}: {exc}"
    return out


def encode_rows(
    encoder: Encoder,
    media: list[tuple[NewItem, DecodedMedia]],
    texts: list[NewItem],
    batch_size: int,
) -> None:
    """The embed stage: fill in vectors (and token sets, segments, transcripts) in place."""
    images = [(it, dm) for it, dm in media if dm.modality == Modality.IMAGE]
    if images:
        vecs, tokens = encoder.encode_with_tokens(
            Modality.IMAGE, [dm.payload for _, dm in images], batch_size=batch_size
        )
        for i, ((it, _), v) in enumerate(zip(images, vecs, strict=True)):
            it.vector = v
            it.tokens = None if tokens is None else tokens[i]
    sounds = [(it, dm) for it, dm in media if dm.modality == Modality.AUDIO]
    if sounds:
        described = encoder.describe_audio([dm.payload for _, dm in sounds])
        for (it, _), d in zip(sounds, described, strict=True):
            it.vector, it.tokens, it.segments = d.vector, d.tokens, d.segments
            it.text = d.transcript  # what was said is searchable as text too
    if texts:
        vecs, tokens = encoder.encode_with_tokens(Modality.TEXT, [it.text or "" for it in texts])
        for i, (it, v) in enumerate(zip(texts, vecs, strict=True)):
            it.vector = v
            it.tokens = None if tokens is None else tokens[i]
