"""The search service's re-rank seam: off equals the first stage exactly, on only reorders the
over-fetched candidates, query tokens come from the same encoder call as the query vector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.encoders.base import Encoder, l2_normalize
from retrieval.modality import Modality
from retrieval.rerank.model import CrossReranker, RerankerConfig
from retrieval.rerank.reranker import CrossAttentionReranker
from retrieval.search import Query, SearchService
from tests.conftest import SHARED_DATA, coco_entries, sqlite_url, write_manifest

N_ITEMS = 11
EXTRA_TOKENS = 3


class TokenTiny(Encoder):
    """The tiny-test encoder plus deterministic token sets (row 0 = the vector), counting calls."""

    def __init__(self, base: Encoder) -> None:
        self.base = base
        self.space = base.space
        self.modalities = base.modalities
        self.mix = (
            np.random.default_rng(7)
            .standard_normal((EXTRA_TOKENS, self.dim, self.dim))
            .astype(np.float32)
        )
        self.calls: list[str] = []

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.calls.append("texts")
        return self.base.encode_texts(texts, batch_size)

    def encode_images(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        self.calls.append("images")
        return self.base.encode_images(images, batch_size)

    def encode_with_tokens(
        self, modality: Modality, items: Sequence, batch_size: int | None = None
    ):  # noqa: ANN201
        self.calls.append("with_tokens")
        v = self.encode(modality, items, batch_size)
        extra = l2_normalize(np.einsum("kij,nj->nki", self.mix, v))  # (N, K, D)
        return v, [
            np.vstack([row[None], e]).astype(np.float16) for row, e in zip(v, extra, strict=True)
        ]


@pytest.fixture(scope="module")
def token_catalogue(tmp_path_factory: pytest.TempPathFactory, tiny_encoder):  # noqa: ANN201
    from indexer.pipeline import Ingestor
    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue

    enc = TokenTiny(tiny_encoder)
    root: Path = tmp_path_factory.mktemp("rerank_catalogue")
    manifest = write_manifest(root / "items.jsonl", coco_entries(N_ITEMS))
    cat = Catalogue.open(root / "data", db_url=sqlite_url(root / "data"))
    report = Ingestor(cat, enc, batch_size=4).ingest(
        ManifestSource(manifest, [SHARED_DATA]), progress=False
    )
    assert not report.failed
    yield cat, enc
    cat.close()


def reranker_for(dim: int, space_key: str, alpha: float = 1.0) -> CrossAttentionReranker:
    torch.manual_seed(0)
    model = CrossReranker(RerankerConfig(token_dim=dim, d_model=32))
    torch.nn.init.normal_(model.head.fc.weight, std=3.0)
    return CrossAttentionReranker(model, space_key, alpha, "test")


QUERIES = [
    "a dog in the snow",
    "people at a table with cake",
    "a red bus",
    "a cat",
    "a boat on water",
]


def test_store_keeps_token_sets(token_catalogue) -> None:  # noqa: ANN001
    cat, enc = token_catalogue
    ids = [r.id for r in cat.store.iter_items()]
    sets = cat.store.token_sets(ids)
    assert set(sets) == set(ids)
    vecs = cat.store.vectors_for(ids, enc.dim)
    for i in ids:
        assert sets[i].shape == (1 + EXTRA_TOKENS, enc.dim)
        np.testing.assert_allclose(sets[i][0], vecs[i], atol=2e-3)


def test_no_rerank_equals_first_stage_exactly(token_catalogue) -> None:  # noqa: ANN001
    cat, enc = token_catalogue
    rr = reranker_for(enc.dim, enc.space.key())
    with_rr = SearchService(cat, enc, reranker=rr, overfetch=2)
    plain = SearchService(cat, enc)
    for text in QUERIES:
        off = with_rr.search(Query(text=text), mode="vector", target="image", k=3, rerank=False)
        base = plain.search(Query(text=text), mode="vector", target="image", k=3)
        first = plain.search_vectors(enc.encode_texts([text]), target="image", k=3)[0]
        assert [(h.id, h.score) for h in off.hits] == [(h.id, h.score) for h in base.hits]
        assert [(h.id, h.score) for h in off.hits] == [(i, s) for i, s, _ in first]
        assert "rerank" not in off.timings_ms


def test_rerank_only_reorders_the_overfetched_candidates(token_catalogue) -> None:  # noqa: ANN001
    cat, enc = token_catalogue
    rr = reranker_for(enc.dim, enc.space.key())
    svc = SearchService(cat, enc, reranker=rr, overfetch=2)
    changed = 0
    for text in QUERIES:
        res = svc.search(Query(text=text), mode="vector", target="image", k=3)
        pool = svc.search_vectors(enc.encode_texts([text]), target="image", k=svc.rerank_depth(3))[
            0
        ]
        first = {i: s for i, s, _ in pool}
        assert len(res.hits) == 3 and {h.id for h in res.hits} <= set(first)
        assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
        assert all(h.first_stage_score == pytest.approx(first[h.id]) for h in res.hits)
        assert {"encode", "search", "rerank", "metadata"} <= set(res.timings_ms)
        assert all(h.path for h in res.hits)  # metadata joined after re-ranking
        changed += [h.id for h in res.hits] != [i for i, _, _ in pool[:3]]
    assert changed  # the re-ranker really reordered something


def test_query_vector_and_tokens_from_one_encoder_call(token_catalogue) -> None:  # noqa: ANN001
    cat, enc = token_catalogue
    svc = SearchService(cat, enc, reranker=reranker_for(enc.dim, enc.space.key()), overfetch=2)
    enc.calls.clear()
    svc.search(Query(text="a dog"), mode="vector", target="image", k=3)
    assert enc.calls == ["with_tokens", "texts"]
    enc.calls.clear()
    svc.search(Query(text="a dog"), mode="vector", target="image", k=3, rerank=False)
    assert enc.calls == ["texts"]


def test_rerank_vectors_for_catalogue_queries(token_catalogue) -> None:  # noqa: ANN001
    cat, enc = token_catalogue
    texts = [r.id for r in cat.store.iter_items() if r.modality == "text"][:7]
    vecs = cat.store.vectors_for(texts, enc.dim)
    q = np.stack([vecs[i] for i in texts])
    plain = SearchService(cat, enc)
    assert plain.search_items(texts, target="image", k=3, mode="vector") == plain.search_vectors(
        q, target="image", k=3
    )
    svc = SearchService(cat, enc, reranker=reranker_for(enc.dim, enc.space.key()), overfetch=2)
    pools = svc.search_vectors(q, target="image", k=6)
    rows = svc.search_items(texts, target="image", k=3, rerank=True, mode="vector")
    for row, pool in zip(rows, pools, strict=True):
        assert len(row) == 3 and {i for i, _, _ in row} <= {i for i, _, _ in pool}
    # alpha = 0 is exactly the first stage
    zero = SearchService(
        cat, enc, reranker=reranker_for(enc.dim, enc.space.key(), alpha=0.0), overfetch=2
    )
    assert [
        [i for i, _, _ in r]
        for r in zero.search_items(texts, target="image", k=3, rerank=True, mode="vector")
    ] == [[i for i, _, _ in r] for r in plain.search_vectors(q, target="image", k=3)]
