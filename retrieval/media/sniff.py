"""Recognise a file's modality and MIME type from its first bytes, not its extension."""

from __future__ import annotations

from pathlib import Path

from retrieval.modality import Modality

_IMAGE_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
]
_AUDIO_MAGIC: list[tuple[bytes, int, str]] = [
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
    (b"ID3", 0, "audio/mpeg"),
]
_TEXT_SUFFIXES = {".txt", ".md"}
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff(head: bytes, name: str = "") -> tuple[Modality, str] | None:
    """(modality, mime) for a file's first 64 bytes, or None when it is not media we index."""
    for magic, offset, mime in _IMAGE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return Modality.IMAGE, mime
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return Modality.IMAGE, "image/bmp"  # "BM" alone also starts plenty of text files
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Modality.IMAGE, "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Modality.AUDIO, "audio/wav"
    for magic, offset, mime in _AUDIO_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return Modality.AUDIO, mime
    # Text by name before the MPEG frame sync: a UTF-16 byte order mark (FF FE) looks like one.
    if Path(name).suffix.lower() in _TEXT_SUFFIXES:
        return Modality.TEXT, "text/plain"
    if (
        len(head) >= 3
        and head[0] == 0xFF
        and (head[1] & 0xE0) == 0xE0
        and (head[1] & 0x06)
        and (head[1] >> 3) & 3 != 1
        and head[2] >> 4 != 15
        and (head[2] >> 2) & 3 != 3
    ):
        return Modality.AUDIO, "audio/mpeg"  # MPEG audio frame header without an ID3 tag
    return None


def sniff_file(path: Path) -> tuple[Modality, str] | None:
    with Path(path).open("rb") as f:
        return sniff(f.read(64), path.name)
