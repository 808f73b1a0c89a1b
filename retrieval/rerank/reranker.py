"""The re-ranker's verbs (`score`, `rank`, and the search service's `rerank`) and its artifact.

Two stages over the over-fetched candidates:
1. cross-attention: score = first-stage cosine + alpha * match logit (retrieval.rerank.model).
   The model is trained with the first-stage cosine as a fixed offset; alpha is chosen on the
   VALIDATION splits (indexer/train_reranker/train.py). alpha = 0 is exactly the first stage.
2. query-bank hubness correction of the top of that list (retrieval.rerank.bank), with its k and
   beta chosen on out-of-fold and validation data (indexer/train_reranker/hubness.py). beta = 0 skips it.
Both stages' parameters and the bank live in one artifact, keyed by the embedding space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import ModelUnavailableError, SpaceMismatchError
from retrieval.rerank.bank import META_KEYS as BANK_META_KEYS
from retrieval.rerank.bank import QueryBank
from retrieval.rerank.model import MODALITY_IDS, CrossReranker, RerankerConfig
from retrieval.results import Candidates, Hit, RerankQuery

if TYPE_CHECKING:
    import torch

ARTIFACT_FORMAT = "crossmedia-reranker/1"


@dataclass
class TokenSet:
    """One item's stored tokens (n, D) (row 0 = its vector), its modality, and for candidates the
    catalogue id and first-stage score."""

    tokens: np.ndarray
    modality: str
    id: int = -1
    first_stage: float | None = None


def pad_tokens(sets: Sequence[np.ndarray], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """[(n_i, D)] -> float32 (B, T, D) zero-padded, bool keep (B, T); T = max n_i (<= max_tokens)."""
    t = min(max(len(s) for s in sets), max_tokens)
    d = sets[0].shape[1]
    x = np.zeros((len(sets), t, d), np.float32)
    keep = np.zeros((len(sets), t), bool)
    for i, s in enumerate(sets):
        n = min(len(s), t)
        x[i, :n] = s[:n]
        keep[i, :n] = True
    return x, keep


class CrossAttentionReranker:
    def __init__(
        self,
        model: CrossReranker,
        space_key: str,
        alpha: float,
        version: str,
        meta: dict[str, Any] | None = None,
        bank: QueryBank | None = None,
    ) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        self.space_key = space_key
        self.alpha = float(alpha)
        self.version = version
        self.meta = dict(meta or {})
        self.bank = bank

    # -- verbs ---------------------------------------------------------------------------------
    def match(self, query: TokenSet, candidates: Sequence[TokenSet]) -> np.ndarray:
        """Raw match logits (C,), one forward pass for all candidates."""
        import torch

        if not candidates:
            return np.zeros(0, np.float32)
        q, qk = pad_tokens([query.tokens], self.cfg.max_tokens)
        c, ck = pad_tokens([s.tokens for s in candidates], self.cfg.max_tokens)
        n = len(candidates)
        with torch.inference_mode():
            out = self.model(
                torch.from_numpy(q).expand(n, -1, -1),
                torch.from_numpy(qk).expand(n, -1),
                _modality_ids([query.modality] * n),
                torch.from_numpy(c),
                torch.from_numpy(ck),
                _modality_ids([s.modality for s in candidates]),
            )
        return out.numpy().astype(np.float32)

    def score(self, query: TokenSet, candidates: Sequence[TokenSet]) -> np.ndarray:
        """Final scores (C,): first-stage cosine + alpha * match. A candidate without a first-stage
        score uses the cosine of the two sets' first rows (the items' vectors)."""
        first = np.array(
            [
                s.first_stage
                if s.first_stage is not None
                else float(query.tokens[0].astype(np.float32) @ s.tokens[0].astype(np.float32))
                for s in candidates
            ],
            np.float32,
        )
        if self.alpha == 0.0 or not candidates:
            return first
        return first + self.alpha * self.match(query, candidates)

    def rank(self, query: TokenSet, candidates: Sequence[TokenSet], top_k: int) -> list[Hit]:
        """Top `top_k` candidates by final score, best first (ties: first-stage order)."""
        scores = self.score(query, candidates)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [
            Hit(
                id=candidates[i].id,
                modality=candidates[i].modality,
                score=float(scores[i]),
                first_stage_score=candidates[i].first_stage,
            )
            for i in order
        ]

    def rerank(self, query: RerankQuery, candidates: Candidates, k: int) -> list[Hit]:
        """The search service's seam: reorder the over-fetched candidates (first-stage order).

        Stage 1 needs the query's tokens and every candidate's token set (audio has none yet);
        without them, or when the validated alpha is 0, the first-stage order is kept. Stage 2
        needs only the candidates' vectors and a bank for the query's modality.
        """
        hits = candidates.hits
        if not hits:
            return []
        ranked = hits
        stored = candidates.tokens
        if query.tokens is not None and self.alpha != 0.0 and all(h.id in stored for h in hits):
            cands = [TokenSet(stored[h.id], h.modality, h.id, h.first_stage_score) for h in hits]
            by_id = {h.id: h for h in hits}
            ranked = [
                replace(by_id[r.id], score=r.score)
                for r in self.rank(TokenSet(query.tokens, query.modality), cands, len(cands))
            ]
        if self.bank is not None and all(
            self.bank.covers(query.modality, h.modality) for h in ranked
        ):
            n = min(len(ranked), max(k, self.bank.window))
            vecs = candidates.vectors
            if all(h.id in vecs for h in ranked[:n]):
                hub = self.bank.hubness(np.stack([vecs[h.id] for h in ranked[:n]]), query.modality)
                order = self.bank.correct(np.array([h.score for h in ranked[:n]]), hub, k)
                ranked = [
                    replace(ranked[i], score=float(ranked[i].score - self.bank.beta * hub[i]))
                    for i in order
                ] + ranked[n:]
        return ranked[:k]

    # -- artifact ------------------------------------------------------------------------------
    def save(self, path: Path, extra: dict[str, str] | None = None) -> None:
        import torch
        from safetensors.torch import save_file

        meta = {
            "format": ARTIFACT_FORMAT,
            "config": self.cfg.to_json(),
            "space_key": self.space_key,
            "alpha": repr(self.alpha),
            "version": self.version,
            **self.meta,
            **(extra or {}),
        }
        tensors = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        if self.bank is not None:
            meta.update(self.bank.meta())
            tensors.update({k: torch.from_numpy(v) for k, v in self.bank.tensors().items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)


def load_reranker(path: Path, space_key: str | None = None) -> CrossAttentionReranker:
    """Load an artifact; with `space_key`, refuse one trained for another embedding space."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(
            f"Re-ranker artifact {path} is missing. Fix: train it with `crossmedia train-reranker "
            f"--out {path}` (needs ../shared/data), restore it from git, or search with --no-rerank."
        )
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ModelUnavailableError(
            f"{path} is not a {ARTIFACT_FORMAT} artifact (format {meta.get('format')!r})."
        )
    if space_key is not None and meta["space_key"] != space_key:
        raise SpaceMismatchError(
            f"Re-ranker {path.name} was trained for embedding space {meta['space_key']!r}, but the "
            f"encoder is {space_key!r}. Its token sets would mean something else. Fix: retrain it "
            "for this space with `crossmedia train-reranker`, or search with --no-rerank."
        )
    cfg = RerankerConfig.from_json(meta.pop("config"))
    model = CrossReranker(cfg)
    tensors = load_file(str(path))
    model.load_state_dict(
        {k: v for k, v in tensors.items() if not k.startswith("bank.")}, strict=True
    )
    bank = QueryBank.from_artifact(
        {k: v.float().numpy() for k, v in tensors.items() if k.startswith("bank.")}, meta
    )
    skip = ("format", "space_key", "alpha", "version", *BANK_META_KEYS)
    extra = {k: v for k, v in meta.items() if k not in skip}
    return CrossAttentionReranker(
        model, meta["space_key"], float(meta["alpha"]), meta["version"], extra, bank
    )


def _modality_ids(mods: Sequence[str]) -> torch.Tensor:
    import torch

    return torch.tensor([MODALITY_IDS[str(m)] for m in mods], dtype=torch.long)
