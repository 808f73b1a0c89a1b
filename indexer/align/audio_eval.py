"""Retrieval scores for the audio alignment job and benchmark (exact, brute force).

R@k: fraction of queries with at least one relevant item in the top k. mAP@10: mean over queries
of AP@10 = sum_{k<=10} P@k * rel_k / min(#relevant, 10). Texts that are identical count as one
gallery entry, and every audio clip with that text is relevant to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scores(sim: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """`sim` (Q, G) similarities, `relevant` (Q, G) bool. Ties are broken by gallery order."""
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)  # (Q, G) in rank order
    out: dict = {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
    top = hits[:, :10].astype(np.float64)
    precision = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    denom = np.minimum(relevant.sum(axis=1), 10).clip(min=1)
    out["mAP@10"] = float(((precision * top).sum(axis=1) / denom).mean())
    out["queries"] = int(sim.shape[0])
    out["gallery"] = int(sim.shape[1])
    # Chance R@1: expected share of relevant items in the gallery for a random ranking.
    out["chance_R@1"] = float((relevant.sum(axis=1) / sim.shape[1]).mean())
    return out


def text_gallery(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts (first-seen order) and, per audio item, the index of its text."""
    unique: dict[str, int] = {}
    index = np.array([unique.setdefault(t, len(unique)) for t in texts])
    return list(unique), index


def both_directions(audio: np.ndarray, text: np.ndarray, text_index: np.ndarray) -> dict:
    """audio (N, D) and unique-text (U, D) vectors, L2-normalised; item i has text text_index[i]."""
    rel = text_index[:, None] == np.arange(len(text))[None, :]  # (N, U)
    sim = audio @ text.T
    return {"audio_to_text": scores(sim, rel), "text_to_audio": scores(sim.T, rel.T)}
