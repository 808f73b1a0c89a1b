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
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.import_check import ImportEntry, check_rows, read_manifest, read_vectors, unit_rows
from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace, Encoder
from retrieval.errors import CatalogueError
from retrieval.index import FaissIndex
from retrieval.index_build import build_from_arrays
from retrieval.index_choice import build_for, wanted_change
from retrieval.index_files import MERGE_FRACTION, MERGE_MIN_OPS
from retrieval.modality import ALL_MODALITIES
from retrieval.store.bulk import BulkRow, bulk_insert, deferred_indexes

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


def content_hash(vector: bytes, entry: ImportEntry) -> str:
    h = hashlib.blake2b(vector, digest_size=32)
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
    check_rows(vecs)
    cat.verify_indexes()  # loaded before the store moves on (else the load would catch up)
    report = ImportReport(rows=len(entries))
    report.seconds["check"] = time.perf_counter() - t0
    writer = _BatchWriter(cat, modality, str(manifest_path.resolve()), text_encoder, report)
    early = None
    if cat.store.id_summary(modality)[0] == 0 and not any(e.captions for e in entries):
        factory = cat.files.wanted_factory(modality, count=len(entries))
        early = EarlyIndex(factory, space.dim, vecs, cat.store.max_id() + 1)
    writer.check_stored = bool(cat.store.counts())
    bar = tqdm(total=len(entries), desc="importing", unit="vec", disable=not progress)
    with bar, nullcontext() if writer.check_stored else deferred_indexes(cat.store):
        for start in range(0, len(entries), BATCH):
            rows, off = unit_rows(vecs[start : start + BATCH], start + 1)
            report.renormalised += off
            writer.write(entries[start : start + BATCH], rows)
            bar.update(len(rows))
    report.seconds["write"] = time.perf_counter() - t0 - report.seconds["check"]
    t1 = time.perf_counter()
    changed = {modality: report.added + report.replaced, "text": report.captions}
    report.index = settle_indexes(cat, changed, {modality: early} if early else {})
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
        self.check_stored = True  # False when the catalogue was empty: nothing to look up

    def write(self, entries: list[ImportEntry], rows: np.ndarray) -> None:
        stored = self.cat.store.existing([e.key for e in entries]) if self.check_stored else {}
        out: list[BulkRow] = []
        captions: list[tuple[str, str, str]] = []  # (media key, caption key, text)
        blob, size = np.ascontiguousarray(rows, "<f4").tobytes(), 4 * rows.shape[1]
        for n, entry in enumerate(entries):
            vector = blob[n * size : (n + 1) * size]
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
        links = [(m, k, "caption") for m, k, _ in captions]
        bulk_insert(self.cat.store, out, links, all_new=not self.check_stored)

    def _row(self, entry: ImportEntry, vector: bytes, digest: str) -> BulkRow:
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
                vector=np.asarray(vec, "<f4").tobytes(),
                text=text,
                attrs={"caption_of": media},
                source=self.source,
            )
            for (media, key, text), vec in zip(captions, vecs, strict=True)
        ]


class EarlyIndex:
    """A first import's index, built in a thread while its rows are being written (FAISS and
    SQLite each take a core): the ids are known ahead (the next free ones, in row order, when no
    captions interleave), the vectors are the file's rows normalised as the writer does. The
    store keeps the last word: installing it (`Catalogue.save_index`) catches up with whatever
    the store holds instead."""

    def __init__(self, factory: str, dim: int, vecs: np.ndarray, first_id: int) -> None:
        self._result: tuple[FaissIndex, dict[str, Any]] | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0  # the build's own time (it overlaps the writes)
        self._thread = threading.Thread(
            target=self._run, args=(factory, dim, vecs, first_id), name="early-index", daemon=True
        )
        self._thread.start()

    def _run(self, factory: str, dim: int, vecs: np.ndarray, first_id: int) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # this thread only: the writer keeps the other core
        t = time.perf_counter()
        try:
            parts = [unit_rows(vecs[s : s + BATCH], s + 1)[0] for s in range(0, len(vecs), BATCH)]
            rows = np.concatenate(parts)
            ids = np.arange(first_id, first_id + len(rows), dtype=np.int64)
            self._result = build_from_arrays(factory, dim, ids, rows)
        except BaseException as exc:  # handed to the importing thread by take()
            self._error = exc
        self.seconds = time.perf_counter() - t

    def take(self) -> tuple[FaissIndex, dict[str, Any]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def settle_indexes(
    cat: Catalogue, changed: dict[str, int], early: dict[str, EarlyIndex]
) -> dict[str, Any]:
    """After a bulk import: rebuild an index whose type no longer fits or that gained more rows
    than a delta should hold, else append the new rows to its delta. A modality that was empty
    before takes the index built alongside the writes (`EarlyIndex`)."""
    out: dict[str, Any] = {}
    for modality, n in changed.items():
        if not n:
            continue
        total = cat.store.id_summary(modality)[0]
        base = cat.files.read_info()["indexes"].get(modality, {}).get("base_count", 0)
        want = wanted_change(cat, modality, count=total)
        t = time.perf_counter()
        if modality in early:
            cat.save_index(modality, *early[modality].take())
            t -= early[modality].seconds
        elif want is not None or n >= max(MERGE_MIN_OPS, MERGE_FRACTION * base):
            index, tuning = build_for(cat, modality, want or cat.index(modality).factory)
            cat.save_index(modality, index, tuning)
        else:
            cat.follow_store(modality)
        meta = cat.files.read_info()["indexes"][modality]
        out[modality] = {k: meta.get(k) for k in ("factory", "count", "search")}
        out[modality]["build_s"] = round(time.perf_counter() - t, 2)  # build + save
    return out
