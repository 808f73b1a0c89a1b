"""Ingestion: read -> decode -> embed -> write, in batches, crash-safe and idempotent.

Each batch is committed to the store in one transaction (items, vectors, links, errors) and then
mirrored into the in-memory indexes; index files are saved every `checkpoint_seconds` and at the
end. A kill at any moment loses at most the batch in flight: the next run skips what is stored
(same key and content hash) and the catalogue repairs index files that lag the store.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from indexer.dedup_mark import mark_duplicates
from indexer.entries import check_limits, error_key
from indexer.rows import (
    IngestReport,
    batches,
    entry_keys,
    media_item,
    text_hash,
    text_item,
)
from indexer.sources import Entry, FolderSource, ManifestSource
from indexer.stages import decode_entry, encode_rows
from retrieval.catalogue import Catalogue
from retrieval.encoders.base import Encoder
from retrieval.index_choice import upgrade_indexes
from retrieval.media.decode import DecodedMedia, MediaLimits
from retrieval.store import NewItem

log = logging.getLogger(__name__)


class Ingestor:
    def __init__(
        self,
        catalogue: Catalogue,
        encoder: Encoder,
        *,
        batch_size: int = 32,
        limits: MediaLimits | None = None,
        checkpoint_seconds: float = 30.0,
        workers: int = 2,
    ) -> None:
        catalogue.bind_space(encoder.space)
        self.catalogue = catalogue
        self.encoder = encoder
        self.batch_size = batch_size
        self.limits = limits or MediaLimits()
        self.checkpoint_seconds = checkpoint_seconds
        self.workers = workers
        self._seen: dict[str, str] = {}  # key -> where it was first read, in this run
        self._origin = str  # where -> the `source` an item records (the source's `origin`)
        self.duplicate_threshold: float | None = None  # mark near-duplicates (dedup_mark.py)

    # -- whole sources ---------------------------------------------------------------------------
    def ingest(self, source: FolderSource | ManifestSource, progress: bool = True) -> IngestReport:
        report = self.begin(source)
        last_save = time.monotonic()
        total = len(source)
        with (
            tqdm(total=total, desc="indexing", unit="item", disable=not progress) as bar,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            for batch in batches(iter(source), self.batch_size):
                self._ingest_batch(batch, report, pool)
                report.entries += len(batch)
                bar.update(len(batch))
                last_save = self.checkpoint(report, last_save)
        self.finish(source, report)
        return report

    # -- the steps of a run, shared with the Ray driver (indexer/ray_ingest.py) ---------------------
    def begin(self, source: FolderSource | ManifestSource) -> IngestReport:
        """Start a run: take the writer lock, make the index files consistent, a fresh report."""
        self.catalogue.lock_for_writing()
        self.catalogue.verify_indexes()  # recovery before success: files consistent at the end
        self._seen = {}
        self._origin = getattr(source, "origin", str)
        return IngestReport(source=source.name)

    def checkpoint(self, report: IngestReport, last_save: float) -> float:
        """Save the index files when `checkpoint_seconds` have passed; the time of the last save."""
        if time.monotonic() - last_save <= self.checkpoint_seconds:
            return last_save
        t = time.perf_counter()
        self.catalogue.flush()
        report.seconds["write"] += time.perf_counter() - t
        return time.monotonic()

    def finish(self, source: FolderSource | ManifestSource, report: IngestReport) -> None:
        t = time.perf_counter()
        self.catalogue.flush()
        upgrade_indexes(self.catalogue)
        report.seconds["write"] += time.perf_counter() - t
        report.warnings.extend(getattr(source, "notes", ()))
        self.catalogue.unlock()

    def _ingest_batch(
        self, batch: list[Entry], report: IngestReport, pool: ThreadPoolExecutor
    ) -> None:
        t0 = time.perf_counter()
        errors: list[tuple[str, str | None, str]] = []
        todo, stored = self.prepare(batch, report, errors)
        report.seconds["read"] += time.perf_counter() - t0

        t1 = time.perf_counter()
        decoded = list(pool.map(lambda e: self._decode_entry(e, stored), todo))
        report.seconds["decode"] += time.perf_counter() - t1
        ok, (media, texts, links) = self.plan(todo, decoded, stored, report, errors)

        t2 = time.perf_counter()
        self.encode(media, texts)
        report.seconds["encode"] += time.perf_counter() - t2

        t3 = time.perf_counter()
        self.commit([e for e, _ in ok], [it for it, _ in media], texts, links, errors, report)
        report.seconds["write"] += time.perf_counter() - t3

    def prepare(
        self, batch: list[Entry], report: IngestReport, errors: list[tuple[str, str | None, str]]
    ) -> tuple[list[Entry], dict[str, str]]:
        """The entries of a batch to decode, and the content hashes the store has for their keys."""
        todo = self._screen(batch, report, errors)
        return todo, self.catalogue.store.existing([k for e in todo for k in entry_keys(e)])

    def plan(
        self,
        todo: list[Entry],
        decoded: list[list[tuple[str, DecodedMedia, str]] | str],
        stored: dict[str, str],
        report: IngestReport,
        errors: list[tuple[str, str | None, str]],
    ) -> tuple[list[tuple[Entry, list[tuple[str, DecodedMedia, str]]]], tuple]:
        """Record the entries that failed to decode; the others, and the rows to (re)write."""
        ok: list[tuple[Entry, list[tuple[str, DecodedMedia, str]]]] = []
        for e, result in zip(todo, decoded, strict=True):
            if isinstance(result, str):
                report.failed.append((e.where, result))
                errors.append((e.key, e.where, result))
            else:
                ok.append((e, result))
        return ok, self._plan(ok, stored, report)

    def commit(
        self,
        entries: list[Entry],
        media: list[NewItem],
        texts: list[NewItem],
        links: list[tuple[str, str, str]],
        errors: list[tuple[str, str | None, str]],
        report: IngestReport,
    ) -> None:
        """The write stage: the batch's rows, links and errors in one transaction."""
        if self.duplicate_threshold is not None:
            mark_duplicates(self.catalogue, media, self.duplicate_threshold)
        all_items = media + texts
        if all_items or links or errors:
            written = self.catalogue.write(all_items, links, errors, save=False)
            for mod in written.modalities.values():
                report.added[mod] = report.added.get(mod, 0) + 1
        report.removed_captions += self._prune_captions(entries)

    def _screen(
        self, batch: list[Entry], report: IngestReport, errors: list[tuple[str, str | None, str]]
    ) -> list[Entry]:
        """Entries that can be read; the others are recorded as skipped with their reason."""
        todo = []
        for e in batch:
            # A second entry with the same key would fail the batch's insert (same batch) or
            # replace the first entry on every run (later batch): the first one wins.
            if not e.error:
                check_limits(e, entry_keys(e), self.limits.max_text_chars)
                report.warnings.extend((e.where, w) for w in e.warnings)
            if not e.error and e.key in self._seen:
                e.error = f"duplicate id {e.key!r}: already used at {self._seen[e.key]}"
            elif not e.error:
                self._seen[e.key] = e.where
            if e.error:
                report.failed.append((e.where, e.error))
                errors.append((error_key(e.key), e.where, e.error))
            else:
                todo.append(e)
        return todo

    def _plan(
        self,
        decoded: list[tuple[Entry, list[tuple[str, DecodedMedia, str]]]],
        stored: dict[str, str],
        report: IngestReport,
    ) -> tuple[list[tuple[NewItem, DecodedMedia]], list[NewItem], list[tuple[str, str, str]]]:
        """The rows to (re)write: new or changed media and texts, and caption links."""
        media: list[tuple[NewItem, DecodedMedia]] = []
        texts: list[NewItem] = []
        links: list[tuple[str, str, str]] = []
        for e, result in decoded:
            origin = self._origin(e.where)
            own_keys = [key for key, _, _ in result]
            for key, dm, h in result:
                if stored.get(key) == h:
                    report.unchanged += 1
                    continue
                report.replaced += key in stored
                media.append((media_item(key, dm, h, dict(e.attrs), origin), dm))
            for i, cap in enumerate(e.captions):
                ckey = f"{e.key}#caption{i}"
                links.extend((mk, ckey, "caption") for mk in own_keys)
                if stored.get(ckey) == text_hash(cap):
                    report.unchanged += 1
                else:
                    texts.append(text_item(ckey, cap, {"caption_of": e.key}, origin))
            if e.text is not None and not e.media:
                if stored.get(e.key) == text_hash(e.text):
                    report.unchanged += 1
                else:
                    texts.append(text_item(e.key, e.text, dict(e.attrs), origin))
        return media, texts, links

    def _prune_captions(self, entries: list[Entry]) -> int:
        """Delete stored captions `key#captionN` with N beyond an entry's current caption list,
        so an entry edited from five captions to two keeps two."""
        stale: list[int] = []
        for e in entries:
            prefix = f"{e.key}#caption"
            for key, item_id in self.catalogue.store.keys_with_prefix(prefix).items():
                suffix = key[len(prefix) :]
                if suffix.isdigit() and int(suffix) >= len(e.captions):
                    stale.append(item_id)
        if stale:
            self.catalogue.delete_ids(stale, save=False)
        return len(stale)

    def _decode_entry(
        self, e: Entry, stored: dict[str, str]
    ) -> list[tuple[str, DecodedMedia, str]] | str:
        return decode_entry(
            e, stored, self.limits, self.encoder.modalities, self.encoder.space.model
        )

    def encode(self, media: list[tuple[NewItem, DecodedMedia]], texts: list[NewItem]) -> None:
        encode_rows(self.encoder, media, texts, self.batch_size)
