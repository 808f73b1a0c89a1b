"""Near-duplicates: groups of copies of one item (resized, re-encoded or cropped copies of a
photo) and of items with equal content hashes (exact copies).

Found with the catalogue's own index: every stored vector of a modality is a query for its
`NEIGHBOURS` nearest neighbours, in batches. For images the vectors only propose candidates (at
cosine >= CANDIDATE_COSINE): the shared space is semantic, so other photos of the same scene sit
as close as copies do; each candidate pair is confirmed on pixels (retrieval/fingerprint.py,
similarity >= the threshold). Audio, text, and images whose file cannot be read are decided on
the vectors alone, at cosine >= `vector_threshold`. Confirmed pairs are joined with union-find,
so a group larger than `NEIGHBOURS` still joins through its members. Cost: one k-NN search per
item (no all-pairs scan), one thumbnail per image that has a candidate, and memory for the ids
that have a partner.

Search can collapse a group to its best hit: ingestion with `duplicate_threshold` marks an item
that repeats an earlier one with `attrs.duplicate_of` (the key of the group's first item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import CrossmediaError
from retrieval.fingerprint import ViewCache, pixel_similarity
from retrieval.store.dup_reads import hash_groups, paths_of

if TYPE_CHECKING:
    from retrieval.catalogue import Catalogue
    from retrieval.results import Hit, Query, SearchResult
    from retrieval.search import SearchService

# Chosen on real photos by benchmarks/dedup_bench.py (val split; precision and recall on the
# test split are in benchmarks/RESULTS.md), for the starter model's space.
DEFAULT_THRESHOLD = 0.92  # pixel similarity of a candidate pair of images
CANDIDATE_COSINE = 0.5  # image pairs below this vector cosine are never proposed
VECTOR_THRESHOLD = 0.97  # decided on vectors alone (audio, text, unreadable image files)
NEIGHBOURS = 16
DUPLICATE_OF = "duplicate_of"


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the lowest id is the root

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return sorted((sorted(g) for g in out.values() if len(g) > 1), key=lambda g: g[0])


@dataclass
class DuplicateGroup:
    modality: str
    ids: list[int]
    exact: bool  # every member has the same content hash
    min_score: float  # the weakest link that joined the group (1.0 for exact copies)
    keys: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "ids": self.ids,
            "keys": self.keys,
            "exact": self.exact,
            "min_score": round(self.min_score, 4),
        }


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold <= 1.0:
        raise CrossmediaError(
            f"A duplicate threshold is a cosine similarity in (0, 1], got {threshold}. "
            f"Try the default {DEFAULT_THRESHOLD}."
        )
    return threshold


def iter_vector_pairs(
    cat: Catalogue,
    modality: str,
    threshold: float,
    *,
    batch: int = 1024,
    k: int = NEIGHBOURS,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[list[tuple[int, int, float]]]:
    """Per batch of stored items (in id order): (a, b, cosine), a < b, for each item and each of
    its k nearest neighbours at >= threshold (a pair can come twice: once from each side)."""
    space = cat.space
    if space is None:
        return
    index = cat.index(modality)
    for ids, vecs in cat.store.iter_vectors(modality, space.dim, chunk=batch):
        scores, nbrs = index.search(vecs, min(k + 1, max(index.count(), 1)))
        hit = (scores >= threshold) & (nbrs >= 0) & (nbrs != ids[:, None])
        rows, cols = np.nonzero(hit)
        a, b = ids[rows], nbrs[rows, cols]
        yield list(
            zip(
                np.minimum(a, b).tolist(),
                np.maximum(a, b).tolist(),
                scores[rows, cols].tolist(),
                strict=True,
            )
        )
        if on_batch is not None:
            on_batch(len(ids))


def vector_pairs(
    cat: Catalogue, modality: str, threshold: float, **kw: Any
) -> list[tuple[int, int, float]]:
    """All of `iter_vector_pairs` in one list (small catalogues, benchmarks)."""
    return [p for chunk in iter_vector_pairs(cat, modality, threshold, **kw) for p in chunk]


def find_duplicates(
    cat: Catalogue,
    modality: str,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    vector_threshold: float = VECTOR_THRESHOLD,
    batch: int = 1024,
    k: int = NEIGHBOURS,
    on_batch: Callable[[int], None] | None = None,
) -> list[DuplicateGroup]:
    """Groups (>= 2 items) of copies or equal content hashes, lowest id first."""
    check_threshold(threshold)
    check_threshold(vector_threshold)
    image = modality == "image"
    floor = CANDIDATE_COSINE if image else vector_threshold
    cache = ViewCache()
    pairs: list[tuple[int, int, float]] = []  # only the confirmed ones are kept: bounded memory
    for chunk in iter_vector_pairs(cat, modality, floor, batch=batch, k=k, on_batch=on_batch):
        pairs += confirm_pairs(cat, chunk, threshold, vector_threshold, cache) if image else chunk
    out = group_pairs(modality, pairs, hash_groups(cat.store, modality), 0.0)
    records = cat.store.get_items([i for g in out for i in g.ids])
    for g in out:
        g.keys = [records[i].key for i in g.ids if i in records]
    return out


def confirm_pairs(
    cat: Catalogue,
    pairs: Sequence[tuple[int, int, float]],
    threshold: float,
    vector_threshold: float = VECTOR_THRESHOLD,
    cache: ViewCache | None = None,
) -> list[tuple[int, int, float]]:
    """The candidate image pairs that are copies, each with its pixel similarity (or its
    vector cosine, when a file cannot be read)."""
    cache = cache or ViewCache()
    out = []
    for start in range(0, len(pairs), 4096):
        chunk = pairs[start : start + 4096]
        paths = paths_of(cat.store, sorted({i for a, b, _ in chunk for i in (a, b)}))
        for a, b, cosine in chunk:
            va, vb = cache.get(a, paths.get(a)), cache.get(b, paths.get(b))
            if va is None or vb is None:
                if cosine >= vector_threshold:
                    out.append((a, b, cosine))
                continue
            score = pixel_similarity(va, vb)
            if score >= threshold:
                out.append((a, b, score))
    return out


def group_pairs(
    modality: str,
    pairs: Sequence[tuple[int, int, float]],
    hashed: Sequence[Sequence[int]],
    threshold: float,
) -> list[DuplicateGroup]:
    """Union-find over the pairs at >= threshold and the exact-copy groups."""
    uf = UnionFind()
    kept = [(a, b, s) for a, b, s in pairs if s >= threshold]
    for a, b, _ in kept:
        uf.union(a, b)
    for group in hashed:
        for other in group[1:]:
            uf.union(group[0], other)
    weakest: dict[int, float] = {}
    for a, _, s in kept:
        root = uf.find(a)
        weakest[root] = min(weakest.get(root, 1.0), s)
    exact_sets = {frozenset(g) for g in hashed}
    return [
        DuplicateGroup(
            modality=modality,
            ids=ids,
            exact=frozenset(ids) in exact_sets,
            min_score=weakest.get(ids[0], 1.0),
        )
        for ids in uf.groups()
    ]


def group_key(hit: Hit) -> str:
    """The group a hit belongs to: its `duplicate_of`, or itself."""
    return str((hit.attrs or {}).get(DUPLICATE_OF) or hit.key or hit.id)


def collapse(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The best hit of each duplicate group, in order, at most k."""
    seen: set[str] = set()
    out = []
    for h in hits:
        g = group_key(h)
        if g not in seen:
            seen.add(g)
            out.append(h)
    return out[:k]


def search_with_collapse(
    service: SearchService,
    query: Query,
    *,
    collapse_duplicates: bool,
    target: str = "any",
    k: int = 10,
    rerank: bool | None = None,
    filters: Mapping[str, Any] | None = None,
    mode: str | None = None,
) -> SearchResult:
    """`service.search`; with `collapse_duplicates`, one hit per duplicate group (searching
    deeper first, so k hits remain when there are that many groups)."""
    depth = min(service.max_k, k * 3) if collapse_duplicates else k
    result = service.search(
        query, target=target, k=depth, rerank=rerank, filters=filters, mode=mode
    )
    if collapse_duplicates:
        result.hits = collapse(result.hits, k)
    return result


def pairs_within(vectors: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(i, j), i < j, of rows of one small batch at cosine >= threshold."""
    sims = vectors @ vectors.T  # (B, B)
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return list(zip(i.tolist(), j.tolist(), strict=True))
