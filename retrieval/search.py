"""The search service: query -> vector -> the target modality's index -> (re-rank) -> metadata."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import CrossmediaError
from retrieval.filters import compile_filter
from retrieval.modality import ALL_MODALITIES, Modality
from retrieval.results import Candidates, Hit, Query, Reranker, RerankQuery, SearchResult

if TYPE_CHECKING:
    from retrieval.catalogue import Catalogue
    from retrieval.index import VectorIndex
    from retrieval.encoders.base import Encoder

__all__ = ["TARGETS", "Hit", "Query", "SearchResult", "SearchService"]

TARGETS = ("image", "text", "audio", "any")


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
               rerank: bool | None = None, filters: Mapping[str, Any] | None = None) -> SearchResult:
        return self.search_many([query], target=target, k=k, rerank=rerank, filters=filters)[0]

    def search_many(self, queries: Sequence[Query], *, target: str = "any", k: int = 10,
                    rerank: bool | None = None, filters: Mapping[str, Any] | None = None) -> list[SearchResult]:
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
            first = None
            if use_rerank and cands:
                t3 = time.perf_counter()
                first = {i: s for i, s, _ in cands}
                cands = self._rerank(RerankQuery(vec, str(query.modality), toks), cands, k)
                timings["rerank"] = (time.perf_counter() - t3) * 1e3
            t4 = time.perf_counter()
            hits = self._hydrate(cands, vec, first)
            timings["metadata"] = (time.perf_counter() - t4) * 1e3
            results.append(SearchResult(query=query.describe(), hits=hits[:k], timings_ms=timings))
        return results

    def _rerank(self, query: RerankQuery, cands: list[tuple[int, float, str]], k: int
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

    def rerank_vectors(self, query_ids: Sequence[int], vectors: np.ndarray, *, target: str = "any",
                       k: int = 10, filters: Mapping[str, Any] | None = None
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
            rec = records.get(qid)
            query = RerankQuery(vec, rec.modality if rec is not None else "text", stored.get(qid))
            out.append(self._rerank(query, cands, k) if cands else [])
        return out

    def search_vectors(self, vectors: np.ndarray, *, target: str = "any", k: int = 10,
                       filters: Mapping[str, Any] | None = None) -> list[list[tuple[int, float, str]]]:
        """First-stage search for a batch of query vectors: [(id, score, modality)] per query.
        With `filters`, the top k among the items that satisfy them (exact for exact indexes)."""
        modalities = [str(m) for m in ALL_MODALITIES] if target == "any" else [target]
        condition = compile_filter(filters) if filters else None
        merged: list[list[tuple[int, float, str]]] = [[] for _ in range(len(vectors))]
        for modality in modalities:
            index = self.catalogue.index(modality)
            if index.count() == 0:
                continue
            if condition is None:
                scores, ids = index.search(vectors, min(k, index.count()))
            else:
                allowed = self.catalogue.store.filter_ids(condition, modality)
                scores, ids = filtered_search(index, vectors, k, allowed)
            for q, (sr, ir) in enumerate(zip(scores, ids, strict=True)):
                merged[q].extend((int(i), float(s), modality) for s, i in zip(sr, ir, strict=True)
                                 if i >= 0)
        return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]

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


PREFILTER_FRACTION = 0.2  # filters letting through at most this share of an index pre-filter


def filtered_search(index: VectorIndex, vectors: np.ndarray, k: int, allowed: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Top k among `allowed` ids. A selective filter becomes an ID selector inside the index
    (pre-filter); a broad one a post-filter with adaptive over-fetch, doubling until every query
    has k allowed hits or the whole index was read."""
    n = index.count()
    if len(allowed) == 0:
        return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
    if len(allowed) <= PREFILTER_FRACTION * n:
        return index.search(vectors, min(k, len(allowed)), among=allowed)
    fetch = min(n, max(2 * k, int(np.ceil(k * n / len(allowed) * 1.5))))
    while True:
        scores, ids = index.search(vectors, fetch)
        ok = np.isin(ids, allowed)
        if fetch >= n or bool((ok.sum(axis=1) >= min(k, len(allowed))).all()):
            break
        fetch = min(n, fetch * 2)
    out_s = np.full((len(vectors), k), -np.inf, np.float32)
    out_i = np.full((len(vectors), k), -1, np.int64)
    for q in range(len(vectors)):
        keep = np.flatnonzero(ok[q])[:k]
        out_s[q, : len(keep)], out_i[q, : len(keep)] = scores[q, keep], ids[q, keep]
    return out_s, out_i
