"""The work Ray's workers do, as plain Python (no Ray import): `ray_cluster.py` wraps
`DecodeWorker` and `EmbedWorker` in actors at run time, so the code itself runs and
tests anywhere. Both call the local pipeline's own stage functions (`indexer/stages.py`).

A decoded block travels in two parts: `light` (per entry: the keys, hashes and decoded media
without their pixels or samples, or the reason it failed) goes to the driver, which plans the
rows; `payloads` (key -> decoded media) goes straight from the decode worker to an embed actor
through Ray's object store, never through the driver.
"""

from __future__ import annotations

import dataclasses
import os
import time

from indexer.sources import Entry
from indexer.stages import decode_entry, encode_rows
from retrieval.encoders.base import EmbeddingSpace
from retrieval.media.decode import DecodedMedia, MediaLimits
from retrieval.modality import Modality
from retrieval.store import NewItem

Decoded = list[tuple[str, DecodedMedia, str]] | str  # one entry: (key, media, hash)s or why not


def decode_block(
    todo: list[Entry],
    stored: dict[str, str],
    limits: MediaLimits,
    modalities: frozenset[Modality],
    model: str,
) -> tuple[tuple[list[Decoded], float], dict[str, DecodedMedia]]:
    """Read, hash and decode a block's media: ((light, seconds), payloads)."""
    t = time.perf_counter()
    light: list[Decoded] = []
    payloads: dict[str, DecodedMedia] = {}
    for e in todo:
        result = decode_entry(e, stored, limits, modalities, model)
        if isinstance(result, str):
            light.append(result)
            continue
        rows = []
        for key, dm, h in result:
            if dm.payload is not None:
                payloads[key] = dm
                dm = dataclasses.replace(dm, payload=None)
            rows.append((key, dm, h))
        light.append(rows)
    return (light, time.perf_counter() - t), payloads


class DecodeWorker:
    """One decode actor: a long-lived process. (A task per block would get a fresh worker
    process, paying its start and imports, for nearly every block: Ray reaps idle workers.)"""

    def ready(self) -> int:
        return os.getpid()

    def decode(
        self,
        todo: list[Entry],
        stored: dict[str, str],
        limits: MediaLimits,
        modalities: frozenset[Modality],
        model: str,
    ) -> tuple[tuple[list[Decoded], float], dict[str, DecodedMedia]]:
        return decode_block(todo, stored, limits, modalities, model)


@dataclasses.dataclass(frozen=True)
class RemoteEncoder:
    """The encoder the actors load, as the driver sees it: the space it binds to the catalogue
    and the modalities the decode stage checks. The driver itself never encodes."""

    space: EmbeddingSpace
    modalities: frozenset[Modality]


class EmbedWorker:
    """One embed actor: loads the encoder once, then fills in the vectors of planned rows."""

    def __init__(self, model: str, device: str | None, threads: int, batch_size: int) -> None:
        import torch

        from retrieval.encoders import create_encoder

        if threads > 0:
            torch.set_num_threads(threads)
        self.encoder = create_encoder(model, device=device)
        self.batch_size = batch_size

    def describe(self) -> tuple[RemoteEncoder, int]:
        """What the driver needs to know of the encoder, and this process's id."""
        return RemoteEncoder(self.encoder.space, frozenset(self.encoder.modalities)), os.getpid()

    def embed(
        self, media: list[NewItem], texts: list[NewItem], payloads: dict[str, DecodedMedia]
    ) -> tuple[list[NewItem], list[NewItem], float]:
        """`media` and `texts` with their vectors (token sets, segments, transcripts) filled in."""
        t = time.perf_counter()
        encode_rows(self.encoder, [(it, payloads[it.key]) for it in media], texts, self.batch_size)
        return media, texts, time.perf_counter() - t
