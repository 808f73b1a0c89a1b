"""Bring your own vectors: `crossmedia import-vectors VECTORS.npy --manifest ITEMS.jsonl`.

Row i of VECTORS.npy ((N, dim) floats) is the item on line i of the manifest, whose `id` is its
key and whose optional `path`, `text`, `captions` and `attrs` are read as `crossmedia index`
reads them. The vectors are declared to be in a model's space (the catalogue's, or `--model`);
their dimension must match it. Captions become text items embedded by that model's text tower.

Everything is checked before anything is written (one clear error, nothing stored). Rows go to
the store in bulk batches (`retrieval.store.bulk`); the index is built once at the end, with the
type its final size asks for. Re-running skips what is stored unchanged (key + content hash);
a killed import leaves whole batches, and the index catches up with the store when next opened.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace, Encoder
from retrieval.errors import CatalogueError
from retrieval.index_choice import build_for, wanted_change
from retrieval.index_files import MERGE_FRACTION, MERGE_MIN_OPS
from retrieval.modality import ALL_MODALITIES
from retrieval.store.bulk import BulkRow, bulk_insert

BATCH = 50_000
NORM_TOLERANCE = 1e-3


@dataclass
class ImportEntry:
    key: str
    path: str | None = None
    text: str | None = None
    captions: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    unchanged: int = 0
    replaced: int = 0
    captions: int = 0
    renormalised: int = 0
    index: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    vector row."""
    entries: list[ImportEntry] = []
    seen: set[str] = set()
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            entry = _entry(line, n, path)
            if entry.key in seen:
                raise CatalogueError(f"{path}:{n}: id {entry.key!r} appears twice.")
            seen.add(entry.key)
            entries.append(entry)
    if len(entries) != rows:
        raise CatalogueError(
            f"{path} has {len(entries)} items for {rows} vector rows: line i describes row i."
        )
    return entries


def _entry(line: str, n: int, path: Path) -> ImportEntry:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise CatalogueError(f"{path}:{n}: not valid JSON ({exc.args[0]}).") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str | int):
        raise CatalogueError(f'{path}:{n}: each line needs an "id" (a string or a number).')
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


def content_hash(vector: np.ndarray, entry: ImportEntry) -> str:
    meta = json.dumps([entry.path, entry.text, entry.captions, entry.attrs], sort_keys=True)
    return hashlib.blake2b(vector.tobytes() + meta.encode(), digest_size=32).hexdigest()


def import_vectors(
    cat: Catalogue,
    vectors_path: Path,
    manifest_path: Path,
    space: EmbeddingSpace,
    modality: str = "image",
    text_encoder: Callable[[], Encoder] | None = None,
    progress: bool = True,
) -> ImportReport:
    """Check, store in bulk batches, then index; the caller holds the write lock."""
    if modality not in map(str, ALL_MODALITIES):
        raise CatalogueError(f"Unknown modality {modality!r}: image, text or audio.")
    t0 = time.perf_counter()
    cat.bind_space(space)
    vecs = read_vectors(vectors_path, space.dim)
    entries = read_manifest(manifest_path, len(vecs))
    cat.verify_indexes()  # loaded before the store moves on (else the load would catch up)
    report = ImportReport(rows=len(entries))
    report.seconds["check"] = time.perf_counter() - t0
    writer = _BatchWriter(cat, modality, str(manifest_path.resolve()), text_encoder, report)
    with tqdm(total=len(entries), desc="importing", unit="vec", disable=not progress) as bar:
        for start in range(0, len(entries), BATCH):
            rows, off = unit_rows(vecs[start : start + BATCH], start + 1)
            report.renormalised += off
            writer.write(entries[start : start + BATCH], rows)
            bar.update(len(rows))
    report.seconds["write"] = time.perf_counter() - t0 - report.seconds["check"]
    t1 = time.perf_counter()
    report.index = settle_indexes(
        cat, {modality: report.added + report.replaced, "text": report.captions}
    )
    report.seconds["index"] = time.perf_counter() - t1
    return report


class _BatchWriter:
    """Stores one batch: new and changed items (with their captions, embedded here), skipping
    those stored unchanged."""

    def __init__(
        self,
        cat: Catalogue,
        modality: str,
        source: str,
        text_encoder: Callable[[], Encoder] | None,
        report: ImportReport,
    ) -> None:
        self.cat, self.modality, self.source, self.report = cat, modality, source, report
        self._make_encoder = text_encoder
        self._encoder: Encoder | None = None

    def write(self, entries: list[ImportEntry], rows: np.ndarray) -> None:
        stored = self.cat.store.existing([e.key for e in entries])
        out: list[BulkRow] = []
        captions: list[tuple[str, str, str]] = []  # (media key, caption key, text)
        for entry, vector in zip(entries, rows, strict=True):
            digest = content_hash(vector, entry)
            if stored.get(entry.key) == digest:
                self.report.unchanged += 1
                continue
            self.report.replaced += entry.key in stored
            self.report.added += entry.key not in stored
            out.append(self._row(entry, vector, digest))
            captions += [
                (entry.key, f"{entry.key}#caption{j}", c) for j, c in enumerate(entry.captions)
            ]
        out += self._caption_rows(captions)
        bulk_insert(self.cat.store, out, [(m, k, "caption") for m, k, _ in captions])

    def _row(self, entry: ImportEntry, vector: np.ndarray, digest: str) -> BulkRow:
        return BulkRow(
            key=entry.key,
            modality=self.modality,
            content_hash=digest,
            vector=vector,
            path=entry.path,
            text=entry.text,
            attrs=entry.attrs,
            source=self.source,
        )

    def _caption_rows(self, captions: list[tuple[str, str, str]]) -> list[BulkRow]:
        if not captions:
            return []
        if self._encoder is None:
            if self._make_encoder is None:
                raise CatalogueError("Captions need the model's text encoder: pass --model.")
            self._encoder = self._make_encoder()
        vecs = self._encoder.encode_texts([c for _, _, c in captions])
        self.report.captions += len(captions)
        return [
            BulkRow(
                key=key,
                modality="text",
                content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                vector=vec,
                text=text,
                attrs={"caption_of": media},
                source=self.source,
            )
            for (media, key, text), vec in zip(captions, vecs, strict=True)
        ]


def settle_indexes(cat: Catalogue, changed: dict[str, int]) -> dict[str, Any]:
    """After a bulk import: rebuild an index whose type no longer fits or that gained more rows
    than a delta should hold, else append the new rows to its delta."""
    out: dict[str, Any] = {}
    for modality, n in changed.items():
        if not n:
            continue
        total = cat.store.id_summary(modality)[0]
        base = cat.files.read_info()["indexes"].get(modality, {}).get("base_count", 0)
        want = wanted_change(cat, modality, count=total)
        if want is not None or n >= max(MERGE_MIN_OPS, MERGE_FRACTION * base):
            index, tuning = build_for(cat, modality, want or cat.index(modality).factory)
            cat.save_index(modality, index, tuning)
        else:
            cat.follow_store(modality)
        meta = cat.files.read_info()["indexes"][modality]
        out[modality] = {k: meta.get(k) for k in ("factory", "count", "search")}
    return out
