"""Drift: how far the catalogue's vectors sit from what the model's heads were trained on.

The reference is the bank of training-split vectors shipped in the re-ranker's artifact
(retrieval/rerank/bank.py), or, for a model that ships no re-ranker, the bank shipped beside its
heads (`<head version>-bank.npz` in retrieval/encoders/weights/, written by
indexer/drift_bank.py): for each catalogue vector, its nearest-neighbour cosine to the bank;
for each bank vector, its nearest-neighbour cosine to the rest of the bank (leave one out). An
item "far" from training is one less like any training item than 95% of training items are to
their nearest neighbour (below the bank's 5th percentile). In-distribution items give a far
share near 5%; a catalogue of another kind of media (drawings, screenshots, medical scans)
gives much more, and its recall is then likely below the benchmarks'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FAR_QUANTILE = 0.05
WARN_SHARE = 0.25  # more than this share of items far from training: warn
_CHUNK = 2048


def nearest_cosines(
    queries: np.ndarray, bank: np.ndarray, leave_one_out: bool = False
) -> np.ndarray:
    """(Q,) the best cosine of each query row to the bank's rows (L2-normalised float32).
    With leave_one_out, `queries` is the bank itself and each row's own match is skipped."""
    q = np.asarray(queries, np.float32)
    b = np.asarray(bank, np.float32)
    out = np.empty(len(q), np.float32)
    for start in range(0, len(q), _CHUNK):
        sims = q[start : start + _CHUNK] @ b.T  # (C, N)
        if leave_one_out:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + start] = -np.inf
        out[start : start + _CHUNK] = sims.max(axis=1)
    return out


def heads_bank_path(head_version: str) -> Path:
    return Path(__file__).parent / "encoders" / "weights" / f"{head_version}-bank.npz"


def training_bank(reranker: Any, head_version: str | None = None) -> dict[str, np.ndarray]:
    """Training vectors per modality: the re-ranker's bank, else the one beside the heads."""
    vectors = getattr(getattr(reranker, "bank", None), "vectors", None)
    if vectors:
        return dict(vectors)
    path = heads_bank_path(head_version) if head_version else None
    if path is None or not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k].astype(np.float32) for k in data.files}


def drift_report(
    reranker: Any, modality: str, vectors: np.ndarray, head_version: str | None = None
) -> dict[str, Any]:
    """Drift of `vectors` (the catalogue's, of `modality`) from the training bank, with a plain
    sentence; `available: False` (and why) when the model ships no bank for that modality."""
    bank = training_bank(reranker, head_version).get(modality)
    if bank is None or len(bank) < 2:
        return {
            "available": False,
            "note": f"no bank of training {modality} vectors ships with this model, "
            "so drift cannot be measured",
        }
    bank = np.asarray(bank, np.float32)
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    ref = nearest_cosines(bank, bank, leave_one_out=True)
    ours = nearest_cosines(vectors, bank)
    cut = float(np.quantile(ref, FAR_QUANTILE))
    share = float(np.mean(ours < cut))
    report: dict[str, Any] = {
        "available": True,
        "items": len(ours),
        "bank": len(bank),
        "mean_nn_cosine": round(float(ours.mean()), 4),
        "training_mean_nn_cosine": round(float(ref.mean()), 4),
        "far_share": round(share, 4),
        "far_cutoff": round(cut, 4),
        "warning": share > WARN_SHARE,
    }
    report["note"] = _sentence(modality, report)
    return report


def _sentence(modality: str, r: dict[str, Any]) -> str:
    pct = f"{100 * r['far_share']:.0f}%"
    base = (
        f"{pct} of the sampled {modality} items are less like any training {modality} than 95% "
        f"of training {modality}s are to their nearest neighbour (5% is expected for data like "
        f"the training set); mean nearest-neighbour cosine {r['mean_nn_cosine']:.3f} vs "
        f"{r['training_mean_nn_cosine']:.3f} within the training bank."
    )
    if not r["warning"]:
        return base + " The catalogue looks like what the model was trained on."
    return (
        "Warning: this catalogue is far from what the model was trained on, so recall is likely "
        "below the published benchmarks; training heads on your own captioned items "
        f"(`crossmedia align`) can help. {base}"
    )
