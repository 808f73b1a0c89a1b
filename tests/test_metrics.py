from __future__ import annotations

import numpy as np
import pytest

from retrieval.metrics import (
    average_precision_at_k,
    chance_recall,
    map_at_k,
    rank_ids,
    recall_at_k,
    retrieval_report,
)


def test_recall_any_relevant_counts():
    ranked = [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]]
    relevant = [{"a"}, {"a", "b"}, {"x", "a"}]
    assert recall_at_k(ranked, relevant, 1) == pytest.approx(1 / 3)  # only query 0
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(2 / 3)  # + query 1 ("a" at 2)
    assert recall_at_k(ranked, relevant, 3) == pytest.approx(1.0)


def test_average_precision_hand_computed():
    # Relevant at ranks 1 and 3 of 2 relevant: (1/1 + 2/3) / 2.
    assert average_precision_at_k(["r1", "x", "r2", "y"], {"r1", "r2"}, 10) == pytest.approx(5 / 6)
    # Relevant at rank 2 only, 3 relevant in total: (1/2) / 3.
    assert average_precision_at_k(["x", "r1", "y"], {"r1", "r2", "r3"}, 10) == pytest.approx(1 / 6)
    # More relevant items than k: normalised by k, so a perfect top-2 scores 1.
    assert average_precision_at_k(["a", "b", "c"], {"a", "b", "c"}, 2) == pytest.approx(1.0)
    assert average_precision_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_map_is_mean_of_ap():
    ranked = [["r1", "x", "r2"], ["x", "r1", "y"]]
    relevant = [{"r1", "r2"}, {"r1", "r2", "r3"}]
    assert map_at_k(ranked, relevant, 10) == pytest.approx((5 / 6 + 1 / 6) / 2)


def test_rank_ids_from_scores_with_stable_ties():
    scores = np.array([[0.1, 0.9, 0.5], [0.2, 0.2, 0.7]])
    assert rank_ids(scores, ["a", "b", "c"], 3) == [["b", "c", "a"], ["c", "a", "b"]]
    with pytest.raises(ValueError, match="scores must be"):
        rank_ids(scores, ["a", "b"], 1)


def test_query_without_relevant_items_is_an_error():
    with pytest.raises(ValueError, match="no relevant item"):
        recall_at_k([["a"]], [set()], 1)


def test_chance_recall_matches_closed_forms():
    assert chance_recall(10, 1, 1) == pytest.approx(0.1)
    assert chance_recall(10, 1, 5) == pytest.approx(0.5)
    assert chance_recall(10, 2, 1) == pytest.approx(0.2)
    assert chance_recall(4, 2, 3) == pytest.approx(1.0)  # 3 picks of 4 must hit one of 2


def test_report_on_identity_scores_is_perfect():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(11, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # self-similarity is then the row maximum
    report = retrieval_report(x @ x.T, list(range(11)), [{i} for i in range(11)])
    assert report["R@1"] == 1.0 and report["mAP@10"] == 1.0
    assert report["queries"] == 11 and report["gallery"] == 11
    assert report["chance_R@1"] == pytest.approx(1 / 11)
