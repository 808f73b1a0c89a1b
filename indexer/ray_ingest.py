"""Ingestion on a Ray cluster: the local pipeline's stages, spread over Ray's workers.

The driver (this process) reads the source and splits it into blocks of `batch_size` entries;
each block is screened and looked up in the store as locally (`Ingestor.prepare`), decoded by
one of a pool of decode actors, one per CPU (`ray_stages.DecodeWorker`), planned on the driver (`Ingestor.plan`: which rows are new
or changed), embedded by an actor of a pool that loads the encoder once per actor
(`ray_stages.EmbedWorker`), and written by the driver, the one writer, in source order
(`Ingestor.commit`: one transaction per block). The decoded pixels go from the decode worker to
the actor through Ray's object store, never through the driver.

Exactly once: only the driver writes, each block once, and a write is idempotent by key and
content hash. A worker that dies is replaced by Ray (the actor is restarted and its call
retried; decoding and embedding are pure), so its block is still written once. A driver
that dies loses the blocks in flight; the next run skips what is stored and adds the rest.

Decode runs in actors rather than tasks: Ray reaps idle workers within seconds, so a task per
block got a fresh worker process (its start and imports, ~0.5 s of CPU) for nearly every block.
Ray core (actor pools) rather than Ray Data: the driver has to screen each block
(duplicate ids across the whole source) and look up the store right before the block is
decoded, so unchanged files are never decoded, while reading the source lazily; our rows are
Python objects (entries, decoded media, `NewItem`s) that would be converted to Arrow columns
at every operator boundary; and exactly-once writing wants one result per block that the
driver commits in order, which an actor graph gives directly.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from indexer.pipeline import Ingestor
from indexer.ray_cluster import EmbedPool, RayOptions, connect
from indexer.rows import IngestReport, batches
from indexer.sources import Entry, FolderSource, ManifestSource
from retrieval.catalogue import Catalogue
from retrieval.media.decode import MediaLimits


@dataclass
class Block:
    """One block in flight: its entries, its share of the report, and its Ray results."""

    batch: list[Entry]
    todo: list[Entry]
    stored: dict[str, str]
    part: IngestReport
    errors: list[tuple[str, str | None, str]] = field(default_factory=list)
    decoded: Any = None  # ObjectRef of (light, seconds)
    payloads: Any = None  # ObjectRef of {key: DecodedMedia}
    planned: tuple | None = None  # (ok entries, links) once planned
    embedded: Any = None  # ObjectRef of (media, texts, seconds)
    actor: int = -1  # the embed actor
    decoder: int = -1  # the decode actor


class RayIngestor:
    """`Ingestor.ingest` on a Ray cluster. `start()` connects and loads the encoder in every
    actor; `ingest(source)` runs one source; `close()` releases the actors (and the local Ray
    instance, when this process started one)."""

    def __init__(
        self,
        catalogue: Catalogue,
        model: str,
        options: RayOptions | None = None,
        *,
        batch_size: int = 32,
        limits: MediaLimits | None = None,
        checkpoint_seconds: float = 30.0,
    ) -> None:
        self.catalogue = catalogue
        self.model = model
        self.options = options or RayOptions()
        self.batch_size = batch_size
        self.limits = limits or MediaLimits()
        self.checkpoint_seconds = checkpoint_seconds
        self.duplicate_threshold: float | None = None  # as `Ingestor.duplicate_threshold`
        self.ray: Any = None
        self.pool: EmbedPool | None = None
        self._started_ray = False

    def start(self) -> None:
        self.ray, self._started_ray = connect(self.options.address)
        try:
            self.pool = EmbedPool.start(self.ray, self.model, self.options, self.batch_size)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayIngestor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ingest(self, source: FolderSource | ManifestSource, progress: bool = True) -> IngestReport:
        assert self.pool is not None, "call start() first"
        ing = Ingestor(
            self.catalogue,
            self.pool.encoder,  # type: ignore[arg-type]  # space and modalities: all it reads
            batch_size=self.batch_size,
            limits=self.limits,
            checkpoint_seconds=self.checkpoint_seconds,
        )
        ing.duplicate_threshold = self.duplicate_threshold
        report = ing.begin(source)
        with tqdm(
            total=len(source),
            desc=f"indexing (ray, {self.pool.size} workers)",
            unit="item",
            disable=not progress,
        ) as bar:
            self._run(ing, iter(source), report, bar)
        ing.finish(source, report)
        return report

    # -- the driver's loop ------------------------------------------------------------------------
    def _run(self, ing: Ingestor, entries: Any, report: IngestReport, bar: tqdm) -> None:
        window: deque[Block] = deque()
        blocks = batches(entries, self.batch_size)
        limit = self.options.in_flight or 2 * self.pool.size + 2
        last_save = time.monotonic()
        exhausted = False
        while True:
            while not exhausted and len(window) < limit:
                batch = next(blocks, None)
                if batch is None:
                    exhausted = True
                else:
                    window.append(self._prepare(ing, batch))
            if not window:
                return
            self._start_decodes(window)
            moved = self._embed_decoded(ing, window)
            while window and window[0].embedded is not None and self._ready(window[0].embedded):
                self._write(ing, window.popleft(), report)
                bar.update(report.entries - bar.n)
                last_save = ing.checkpoint(report, last_save)
                moved = True
            bar.set_postfix(self._backlog(window), refresh=False)
            if not moved:  # sleep until a decode ends or the oldest block can be written
                pending = [
                    b.decoded for b in window if b.decoded is not None and b.embedded is None
                ]
                pending += [window[0].embedded] if window[0].embedded is not None else []
                self.ray.wait(pending, num_returns=1, timeout=1.0)

    def _prepare(self, ing: Ingestor, batch: list[Entry]) -> Block:
        """Screen a block and look up the store, as the local pipeline does."""
        t = time.perf_counter()
        b = Block(batch, [], {}, IngestReport(source=""))
        b.todo, b.stored = ing.prepare(batch, b.part, b.errors)
        b.part.seconds["read"] += time.perf_counter() - t
        return b

    def _start_decodes(self, window: deque[Block]) -> None:
        """Send blocks to decode, in order, one per idle decode actor."""
        busy = {b.decoder for b in window if b.decoded is not None and b.embedded is None}
        free = [i for i in range(len(self.pool.decoders)) if i not in busy]
        enc = self.pool.encoder
        for b in window:
            if not free:
                return
            if b.decoded is None:
                b.decoder = free.pop(0)
                b.decoded, b.payloads = self.pool.decode(
                    b.decoder, b.todo, b.stored, self.limits, enc.modalities, enc.space.model
                )

    def _embed_decoded(self, ing: Ingestor, window: deque[Block]) -> bool:
        """Plan every block whose decode is done and hand it to the least busy actor."""
        waiting = [b for b in window if b.embedded is None and b.decoded is not None]
        if not waiting:
            return False
        done, _ = self.ray.wait([b.decoded for b in waiting], num_returns=len(waiting), timeout=0)
        done_refs = set(done)
        moved = False
        for b in waiting:
            if b.decoded not in done_refs:
                continue
            light, seconds = self.ray.get(b.decoded)
            b.part.seconds["decode"] += seconds
            ok, (media, texts, links) = ing.plan(b.todo, light, b.stored, b.part, b.errors)
            b.planned = ([e for e, _ in ok], links)
            b.actor = self.pool.least_busy([x.actor for x in window if x.embedded is not None])
            b.embedded = self.pool.embed(b.actor, [it for it, _ in media], texts, b.payloads)
            b.payloads = None  # the actor holds the reference now
            moved = True
        return moved

    def _write(self, ing: Ingestor, b: Block, report: IngestReport) -> None:
        media, texts, seconds = self.ray.get(b.embedded)
        b.part.seconds["encode"] += seconds
        t = time.perf_counter()
        entries, links = b.planned
        ing.commit(entries, media, texts, links, b.errors, b.part)
        b.part.seconds["write"] += time.perf_counter() - t
        b.part.entries = len(b.batch)
        merge_report(report, b.part)

    def _ready(self, ref: Any) -> bool:
        done, _ = self.ray.wait([ref], num_returns=1, timeout=0)
        return bool(done)

    def _backlog(self, window: deque[Block]) -> dict[str, int]:
        """Blocks waiting in each stage: decode, embed, write."""
        decoding = sum(b.embedded is None for b in window)
        embedding = [b.embedded for b in window if b.embedded is not None]
        ready = (
            len(self.ray.wait(embedding, num_returns=len(embedding), timeout=0)[0])
            if embedding
            else 0
        )  # embedded, waiting for the blocks before them to be written
        return {"decode": decoding, "embed": len(embedding) - ready, "write": ready}


def merge_report(into: IngestReport, part: IngestReport) -> None:
    """Add one block's report to the run's: counts add up, lists extend, per-key dicts add."""
    for f in dataclasses.fields(into):
        mine, theirs = getattr(into, f.name), getattr(part, f.name)
        if isinstance(mine, bool) or isinstance(mine, str):
            continue
        if isinstance(mine, int | float):
            setattr(into, f.name, mine + theirs)
        elif isinstance(mine, list):
            mine.extend(theirs)
        elif isinstance(mine, dict):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
