"""Append-only delta files: what changed in an index since its base file was written.

A write appends one record per change (ids added with their vectors, or ids removed) and fsyncs;
`index_info.json` then records the committed length. Bytes past that length are a write that
never committed (a crash between the two) and are cut off by the next append. Each record carries
its own CRC-32, so a torn or corrupted record is detected when the delta is read.

Record layout (little-endian): magic b"CMD1", kind u8 (1 add, 2 remove), n u32, dim u32,
ids int64[n], vectors float32[n * dim] (adds only), crc32 u32 of everything before it.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"CMD1"
ADD, REMOVE = 1, 2
_HEAD = struct.Struct("<4sBII")
_CRC = struct.Struct("<I")


class DeltaCorrupt(ValueError):
    """A delta record failed its checksum or was cut short."""


@dataclass(frozen=True)
class DeltaOp:
    kind: int  # ADD or REMOVE
    ids: np.ndarray  # int64 (n,)
    vectors: np.ndarray | None  # float32 (n, dim) for ADD

    @classmethod
    def add(cls, ids: np.ndarray, vectors: np.ndarray) -> DeltaOp:
        return cls(ADD, np.asarray(ids, np.int64), np.asarray(vectors, np.float32))

    @classmethod
    def remove(cls, ids: np.ndarray) -> DeltaOp:
        return cls(REMOVE, np.asarray(ids, np.int64), None)


def encode(op: DeltaOp) -> bytes:
    n = len(op.ids)
    dim = 0 if op.vectors is None else op.vectors.shape[1]
    body = _HEAD.pack(MAGIC, op.kind, n, dim) + np.ascontiguousarray(op.ids, "<i8").tobytes()
    if op.vectors is not None:
        body += np.ascontiguousarray(op.vectors, "<f4").tobytes()
    return body + _CRC.pack(zlib.crc32(body))


def append(path: Path, committed: int, ops: list[DeltaOp]) -> int:
    """Cut `path` to its `committed` length, append `ops`, fsync; returns the new length.
    The caller records that length (and only then are the ops committed)."""
    data = b"".join(encode(op) for op in ops)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, committed)
        os.lseek(fd, committed, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return committed + len(data)


def read(path: Path, start: int, end: int) -> list[DeltaOp]:
    """The records between byte offsets `start` and `end` (a committed length), checked."""
    if end <= start:
        return []
    with Path(path).open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise DeltaCorrupt(f"{path.name} is shorter ({start + len(data)} bytes) than recorded")
    ops, pos = [], 0
    while pos < len(data):
        op, pos = _decode_at(data, pos, path.name)
        ops.append(op)
    return ops


def _decode_at(data: bytes, pos: int, name: str) -> tuple[DeltaOp, int]:
    if pos + _HEAD.size > len(data):
        raise DeltaCorrupt(f"{name}: a record is cut short at byte {pos}")
    magic, kind, n, dim = _HEAD.unpack_from(data, pos)
    size = _HEAD.size + 8 * n + 4 * n * dim
    if magic != MAGIC or kind not in (ADD, REMOVE) or pos + size + _CRC.size > len(data):
        raise DeltaCorrupt(f"{name}: no valid record at byte {pos}")
    (crc,) = _CRC.unpack_from(data, pos + size)
    if zlib.crc32(data[pos : pos + size]) != crc:
        raise DeltaCorrupt(f"{name}: the record at byte {pos} fails its checksum")
    at = pos + _HEAD.size
    ids = np.frombuffer(data, "<i8", n, at).astype(np.int64)
    vecs = None
    if kind == ADD:
        vecs = np.frombuffer(data, "<f4", n * dim, at + 8 * n).reshape(n, dim).astype(np.float32)
    return DeltaOp(kind, ids, vecs), pos + size + _CRC.size
