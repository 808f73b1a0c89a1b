"""What a search takes and returns: `Query`, `Hit`, `SearchResult`; and the seam between the
search service and a re-ranker (`Reranker`, with the `RerankQuery` and `Candidates` it is given)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrieval.modality import Modality

if TYPE_CHECKING:
    from PIL import Image

    from retrieval.media.audio import Audio


@dataclass
class Query:
    """Exactly one of text, image or audio."""

    text: str | None = None
    image: Image.Image | None = None
    audio: Audio | None = None

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.text, self.image, self.audio)]
        if sum(given) != 1:
            raise ValueError("A query needs exactly one of text, image or audio.")
        if self.text is not None and not self.text.strip():
            raise ValueError("The text query is empty.")

    @property
    def modality(self) -> Modality:
        if self.text is not None:
            return Modality.TEXT
        return Modality.IMAGE if self.image is not None else Modality.AUDIO

    def describe(self) -> dict[str, Any]:
        if self.text is not None:
            return {"text": self.text}
        if self.image is not None:
            return {"image": {"width": self.image.width, "height": self.image.height}}
        assert self.audio is not None
        return {"audio": {"seconds": round(self.audio.seconds, 3)}}


@dataclass
class Hit:
    id: int
    modality: str
    score: float
    key: str = ""
    path: str | None = None
    text: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    mime: str | None = None
    linked: list[int] = field(default_factory=list)
    first_stage_score: float | None = None
    segment: dict[str, float] | None = None  # where in a long audio file the query matched best
    matched: list[dict[str, Any]] = field(default_factory=list)  # captions/transcripts that matched

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "modality": self.modality,
            "score": round(float(self.score), 6),
            "path": self.path,
            "text": self.text,
            "attrs": self.attrs,
        }
        if self.segment is not None:
            out["segment"] = self.segment
        if self.matched:
            out["matched"] = self.matched
        return out


@dataclass
class SearchResult:
    query: dict[str, Any]
    hits: list[Hit]
    timings_ms: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [h.to_json() for h in self.hits],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


@dataclass
class Candidates:
    """The over-fetched first-stage hits of one query, in first-stage order, with what the search
    service read for them from the store: token sets and vectors by id (an id may lack either)."""

    hits: list[Hit]
    tokens: dict[int, np.ndarray]
    vectors: dict[int, np.ndarray]


@dataclass
class RerankQuery:
    """A query as the re-ranker sees it: its vector, its token set from the same encoder call
    (None when the encoder or the stored item has none) and its modality."""

    vector: np.ndarray
    modality: str
    tokens: np.ndarray | None = None


class Reranker(Protocol):
    """What the service needs of a re-ranker (see retrieval/rerank): reorder the candidates and
    return the best k of them. It never reads the catalogue: the service hands it the data."""

    def rerank(self, query: RerankQuery, candidates: Candidates, k: int) -> list[Hit]: ...
