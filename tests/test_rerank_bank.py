"""The query-bank stage: hubness against a brute-force oracle, the reorder-only-the-window
contract, the directions it touches, the artifact round trip, and the service path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.rerank.bank import QueryBank
from retrieval.rerank.model import CrossReranker, RerankerConfig
from retrieval.rerank.reranker import CrossAttentionReranker, load_reranker
from retrieval.results import Candidates, Hit, Query, RerankQuery
from retrieval.search import SearchService
from tests.test_rerank_service import QUERIES, token_catalogue  # noqa: F401 - fixture

DIM = 33


def unit(rng: np.random.Generator, n: int, d: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(("n_bank", "k"), [(7, 3), (17, 17), (11, 50)])
def test_hubness_equals_brute_force(n_bank: int, k: int) -> None:
    rng = np.random.default_rng(n_bank)
    bank, cands = unit(rng, n_bank), unit(rng, 11)
    qb = QueryBank({"text": bank}, k=k, beta=0.5)
    want = np.array([np.mean(sorted(c @ bank.T, reverse=True)[:k]) for c in cands])
    np.testing.assert_allclose(qb.hubness(cands, "text"), want, atol=1e-6)


def test_correct_reorders_only_the_window() -> None:
    rng = np.random.default_rng(0)
    scores = np.sort(rng.uniform(0.1, 0.5, 17))[::-1]
    hub = rng.uniform(0.0, 1.0, 17)
    qb = QueryBank({"text": unit(rng, 5)}, k=2, beta=1.0, window=7)
    order = qb.correct(scores, hub, k=5)
    assert sorted(order.tolist()) == list(range(17))
    assert set(order[:7].tolist()) == set(range(7))  # the top 7 stay the top 7 ...
    np.testing.assert_array_equal(order[7:], np.arange(7, 17))  # ... and the tail is untouched
    head = scores[:7] - hub[:7]
    assert order[:7].tolist() == np.argsort(-head, kind="stable").tolist()
    assert set(qb.correct(scores, hub, k=12)[:12].tolist()) == set(range(12))
    np.testing.assert_array_equal(
        QueryBank({"text": unit(rng, 5)}, beta=0.0).correct(scores, hub, 5), np.arange(17)
    )  # beta 0 is the identity


def test_covers_only_fitted_directions() -> None:
    qb = QueryBank({"text": unit(np.random.default_rng(1), 4)}, beta=0.5)
    assert qb.covers("text", "image")
    assert not qb.covers("text", "audio")  # chosen on image-text data only
    assert not qb.covers("image", "text")  # no image rows in this bank
    assert not QueryBank({"text": unit(np.random.default_rng(1), 4)}, beta=0.0).covers(
        "text", "image"
    )
    with pytest.raises(ValueError, match="k >= 1"):
        QueryBank({}, k=0)


def test_artifact_round_trip_keeps_the_bank(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    model = CrossReranker(RerankerConfig(token_dim=DIM, d_model=32))
    bank = QueryBank({"text": unit(rng, 7), "image": unit(rng, 11)}, k=3, beta=0.75, window=9)
    CrossAttentionReranker(model, "space", 0.1, "v", bank=bank).save(tmp_path / "r.safetensors")
    back = load_reranker(tmp_path / "r.safetensors", "space")
    assert back.bank is not None and (back.bank.k, back.bank.beta, back.bank.window) == (3, 0.75, 9)
    assert back.bank.pairs == bank.pairs
    cands = unit(rng, 5)
    # fp16 storage: hubness agrees to fp16 precision
    np.testing.assert_allclose(
        back.bank.hubness(cands, "image"), bank.hubness(cands, "image"), atol=2e-3
    )
    assert not any(k.startswith("hub_") for k in back.meta)


def test_service_bank_stage_keeps_the_top_k_set(token_catalogue) -> None:  # noqa: F811, ANN001
    cat, enc = token_catalogue
    torch.manual_seed(0)
    model = CrossReranker(RerankerConfig(token_dim=enc.dim, d_model=32))  # match head is 0
    texts = enc.encode_texts([f"bank caption {i}" for i in range(13)])
    rr = CrossAttentionReranker(
        model, enc.space.key(), 0.0, "t", bank=QueryBank({"text": texts}, k=4, beta=2.0, window=5)
    )
    plain = SearchService(cat, enc)
    bank_svc = SearchService(cat, enc, reranker=rr)
    changed = 0
    for q in QUERIES:
        base = [
            h.id
            for h in plain.search(
                Query(text=q), mode="vector", target="image", k=5, rerank=False
            ).hits
        ]
        got = bank_svc.search(Query(text=q), mode="vector", target="image", k=5).hits
        assert sorted(h.id for h in got) == sorted(base)  # same top 5, maybe another order
        vecs = cat.store.vectors_for([h.id for h in got], enc.dim)
        hub = rr.bank.hubness(np.stack([vecs[h.id] for h in got]), "text")
        assert all(h.first_stage_score is not None for h in got)
        final = [h.first_stage_score - 2.0 * x for h, x in zip(got, hub, strict=True)]
        np.testing.assert_allclose([h.score for h in got], final, atol=1e-5)
        assert final == sorted(final, reverse=True)
        changed += [h.id for h in got] != base
    assert changed > 0  # a strong beta must reorder something, or this test proves nothing


def test_bank_skips_unfitted_directions() -> None:
    rr = CrossAttentionReranker(
        CrossReranker(RerankerConfig(token_dim=DIM, d_model=32)),
        "s",
        0.0,
        "t",
        bank=QueryBank({"text": unit(np.random.default_rng(3), 5)}, beta=5.0),
    )
    hits = [
        Hit(id=i, modality="audio", score=1.0 - i / 10, first_stage_score=1.0 - i / 10)
        for i in range(7)
    ]

    # no vectors given: the audio direction must not need them
    query = RerankQuery(np.zeros(DIM, np.float32), "text")
    assert [h.id for h in rr.rerank(query, Candidates(hits, {}, {}), 5)] == list(range(5))
