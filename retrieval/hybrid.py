"""Hybrid retrieval: the vector channel, the lexical channel and, for spoken queries, the
transcript's text vector, fused into one list of results; captions and transcripts count as
evidence for the media they describe.

Channels, each a ranked list of (item id, score, modality), best first:
- `vector`: the query's vector against the target modalities' indexes (re-ranked when on);
- `caption`: with target image or audio, the query's vector against the captions' text vectors
  (each caption standing for the media it describes);
- `lexical`: the query's words (typed, or what a spoken query says) in the full-text index;
- `transcript`: a spoken query's transcript embedded as text, against the same indexes.

Media first: with target `image`, `audio` or `any`, a text hit that is a caption (a linked text
item) stands for the media it describes; the media item is returned once, with `matched`
naming the captions or transcript that made it match. A caption is returned as text only when
the target asks for text. Fusion is reciprocal rank fusion, sum of 1 / (RRF_K + rank) over the
channels: rank-based, so scores of different modalities and channels mix fairly in `any`.
A single channel keeps its own scores (so `vector` mode is the plain first stage).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retrieval.errors import CrossmediaError
from retrieval.store import ItemRecord, Store
from retrieval.store.lexical import STOP_WORDS

MODES = ("vector", "lexical", "hybrid")
RRF_K = 60  # the usual constant; chosen against 10 and 30 on val (benchmarks/RESULTS.md)
MEDIA = ("image", "audio")
_WORD = re.compile(r"\w+", re.UNICODE)
# RRF weights of the channels a spoken query's transcript brings (chosen on val, see RESULTS.md).
SPOKEN_WEIGHTS: dict[str, float] = {
    "vector": 1.0,
    "caption": 1.0,
    "lexical": 1.0,
    "transcript": 1.0,
}


MIN_SPOKEN_WORDS = 2  # distinct content words before a transcript counts as words


def spoken_words(transcript: str | None) -> str | None:
    """What a recording says, when it is enough to search by: Whisper also "hears" words in
    sound effects ("Help! Help!", "AHHHHH!", "Bye bye!"), mostly one interjection repeated, and
    those would pull results towards random texts. At least MIN_SPOKEN_WORDS distinct content
    words (chosen on val: speech, Tux Paint sounds, animal sounds; see RESULTS.md)."""
    if not transcript:
        return None
    content = {w for w in _WORD.findall(transcript.lower()) if w not in STOP_WORDS}
    return transcript if len(content) >= MIN_SPOKEN_WORDS else None


def resolve_mode(mode: str | None, has_words: bool, lenient: bool = False) -> str:
    """The mode a query runs in: as asked, or hybrid when it has words, else vector. Lexical
    search of a query without words is an error, or (lenient: a batch of catalogue items in the
    recall benchmark) a query that finds nothing."""
    if mode is None:
        return "hybrid" if has_words else "vector"
    if mode not in MODES:
        raise CrossmediaError(f"Unknown search mode {mode!r}. Use one of {list(MODES)}.")
    if mode == "lexical" and not has_words and not lenient:
        raise CrossmediaError(
            "Lexical search needs words: a text query, or a spoken query in "
            "which speech was heard. Use --mode vector for this query."
        )
    return mode


def target_modalities(target: str) -> tuple[str, ...]:
    return ("image", "text", "audio") if target == "any" else (target,)


@dataclass
class Channel:
    name: str
    hits: list[tuple[int, float, str]]


@dataclass
class Fused:
    id: int
    modality: str
    score: float
    matched: list[dict[str, Any]] = field(default_factory=list)
    first_stage: float | None = None  # the vector channel's score, when it found this item


class Fuser:
    """Maps channel hits to result items (media first) and fuses the channels."""

    def __init__(
        self, store: Store, target: str, rrf_k: int = RRF_K, weights: dict[str, float] | None = None
    ) -> None:
        self.store = store
        self.targets = target_modalities(target)
        self.rrf_k = rrf_k
        self.weights = weights or {}  # per channel; 1 when absent

    def fuse(self, channels: Sequence[Channel], k: int) -> list[Fused]:
        channels = [c for c in channels if c.hits]
        if not channels:
            return []
        records = self._records(channels)
        units: dict[int, Fused] = {}  # insertion order: a single channel keeps its own order
        for channel in channels:
            seen: set[int] = set()
            rank = 0
            for item_id, score, modality in channel.hits:
                for unit_id, unit_mod, evidence in self._units(
                    item_id, modality, records, channel.name
                ):
                    unit = units.setdefault(unit_id, Fused(unit_id, unit_mod, 0.0))
                    if evidence is not None:
                        unit.matched.append(
                            {**evidence, "channel": channel.name, "score": round(float(score), 6)}
                        )
                    if unit_id in seen:
                        continue
                    seen.add(unit_id)
                    rank += 1
                    unit.score += (
                        float(score)
                        if len(channels) == 1
                        else self.weights.get(channel.name, 1.0) / (self.rrf_k + rank)
                    )
        if len(channels) == 1:
            return list(units.values())[:k]
        return sorted(units.values(), key=lambda u: (-u.score, u.id))[:k]

    def _records(self, channels: Sequence[Channel]) -> dict[int, ItemRecord]:
        """The records needed to map hits: every text hit and audio hit (its transcript), and the
        media that the captions describe."""
        ids = {i for c in channels for i, _, m in c.hits if m in ("text", "audio")}
        records = self.store.get_items(sorted(ids))
        media = {m for r in records.values() if r.modality == "text" for m in r.linked}
        records.update(self.store.get_items(sorted(media - set(records))))
        return records

    def _units(
        self, item_id: int, modality: str, records: dict[int, ItemRecord], channel: str
    ) -> list[tuple[int, str, dict[str, Any] | None]]:
        """The result items a hit stands for, each with the evidence it brings (or None)."""
        rec = records.get(item_id)
        if modality == "text" and rec is not None and self.targets != ("text",):
            described = [
                (m, records[m].modality)
                for m in rec.linked
                if m in records
                and records[m].modality in self.targets
                and records[m].modality in MEDIA
            ]
            if described:
                return [(m, mod, {"id": item_id, "text": rec.text}) for m, mod in described]
        if modality not in self.targets:
            return []
        if channel == "lexical" and modality == "audio" and rec is not None and rec.text:
            return [(item_id, modality, {"id": item_id, "text": rec.text})]  # its transcript
        return [(item_id, modality, None)]
