"""Bounded reads of media and text files: regular files only, never more than limit + 1 bytes.

A path from a manifest or a folder walk may name a device (`/dev/zero` never ends), a FIFO (an
open for reading waits for a writer forever) or a directory. Every ingestion read goes through
here: the file is opened with O_NONBLOCK (so a FIFO cannot hang the open), checked with fstat on
the opened descriptor (so a swap between check and open cannot slip a device in), and read with a
bound.
"""

from __future__ import annotations

import codecs
import os
import stat
from pathlib import Path

from retrieval.errors import MediaError, MediaTooLargeError

_CHUNK = 1024 * 1024
_KINDS = [
    (stat.S_ISDIR, "directory"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
]


class NotRegularFileError(MediaError):
    """The path names a device, FIFO, socket or directory, not a file with a known size."""


def file_kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "regular file" if stat.S_ISREG(mode) else "special file"


def _open_regular(path: Path) -> tuple[int, int]:
    """(fd, size) of a regular file opened for reading; the caller closes fd."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(
                f"{path}: not a regular file ({file_kind(st.st_mode)}); only regular files are indexed"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def _read_upto(fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_regular_file(
    path: Path | str, max_bytes: int, *, what: str = "file", setting: str = "the size limit"
) -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes.

    A larger file is refused from its size before reading, and again if it grew while read (at
    most `max_bytes + 1` bytes are ever read). Raises NotRegularFileError, MediaTooLargeError,
    or OSError (missing, permission denied).
    """
    path = Path(path)
    fd, size = _open_regular(path)
    try:
        data = b"" if size > max_bytes else _read_upto(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if size > max_bytes or len(data) > max_bytes:
        raise MediaTooLargeError(
            f"{path.name}: file is larger than the {what} limit of {max_bytes} bytes; raise {setting} "
            "to index it"
        )
    return data


def read_head(path: Path | str, n: int = 64) -> tuple[bytes, int]:
    """(first `n` bytes, size) of a regular file: enough to sniff its type."""
    fd, size = _open_regular(Path(path))
    try:
        return _read_upto(fd, n), size
    finally:
        os.close(fd)


def read_text_file(path: Path | str, max_chars: int) -> tuple[str, bool]:
    """(text, truncated) of a UTF-8 text file, reading at most `max_chars * 4 + 1` bytes.

    Longer text is cut to `max_chars` characters (`truncated` is True). Raises MediaError naming
    the first byte that is not UTF-8, NotRegularFileError, or OSError.
    """
    path = Path(path)
    bound = max_chars * 4  # UTF-8 needs at most 4 bytes per character
    fd, _ = _open_regular(path)
    try:
        data = _read_upto(fd, bound + 1)
    finally:
        os.close(fd)
    more = len(data) > bound
    try:
        # Not final when cut: a character split by the bound is dropped, not an error.
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(data[:bound], final=not more)
    except UnicodeDecodeError as exc:
        raise MediaError(
            f"not UTF-8 text ({describe_decode_error(exc)}); save it as UTF-8"
        ) from exc
    if more or len(text) > max_chars:
        return text[:max_chars], True
    return text, False


def describe_decode_error(exc: UnicodeDecodeError) -> str:
    """'byte 0xe9 at column 4' (1-based) for the first byte that is not UTF-8."""
    bad = exc.object[exc.start] if exc.start < len(exc.object) else 0
    return f"byte 0x{bad:02x} at column {exc.start + 1}"
