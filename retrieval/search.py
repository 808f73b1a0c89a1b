"""The search service: query -> vector -> the target modality's index -> (re-rank) -> metadata."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrieval.errors import CrossmediaError
from retrieval.modality import ALL_MODALITIES, Modality

if TYPE_CHECKING:
    from PIL import Image

    from retrieval.catalogue import Catalogue
    from retrieval.encoders.base import Encoder
    from retrieval.media.audio import Audio

TARGETS = ("image", "text", "audio", "any")


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

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id, "modality": self.modality, "score": round(float(self.score), 6),
            "path": self.path, "text": self.text, "attrs": self.attrs,
        }
        if self.segment is not None:
            out["segment"] = self.segment
        return out


@dataclass
class SearchResult:
    query: dict[str, Any]
    hits: list[Hit]
    timings_ms: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query, "results": [h.to_json() for h in self.hits],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


class Reranker(Protocol):
    """What the service needs of a re-ranker (see retrieval/rerank): reorder the over-fetched
    `hits` and return the best k of them. `query_tokens` (n, D) come from the same encoder call as
    `query_vector` (None when the encoder has none); `query` is None for catalogue-item queries."""

    def rerank(self, query: Query | None, query_vector: np.ndarray, hits: list[Hit], k: int,
               catalogue: Catalogue, query_tokens: np.ndarray | None = None,
               query_modality: str | None = None) -> list[Hit]: ...


class SearchService:
    def __init__(
        self,
        catalogue: Catalogue,
        encoder: Encoder,
        reranker: Reranker | None = None,
        overfetch: int = 5,
        max_k: int = 1000,
    ) -> None:
        catalogue.check_space(encoder.space)
        self.catalogue = catalogue
        self.encoder = encoder
        self.reranker = reranker
        self.overfetch = overfetch
        self.max_k = max_k

    def encode_queries(self, queries: Sequence[Query]) -> np.ndarray:
        """Batch-encode mixed queries, grouped by modality; (Q, dim) float32."""
        return self._encode(queries, with_tokens=False)[0]

    def _encode(self, queries: Sequence[Query], with_tokens: bool
                ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Vectors (Q, dim) and, with_tokens, each query's token set from the SAME encoder call."""
        out = np.zeros((len(queries), self.encoder.dim), dtype=np.float32)
        tokens: list[np.ndarray | None] = [None] * len(queries)
        for modality in ALL_MODALITIES:
            idx = [i for i, q in enumerate(queries) if q.modality == modality]
            if not idx:
                continue
            payload = [
                queries[i].text if modality == Modality.TEXT
                else queries[i].image if modality == Modality.IMAGE else queries[i].audio
                for i in idx
            ]
            if with_tokens:
                out[idx], sets = self.encoder.encode_with_tokens(modality, payload)
                for j, i in enumerate(idx):
                    tokens[i] = None if sets is None else sets[j]
            else:
                out[idx] = self.encoder.encode(modality, payload)
        return out, tokens

    def search(self, query: Query, *, target: str = "any", k: int = 10,
               rerank: bool | None = None, filters: dict[str, Any] | None = None) -> SearchResult:
        return self.search_many([query], target=target, k=k, rerank=rerank, filters=filters)[0]

    def search_many(self, queries: Sequence[Query], *, target: str = "any", k: int = 10,
                    rerank: bool | None = None, filters: dict[str, Any] | None = None) -> list[SearchResult]:
        if target not in TARGETS:
            raise CrossmediaError(f"Unknown target {target!r}. Use one of {list(TARGETS)}.")
        if not 1 <= k <= self.max_k:
            raise CrossmediaError(f"k must be between 1 and {self.max_k}, got {k}.")
        use_rerank = self.reranker is not None and (rerank is None or rerank)
        t0 = time.perf_counter()
        vectors, tokens = self._encode(queries, with_tokens=use_rerank)
        t1 = time.perf_counter()
        depth = self.rerank_depth(k) if use_rerank else k
        candidates = self.search_vectors(vectors, target=target, k=depth, filters=filters)
        t2 = time.perf_counter()
        results = []
        per_query = {"encode": (t1 - t0) * 1e3 / len(queries), "search": (t2 - t1) * 1e3 / len(queries)}
        for query, vec, toks, cands in zip(queries, vectors, tokens, candidates, strict=True):
            timings = dict(per_query)
            if use_rerank and cands:
                assert self.reranker is not None
                t3 = time.perf_counter()
                bare = [Hit(id=i, modality=m, score=s, first_stage_score=s) for i, s, m in cands]
                ranked = self.reranker.rerank(query, vec, bare, k, self.catalogue, query_tokens=toks,
                                              query_modality=str(query.modality))
                first = {i: s for i, s, _ in cands}
                cands = [(h.id, h.score, h.modality) for h in ranked[:k]]
                timings["rerank"] = (time.perf_counter() - t3) * 1e3
            else:
                first = None
            t4 = time.perf_counter()
            hits = self._hydrate(cands, vec, first)
            timings["metadata"] = (time.perf_counter() - t4) * 1e3
            results.append(SearchResult(query=query.describe(), hits=hits[:k], timings_ms=timings))
        return results

    def rerank_depth(self, k: int) -> int:
        """How many first-stage candidates the re-ranker sees for a top k (k x overfetch)."""
        return k * self.overfetch

    def rerank_vectors(self, query_ids: Sequence[int], vectors: np.ndarray, *, target: str = "any",
                       k: int = 10, filters: dict[str, Any] | None = None
                       ) -> list[list[tuple[int, float, str]]]:
        """Re-ranked search for queries that are catalogue items (their token sets are stored):
        [(id, score, modality)] per query; the first stage when no re-ranker is set."""
        if self.reranker is None:
            return self.search_vectors(vectors, target=target, k=k, filters=filters)
        candidates = self.search_vectors(vectors, target=target, k=self.rerank_depth(k), filters=filters)
        stored = self.catalogue.store.token_sets(list(query_ids))
        records = self.catalogue.store.get_items(list(query_ids))
        out = []
        for qid, vec, cands in zip(query_ids, vectors, candidates, strict=True):
            bare = [Hit(id=i, modality=m, score=s, first_stage_score=s) for i, s, m in cands]
            rec = records.get(qid)
            ranked = self.reranker.rerank(None, vec, bare, k, self.catalogue, query_tokens=stored.get(qid),
                                          query_modality=rec.modality if rec is not None else None)
            out.append([(h.id, h.score, h.modality) for h in ranked[:k]])
        return out

    def search_vectors(self, vectors: np.ndarray, *, target: str = "any", k: int = 10,
                       filters: dict[str, Any] | None = None) -> list[list[tuple[int, float, str]]]:
        """First-stage search for a batch of query vectors: [(id, score, modality)] per query."""
        modalities = [str(m) for m in ALL_MODALITIES] if target == "any" else [target]
        merged: list[list[tuple[int, float, str]]] = [[] for _ in range(len(vectors))]
        for modality in modalities:
            index = self.catalogue.index(modality)
            if index.count() == 0:
                continue
            fetch = k
            while True:
                scores, ids = index.search(vectors, min(fetch, index.count()))
                rows = [
                    [(int(i), float(s), modality) for s, i in zip(sr, ir, strict=True) if i >= 0]
                    for sr, ir in zip(scores, ids, strict=True)
                ]
                if filters:
                    rows = [self._filter(r, filters) for r in rows]
                short = any(len(r) < k for r in rows)
                if not filters or not short or fetch >= index.count():
                    break
                fetch *= 4
            for q, r in enumerate(rows):
                merged[q].extend(r[:k])
        return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]

    def _filter(self, rows: list[tuple[int, float, str]], filters: dict[str, Any]) -> list[tuple[int, float, str]]:
        items = self.catalogue.store.get_items([r[0] for r in rows])
        return [r for r in rows if r[0] in items and all(
            items[r[0]].attrs.get(key) == value for key, value in filters.items())]

    def _hydrate(self, cands: list[tuple[int, float, str]], qvec: np.ndarray,
                 first_stage: dict[int, float] | None = None) -> list[Hit]:
        records = self.catalogue.store.get_items([c[0] for c in cands])
        hits = []
        for item_id, score, modality in cands:
            rec = records.get(item_id)
            if rec is None:
                continue  # deleted between search and join
            hit = Hit(id=rec.id, modality=modality, score=score, key=rec.key, path=rec.path,
                      text=rec.text, attrs=rec.attrs, mime=rec.mime, linked=rec.linked,
                      first_stage_score=score if first_stage is None else first_stage[item_id])
            if modality == "audio" and (rec.duration or 0) > 30:
                hit.segment = self._best_segment(item_id, qvec)
            hits.append(hit)
        return hits

    def _best_segment(self, item_id: int, qvec: np.ndarray) -> dict[str, float] | None:
        segs = self.catalogue.store.segments(item_id, self.encoder.dim)
        if not segs:
            return None
        sims = [float(vec @ qvec) for _, _, vec in segs]
        best = int(np.argmax(sims))
        return {"offset_s": segs[best][0], "duration_s": segs[best][1], "score": sims[best]}
