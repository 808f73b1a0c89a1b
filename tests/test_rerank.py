"""The re-ranker model and its verbs: shapes, determinism, score/rank contract, artifact, budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.encoders.starter_tokens import MAX_TOKENS, budget_bytes, pool_rows, to_store
from retrieval.errors import SpaceMismatchError, UnknownModelError
from retrieval.rerank import create_reranker, list_rerankers
from retrieval.rerank.model import CrossReranker, RerankerConfig
from retrieval.rerank.reranker import CrossAttentionReranker, TokenSet, load_reranker, pad_tokens

DIM = 32
SPACE = f"tiny-test|seed0|{DIM}"


def make_reranker(alpha: float = 0.5, seed: int = 0) -> CrossAttentionReranker:
    torch.manual_seed(seed)
    model = CrossReranker(RerankerConfig(token_dim=DIM, d_model=32, n_layer=2, n_head=4))
    torch.nn.init.normal_(model.head.fc.weight)  # the head starts at zero: make it say something
    return CrossAttentionReranker(model, SPACE, alpha, "test-v0")


def token_set(
    rng: np.random.Generator, n: int, modality: str, id_: int = -1, first: float | None = None
) -> TokenSet:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return TokenSet(x.astype(np.float16), modality, id_, first)


def candidates(n: int, seed: int = 1) -> list[TokenSet]:
    rng = np.random.default_rng(seed)
    sizes = [7, 11, 16, 3]
    return [
        token_set(rng, sizes[i % 4], "image", 100 + i, float(rng.uniform(0.1, 0.4)))
        for i in range(n)
    ]


def test_forward_shapes_and_padding_invariance() -> None:
    rr = make_reranker()
    q, qk = pad_tokens([np.ones((5, DIM))], 16)
    c, ck = pad_tokens([np.ones((9, DIM)), np.ones((3, DIM))], 16)
    assert q.shape == (1, 5, DIM) and c.shape == (2, 9, DIM) and ck.sum() == 12
    out = rr.model(
        torch.from_numpy(q).expand(2, -1, -1),
        torch.from_numpy(qk).expand(2, -1),
        torch.zeros(2, dtype=torch.long),
        torch.from_numpy(c),
        torch.from_numpy(ck),
        torch.ones(2, dtype=torch.long),
    )
    assert out.shape == (2,)
    # padding must not change a candidate's logit: score it alone (no padding) and in a batch
    rng = np.random.default_rng(3)
    qs = token_set(rng, 6, "text")
    short, long_ = token_set(rng, 3, "image"), token_set(rng, 16, "image")
    together = rr.match(qs, [short, long_])
    assert together[0] == pytest.approx(rr.match(qs, [short])[0], abs=1e-5)


def test_untrained_head_is_exactly_first_stage() -> None:
    model = CrossReranker(RerankerConfig(token_dim=DIM, d_model=32))
    rr = CrossAttentionReranker(model, SPACE, 1.0, "v")
    cands = candidates(17)
    np.testing.assert_array_equal(
        rr.score(token_set(np.random.default_rng(0), 5, "text"), cands),
        np.array([c.first_stage for c in cands], np.float32),
    )


def test_deterministic_and_batched_equals_single() -> None:
    rr = make_reranker()
    q = token_set(np.random.default_rng(0), 9, "text")
    cands = candidates(17)
    batched = rr.score(q, cands)
    assert batched.shape == (17,) and batched.dtype == np.float32
    np.testing.assert_array_equal(batched, make_reranker().score(q, cands))
    single = np.array([rr.score(q, [c])[0] for c in cands])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    first = np.array([c.first_stage for c in cands], np.float32)
    np.testing.assert_allclose(batched, first + 0.5 * rr.match(q, cands), atol=1e-6)
    assert not np.allclose(batched, first)  # the model changes the scores


def test_rank_contract() -> None:
    rr = make_reranker()
    q = token_set(np.random.default_rng(0), 9, "text")
    cands = candidates(11)
    hits = rr.rank(q, cands, top_k=7)
    scores = rr.score(q, cands)
    assert len(hits) == 7
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [h.id for h in hits] == [cands[i].id for i in np.argsort(-scores, kind="stable")[:7]]
    assert {h.id for h in hits} <= {c.id for c in cands}
    assert all(
        h.first_stage_score == next(c.first_stage for c in cands if c.id == h.id) for h in hits
    )
    assert len(rr.rank(q, cands, top_k=50)) == 11
    assert rr.rank(q, [], top_k=5) == []


def test_first_stage_from_tokens_when_not_given() -> None:
    rr = make_reranker(alpha=0.0)
    rng = np.random.default_rng(5)
    q, c = token_set(rng, 4, "text"), token_set(rng, 6, "image")
    expected = float(q.tokens[0].astype(np.float32) @ c.tokens[0].astype(np.float32))
    assert rr.score(q, [c])[0] == pytest.approx(expected, abs=1e-6)


def test_artifact_round_trip_and_space_refusal(tmp_path: Path) -> None:
    rr = make_reranker(alpha=0.125)
    path = tmp_path / "rr.safetensors"
    rr.save(path, {"depth": "50"})
    back = load_reranker(path, SPACE)
    assert back.alpha == 0.125 and back.version == "test-v0" and back.cfg == rr.cfg
    assert back.meta["depth"] == "50"
    q = token_set(np.random.default_rng(0), 9, "text")
    np.testing.assert_array_equal(back.score(q, candidates(13)), rr.score(q, candidates(13)))
    with pytest.raises(SpaceMismatchError, match="train-reranker"):
        load_reranker(path, "starter|other-heads|256")
    assert path.stat().st_size < 1_000_000


def test_registry_errors() -> None:
    assert "starter-reranker-v2" in list_rerankers()
    with pytest.raises(UnknownModelError, match="Available"):
        create_reranker("nope")


def test_token_budget() -> None:
    assert budget_bytes(256) == 8192
    x = torch.randn(45, 256)  # 3 rows per segment
    pooled = pool_rows(x, MAX_TOKENS - 1)
    assert pooled.shape == (15, 256)
    torch.testing.assert_close(pooled.mean(0), x.mean(0), atol=1e-5, rtol=0)  # equal segments
    assert pool_rows(x[:7], 15).shape == (7, 256)
    arr = to_store(torch.cat([x[:1], pooled]))
    assert arr.dtype == np.float16 and arr.nbytes <= 8192
