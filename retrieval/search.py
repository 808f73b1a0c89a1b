"""The search service: query -> vectors and words -> channels (vector, lexical, transcript) ->
fusion (media first) -> (re-rank) -> metadata. See retrieval/hybrid.py for the channels."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import CrossmediaError
from retrieval.hybrid import (
    RRF_K,
    SPOKEN_WEIGHTS,
    Channel,
    Fused,
    Fuser,
    resolve_mode,
    spoken_words,
    target_modalities,
)
from retrieval.query_encoding import EncodedQuery, encode_queries
from retrieval.results import Candidates, Hit, Query, Reranker, RerankQuery, SearchResult
from retrieval.vector_search import allowed_ids, filtered_search, lexical_search, vector_search

if TYPE_CHECKING:
    from retrieval.catalogue import Catalogue
    from retrieval.encoders.base import Encoder

__all__ = ["TARGETS", "Hit", "Query", "SearchResult", "SearchService", "filtered_search"]

TARGETS = ("image", "text", "audio", "any")
FUSION_DEPTH = 50  # candidates each channel brings to the fusion


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
        self.rrf_k = RRF_K  # the fusion constant (retrieval/hybrid.py)
        self.channel_weights: dict[str, float] = {}  # RRF weight per channel (default 1)
        # For spoken queries, whose words are what Whisper heard (sometimes in a sound effect).
        self.spoken_weights: dict[str, float] = dict(SPOKEN_WEIGHTS)

    def encode_queries(self, queries: Sequence[Query]) -> np.ndarray:
        """Batch-encode mixed queries, grouped by modality; (Q, dim) float32."""
        return np.stack(
            [e.vector for e in encode_queries(self.encoder, queries, with_tokens=False)]
        )

    def search(
        self,
        query: Query,
        *,
        target: str = "any",
        k: int = 10,
        rerank: bool | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> SearchResult:
        return self.search_many(
            [query], target=target, k=k, rerank=rerank, filters=filters, mode=mode
        )[0]

    def search_many(
        self,
        queries: Sequence[Query],
        *,
        target: str = "any",
        k: int = 10,
        rerank: bool | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[SearchResult]:
        self._check(target, k)
        use_rerank = self.reranker is not None and (rerank is None or rerank)
        t0 = time.perf_counter()
        encoded = encode_queries(self.encoder, queries, with_tokens=use_rerank)
        t1 = time.perf_counter()
        rerank_ms: list[float] = []
        fused = self._search_encoded(encoded, target, k, use_rerank, filters, mode, rerank_ms)
        t2 = time.perf_counter()
        search_ms = ((t2 - t1) * 1e3 - sum(rerank_ms)) / len(queries)
        per_query = {"encode": (t1 - t0) * 1e3 / len(queries), "search": search_ms}
        results = []
        for i, (query, enc, units) in enumerate(zip(queries, encoded, fused, strict=True)):
            t3 = time.perf_counter()
            hits = self._hydrate(units, enc.vector)
            timings = {
                **per_query,
                **({"rerank": rerank_ms[i]} if use_rerank else {}),
                "metadata": (time.perf_counter() - t3) * 1e3,
            }
            described = {
                **query.describe(),
                "mode": resolve_mode(mode, bool(enc.words and enc.words.strip())),
            }
            if enc.modality == "audio" and enc.heard:
                described["transcript"] = enc.heard
            results.append(SearchResult(query=described, hits=hits[:k], timings_ms=timings))
        return results

    def search_items(
        self,
        query_ids: Sequence[int],
        *,
        target: str = "any",
        k: int = 10,
        rerank: bool = False,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[list[tuple[int, float, str]]]:
        """Queries that are catalogue items (the recall benchmark): their stored vectors, token
        sets and words (a text item's text, the transcript the system heard in a recording)."""
        self._check(target, k)
        store = self.catalogue.store
        records = store.get_items(list(query_ids))
        vectors = store.vectors_for(list(query_ids), self.encoder.dim)
        tokens = store.token_sets(list(query_ids)) if rerank else {}
        encoded = [
            EncodedQuery(
                vectors[q],
                records[q].modality,
                tokens.get(q),
                _item_words(records[q].modality, records[q].text),
            )
            for q in query_ids
        ]
        use_rerank = rerank and self.reranker is not None
        fused = self._search_encoded(encoded, target, k, use_rerank, filters, mode, lenient=True)
        return [[(u.id, u.score, u.modality) for u in units] for units in fused]

    def _check(self, target: str, k: int) -> None:
        if target not in TARGETS:
            raise CrossmediaError(f"Unknown target {target!r}. Use one of {list(TARGETS)}.")
        if not 1 <= k <= self.max_k:
            raise CrossmediaError(f"k must be between 1 and {self.max_k}, got {k}.")

    def _search_encoded(
        self,
        encoded: Sequence[EncodedQuery],
        target: str,
        k: int,
        use_rerank: bool,
        filters: Mapping[str, Any] | None,
        mode: str | None,
        rerank_ms: list[float] | None = None,
        lenient: bool = False,
    ) -> list[list[Fused]]:
        modes = [resolve_mode(mode, bool(e.words and e.words.strip()), lenient) for e in encoded]
        depth = max(self.rerank_depth(k) if use_rerank else k, FUSION_DEPTH)
        vectors = np.stack([e.vector for e in encoded])
        # The filter's ids, once per call: the first stage, the transcript channel and the
        # fused list (captions can bring in media the first stage filtered out) all use them.
        allowed = (
            allowed_ids(self.catalogue, filters, target_modalities(target)) if filters else None
        )
        first = vector_search(self.catalogue, vectors, target, depth, filters, allowed)
        extra = self._extra_channels(encoded, modes, vectors, target, depth, allowed)
        kept = {m: set(ids.tolist()) for m, ids in (allowed or {}).items()}
        out = []
        for i, (enc, cands) in enumerate(zip(encoded, first, strict=True)):
            first_stage = {c[0]: c[1] for c in cands}
            t = time.perf_counter()
            if use_rerank and cands:  # the re-ranker sees k x overfetch; deeper ones stay behind
                pool = cands[: self.rerank_depth(k)]
                reranked = self._rerank(RerankQuery(enc.vector, enc.modality, enc.tokens), pool, k)
                top = {h[0] for h in reranked}
                cands = reranked + [c for c in cands if c[0] not in top]
            if rerank_ms is not None:
                rerank_ms.append((time.perf_counter() - t) * 1e3)
            channels = [] if modes[i] == "lexical" else [Channel("vector", cands)]
            if modes[i] != "vector" and enc.words:
                channels.append(
                    Channel("lexical", lexical_search(self.catalogue, enc.words, target, depth))
                )
            channels.extend(extra.get(i, []))
            weights = self.spoken_weights if enc.modality == "audio" else self.channel_weights
            units = Fuser(self.catalogue.store, target, self.rrf_k, weights).fuse(channels, k * 4)
            for u in units:
                u.first_stage = first_stage.get(u.id)
            if allowed is not None:
                units = [u for u in units if u.id in kept[u.modality]]
            out.append(units[:k])
        return out

    def _extra_channels(
        self,
        encoded: Sequence[EncodedQuery],
        modes: list[str],
        vectors: np.ndarray,
        target: str,
        depth: int,
        allowed: Mapping[str, np.ndarray] | None,
    ) -> dict[int, list[Channel]]:
        """Hybrid queries' other vector channels: the captions of media (text vectors, standing
        for the media they describe) when the target is image or audio, and a spoken query's
        transcript embedded as text."""
        out: dict[int, list[Channel]] = {}
        hybrid = [i for i, m in enumerate(modes) if m == "hybrid"]
        if hybrid and target in ("image", "audio"):
            rows = self.search_vectors(vectors[hybrid], target="text", k=depth)
            for i, hits in zip(hybrid, rows, strict=True):
                out.setdefault(i, []).append(Channel("caption", hits))
        spoken = [i for i in hybrid if encoded[i].modality == "audio" and encoded[i].words]
        if spoken:
            tv = self.encoder.encode_texts([encoded[i].words or "" for i in spoken])
            rows = vector_search(self.catalogue, tv, target, depth, allowed=allowed)
            for i, hits in zip(spoken, rows, strict=True):
                out.setdefault(i, []).append(Channel("transcript", hits))
        return out

    def _rerank(
        self, query: RerankQuery, cands: list[tuple[int, float, str]], k: int
    ) -> list[tuple[int, float, str]]:
        """Hand the re-ranker the candidates with their stored token sets and vectors."""
        assert self.reranker is not None
        ids = [i for i, _, _ in cands]
        store = self.catalogue.store
        candidates = Candidates(
            hits=[Hit(id=i, modality=m, score=s, first_stage_score=s) for i, s, m in cands],
            tokens=store.token_sets(ids) if query.tokens is not None else {},
            vectors=store.vectors_for(ids, len(query.vector)),
        )
        ranked = self.reranker.rerank(query, candidates, k)
        return [(h.id, h.score, h.modality) for h in ranked[:k]]

    def rerank_depth(self, k: int) -> int:
        """How many first-stage candidates the re-ranker sees for a top k (k x overfetch)."""
        return k * self.overfetch

    def search_vectors(
        self,
        vectors: np.ndarray,
        *,
        target: str = "any",
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> list[list[tuple[int, float, str]]]:
        """First-stage search for a batch of query vectors: [(id, score, modality)] per query."""
        return vector_search(self.catalogue, vectors, target, k, filters)

    def _hydrate(self, units: list[Fused], qvec: np.ndarray) -> list[Hit]:
        records = self.catalogue.store.get_items([u.id for u in units])
        hits = []
        for unit in units:
            item_id, modality = unit.id, unit.modality
            rec = records.get(item_id)
            if rec is None:
                continue  # deleted between search and join
            hit = Hit(
                id=rec.id,
                modality=modality,
                score=unit.score,
                key=rec.key,
                path=rec.path,
                text=rec.text,
                attrs=rec.attrs,
                mime=rec.mime,
                linked=rec.linked,
                matched=unit.matched,
                first_stage_score=unit.score if unit.first_stage is None else unit.first_stage,
            )
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


def _item_words(modality: str, text: str | None) -> str | None:
    """A catalogue item's words as a query: a text's text; what the system heard in a
    recording (when enough to search by); none for an image."""
    if modality == "audio":
        return spoken_words(text)
    return text if modality == "text" else None
