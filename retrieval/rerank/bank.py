"""Query-bank hubness correction: the re-ranker's second stage.

In a dual-encoder space some items are "hubs": close to many queries at once (a generic caption,
a cluttered photo), so they take the top rank from the right answer. A hub is recognisable
without any query at hand: it is close to many items of a bank of typical queries. For a
candidate c of a query of modality m,

    hub(c) = mean of the `k` largest cosines between c and the bank's vectors of modality m
    final(c) = score(c) - beta * hub(c)

(cross-domain similarity local scaling, with the query's own term dropped since it is the same
for every candidate). The bank is a fixed set of training-split vectors shipped in the
re-ranker's artifact, never the catalogue's own items and never the queries being answered.

The correction only applies to the query -> candidate directions it was chosen on (`pairs`: text to
image and image to text for the starter), and only reorders the first `window` candidates (at
least k) of the list it is given:
on out-of-fold data, letting it also pull items up from lower ranks raised anti-hubs (outliers
that are far from everything) into the top 10 and cost 0.01-0.03 R@10 (see
indexer/train_reranker/hubness.py). A query modality the bank has no vectors for is left as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

META_KEYS = (
    "hub_k",
    "hub_beta",
    "hub_window",
    "hub_pairs",
)  # the bank's entries in an artifact's metadata


@dataclass
class QueryBank:
    vectors: Mapping[str, np.ndarray]  # query modality -> (N, D) L2-normalised rows
    k: int = 25
    beta: float = 0.0
    window: int = 10
    # (query modality, candidate modality) directions (k, beta) were chosen on; no other is touched
    pairs: tuple[tuple[str, str], ...] = (("text", "image"), ("image", "text"))

    def __post_init__(self) -> None:
        if self.k < 1 or self.window < 1:
            raise ValueError(
                f"QueryBank needs k >= 1 and window >= 1 (got k={self.k}, window={self.window})."
            )
        self.vectors = {
            m: np.ascontiguousarray(v, dtype=np.float32) for m, v in self.vectors.items()
        }

    def covers(self, query_modality: str, candidate_modality: str) -> bool:
        return (
            self.beta != 0.0
            and (str(query_modality), str(candidate_modality)) in self.pairs
            and len(self.vectors.get(str(query_modality), ())) > 0
        )

    def hubness(self, candidates: np.ndarray, query_modality: str) -> np.ndarray:
        """(C, D) candidate vectors -> (C,) mean of each one's top-k cosines to the bank."""
        bank = self.vectors[str(query_modality)]
        sims = np.asarray(candidates, np.float32) @ bank.T  # (C, N)
        k = min(self.k, bank.shape[0])
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]  # (C, k), unordered
        return top.mean(axis=1)

    def correct(self, scores: np.ndarray, hub: np.ndarray, k: int) -> np.ndarray:
        """Positions into `scores` (C,) (already in ranked order, best first) giving the corrected
        order: the first max(k, window) reordered by score - beta * hub, the rest unchanged."""
        n = min(len(scores), max(k, self.window))
        head = np.asarray(scores[:n], np.float64) - self.beta * np.asarray(hub[:n], np.float64)
        order = np.argsort(-head, kind="stable")
        return np.concatenate([order, np.arange(n, len(scores))]).astype(np.int64)

    # -- artifact tensors ----------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        return {f"bank.{m}": np.asarray(v, np.float16) for m, v in self.vectors.items() if len(v)}

    def meta(self) -> dict[str, str]:
        pairs = ",".join(f"{q}>{c}" for q, c in self.pairs)
        return dict(
            zip(
                META_KEYS,
                (str(self.k), repr(float(self.beta)), str(self.window), pairs),
                strict=True,
            )
        )

    @classmethod
    def from_artifact(
        cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, str]
    ) -> QueryBank | None:
        vecs = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("bank.")}
        if not vecs or "hub_beta" not in meta:
            return None
        pairs: tuple[tuple[str, str], ...] = tuple(
            (q, c) for q, _, c in (p.partition(">") for p in meta["hub_pairs"].split(",") if p)
        )
        return cls(
            vecs,
            k=int(meta["hub_k"]),
            beta=float(meta["hub_beta"]),
            window=int(meta["hub_window"]),
            pairs=pairs,
        )
