"""Text<->audio retrieval scores for the audio alignment job and benchmark.

Metric definitions are retrieval.metrics' (R@k, mAP@10, chance). Texts that are identical count
as one gallery entry, and every audio clip with that text is relevant to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scores(sim: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """`sim` (Q, G) similarities, `relevant` (Q, G) bool -> retrieval.metrics.retrieval_report."""
    from retrieval.metrics import retrieval_report

    sets = [np.flatnonzero(row).tolist() for row in relevant]
    return retrieval_report(sim, list(range(sim.shape[1])), sets, ks=ks)


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
