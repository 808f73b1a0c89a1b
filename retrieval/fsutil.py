"""Crash-safe file writes: temp file in the same folder, fsync, atomic rename, fsync the folder."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic there
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files an interrupted atomic write left behind. Only the holder of the data
    directory's write lock may call this: anyone else could delete a live writer's temp file."""
    n = 0
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def is_disk_full(exc: BaseException) -> bool:
    """An OSError or a database error that means the disk (or quota) is full."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left" in text or "disk is full" in text or "disk full" in text


def low_on_space(folder: Path, margin: int = 1 << 20) -> bool:
    """Less than `margin` bytes free where `folder` lives (a vague 'disk I/O error' then most
    likely means a full disk)."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


QUICK_SPAN = 1 << 20  # bytes hashed at each end of a large file by quick_sha256


def quick_sha256_file(path: Path) -> str:
    """A cheap fingerprint of a large file: its size and its first and last MiB. It catches
    truncation, a torn write and a swapped file; `sha256_file` catches the rest (`crossmedia
    verify`)."""
    size = Path(path).stat().st_size
    h = hashlib.sha256(str(size).encode())
    with Path(path).open("rb") as f:
        h.update(f.read(QUICK_SPAN))
        f.seek(max(0, size - QUICK_SPAN))
        h.update(f.read(QUICK_SPAN))
    return h.hexdigest()


def atomic_write_via(path: Path, write: Callable[[str], None]) -> None:
    """Like atomic_write_bytes, for a writer that takes a file name (e.g. faiss.write_index,
    which streams a large index without a copy in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            write(tmp)
        except RuntimeError as exc:  # FAISS reports a short write as a RuntimeError
            if low_on_space(path.parent, margin=64 << 20):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
            raise
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
