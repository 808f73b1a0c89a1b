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

from indexer.import_check import ImportEntry, read_manifest, read_vectors, unit_rows
from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace, Encoder
from retrieval.errors import CatalogueError
from retrieval.index_build import build_from_arrays
from retrieval.index_choice import build_for, wanted_change
from retrieval.index_files import MERGE_FRACTION, MERGE_MIN_OPS
from retrieval.modality import ALL_MODALITIES
from retrieval.store.bulk import BulkRow, bulk_insert

BATCH = 50_000


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


def content_hash(vector: np.ndarray, entry: ImportEntry) -> str:
    h = hashlib.blake2b(vector.tobytes(), digest_size=32)
    if entry.path or entry.text or entry.captions or entry.attrs:
        meta = [entry.path, entry.text, entry.captions, entry.attrs]
        h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


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
    writer.keep_rows = cat.store.id_summary(modality)[0] == 0  # a first import: index from memory
    with tqdm(total=len(entries), desc="importing", unit="vec", disable=not progress) as bar:
        for start in range(0, len(entries), BATCH):
            rows, off = unit_rows(vecs[start : start + BATCH], start + 1)
            report.renormalised += off
            writer.write(entries[start : start + BATCH], rows)
            bar.update(len(rows))
    report.seconds["write"] = time.perf_counter() - t0 - report.seconds["check"]
    t1 = time.perf_counter()
    changed = {modality: report.added + report.replaced, "text": report.captions}
    report.index = settle_indexes(
        cat, changed, {modality: writer.kept()} if writer.keep_rows else {}
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
        self.keep_rows = False  # keep (ids, vectors) written, to build the index from memory
        self._kept: list[tuple[np.ndarray, np.ndarray]] = []

    def kept(self) -> tuple[np.ndarray, np.ndarray]:
        ids = [i for i, _ in self._kept]
        vecs = [v for _, v in self._kept]
        return np.concatenate(ids), np.concatenate(vecs)

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
        media = len(out)
        out += self._caption_rows(captions)
        ids, _ = bulk_insert(self.cat.store, out, [(m, k, "caption") for m, k, _ in captions])
        if self.keep_rows and media:
            self._kept.append(
                (
                    np.array([ids[r.key] for r in out[:media]]),
                    np.stack([r.vector for r in out[:media]]),
                )
            )

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


def settle_indexes(
    cat: Catalogue,
    changed: dict[str, int],
    written: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """After a bulk import: rebuild an index whose type no longer fits or that gained more rows
    than a delta should hold, else append the new rows to its delta. A modality that was empty
    before is built from the (ids, vectors) `written`, without reading them back."""
    out: dict[str, Any] = {}
    for modality, n in changed.items():
        if not n:
            continue
        total = cat.store.id_summary(modality)[0]
        base = cat.files.read_info()["indexes"].get(modality, {}).get("base_count", 0)
        want = wanted_change(cat, modality, count=total)
        if modality in written and len(written[modality][0]) == total:
            factory = cat.files.wanted_factory(modality, count=total)
            assert cat.space is not None
            index, tuning = build_from_arrays(factory, cat.space.dim, *written[modality])
            cat.save_index(modality, index, tuning)
        elif want is not None or n >= max(MERGE_MIN_OPS, MERGE_FRACTION * base):
            index, tuning = build_for(cat, modality, want or cat.index(modality).factory)
            cat.save_index(modality, index, tuning)
        else:
            cat.follow_store(modality)
        meta = cat.files.read_info()["indexes"][modality]
        out[modality] = {k: meta.get(k) for k in ("factory", "count", "search")}
    return out
