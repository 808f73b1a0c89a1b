"""The checks `crossmedia import-vectors` makes before it writes anything: the vectors file
(shape, dtype, dimension, finite non-zero rows) and the manifest (JSON objects, one per row,
unique ids, well-typed fields). Each failure is one CatalogueError naming the line or row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import CatalogueError

NORM_TOLERANCE = 1e-3


@dataclass
class ImportEntry:
    key: str
    path: str | None = None
    text: str | None = None
    captions: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def read_vectors(path: Path, dim: int) -> np.ndarray:
    """The (N, dim) rows of a .npy file, memory-mapped; a clear error for anything else."""
    try:
        vecs = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"{path}: not a NumPy .npy array ({exc}).") from exc
    if vecs.ndim != 2 or not np.issubdtype(vecs.dtype, np.floating):
        raise CatalogueError(
            f"{path}: expected an (N, {dim}) float32 array, got {vecs.dtype} {vecs.shape}."
        )
    if vecs.shape[1] != dim:
        raise CatalogueError(
            f"{path}: vectors have {vecs.shape[1]} dimensions; the model's space has {dim}. "
            "Import vectors made by the model named with --model, or choose the model whose "
            "space they are in."
        )
    return vecs


def read_manifest(path: Path, rows: int) -> list[ImportEntry]:
    """Every line of the manifest, checked: valid JSON objects with a unique `id`, one line per
    vector row. The lines are parsed as one JSON array (one C call); a parse error is then
    located line by line for its message."""
    with Path(path).open(encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    try:
        objs = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        objs = [_parse(line, n, path) for n, line in enumerate(lines, 1)]
    if len(objs) != len(lines):  # a line holding two values, e.g. `{...}, {...}`
        objs = [_parse(line, n, path) for n, line in enumerate(lines, 1)]
    entries = [_entry(obj, n, path) for n, obj in enumerate(objs, 1)]
    if len({e.key for e in entries}) != len(entries):
        seen: set[str] = set()
        for n, e in enumerate(entries, 1):
            if e.key in seen:
                raise CatalogueError(f"{path}:{n}: id {e.key!r} appears twice.")
            seen.add(e.key)
    if len(entries) != rows:
        raise CatalogueError(
            f"{path} has {len(entries)} items for {rows} vector rows: line i describes row i."
        )
    return entries


def _parse(line: str, n: int, path: Path) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise CatalogueError(f"{path}:{n}: not valid JSON ({exc.args[0]}).") from exc


def _entry(obj: Any, n: int, path: Path) -> ImportEntry:
    if type(obj) is not dict or not isinstance(obj.get("id"), str | int):
        raise CatalogueError(f'{path}:{n}: each line needs an "id" (a string or a number).')
    if len(obj) == 1:  # ids only: nothing else to check
        return ImportEntry(str(obj["id"]))
    captions = obj.get("captions", [])
    attrs = obj.get("attrs", {})
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise CatalogueError(f'{path}:{n}: "captions" must be a list of strings.')
    if not isinstance(attrs, dict):
        raise CatalogueError(f'{path}:{n}: "attrs" must be an object.')
    for name in ("path", "text"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            raise CatalogueError(f'{path}:{n}: "{name}" must be a string.')
    return ImportEntry(str(obj["id"]), obj.get("path"), obj.get("text"), captions, attrs)


def unit_rows(block: np.ndarray, first_line: int) -> tuple[np.ndarray, int]:
    """float32 rows scaled to unit length (cosine = inner product); how many needed it."""
    rows = np.asarray(block, dtype=np.float32)
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise CatalogueError(f"vector row {first_line + bad} holds NaN or infinity.")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise CatalogueError(f"vector row {first_line + int(np.flatnonzero(norms == 0)[0])} is 0.")
    off = int((np.abs(norms - 1) > NORM_TOLERANCE).sum())
    return rows / norms, off


def check_rows(vecs: np.ndarray, chunk: int = 65_536) -> None:
    """Every row finite and non-zero, checked before anything is written."""
    for start in range(0, len(vecs), chunk):
        unit_rows(vecs[start : start + chunk], start + 1)
