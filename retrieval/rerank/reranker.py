"""The re-ranker's verbs (`score`, `rank`, and the search service's `rerank`) and its artifact.

Final score of a candidate = first-stage cosine + alpha * match logit. The model is trained with
the first-stage cosine as a fixed offset (the logit it learns is a correction of the dual
encoder); alpha is then chosen on the VALIDATION splits (see indexer/rerank_train.py) and stored
in the artifact. alpha = 0 is exactly the first stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import ModelUnavailableError, SpaceMismatchError
from retrieval.rerank.model import MODALITY_IDS, CrossReranker, RerankerConfig
from retrieval.search import Hit

if TYPE_CHECKING:
    import torch

    from retrieval.catalogue import Catalogue
    from retrieval.search import Query

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
    def __init__(self, model: CrossReranker, space_key: str, alpha: float, version: str,
                 meta: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        self.space_key = space_key
        self.alpha = float(alpha)
        self.version = version
        self.meta = dict(meta or {})

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
                torch.from_numpy(q).expand(n, -1, -1), torch.from_numpy(qk).expand(n, -1),
                _modality_ids([query.modality] * n), torch.from_numpy(c), torch.from_numpy(ck),
                _modality_ids([s.modality for s in candidates]),
            )
        return out.numpy().astype(np.float32)

    def score(self, query: TokenSet, candidates: Sequence[TokenSet]) -> np.ndarray:
        """Final scores (C,): first-stage cosine + alpha * match. A candidate without a first-stage
        score uses the cosine of the two sets' first rows (the items' vectors)."""
        first = np.array([
            s.first_stage if s.first_stage is not None
            else float(query.tokens[0].astype(np.float32) @ s.tokens[0].astype(np.float32))
            for s in candidates
        ], np.float32)
        if self.alpha == 0.0 or not candidates:
            return first
        return first + self.alpha * self.match(query, candidates)

    def rank(self, query: TokenSet, candidates: Sequence[TokenSet], top_k: int) -> list[Hit]:
        """Top `top_k` candidates by final score, best first (ties: first-stage order)."""
        scores = self.score(query, candidates)
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [Hit(id=candidates[i].id, modality=candidates[i].modality, score=float(scores[i]),
                    first_stage_score=candidates[i].first_stage) for i in order]

    def rerank(self, query: Query | None, query_vector: np.ndarray, hits: list[Hit], k: int,
               catalogue: Catalogue, query_tokens: np.ndarray | None = None,
               query_modality: str | None = None) -> list[Hit]:
        """The search service's seam: reorder the over-fetched `hits` by their stored token sets.

        Without query tokens, or when any candidate has no token set (e.g. audio, or a catalogue
        ingested by an encoder without tokens), the first-stage order is kept; so it is, without
        reading the token sets, when the validated alpha is 0.
        """
        if query_tokens is None or not hits or self.alpha == 0.0:
            return hits[:k]
        stored = catalogue.store.token_sets([h.id for h in hits])
        if any(h.id not in stored for h in hits):
            return hits[:k]
        modality = query_modality or (str(query.modality) if query is not None else "text")
        cands = [TokenSet(stored[h.id], h.modality, h.id, h.first_stage_score) for h in hits]
        ranked = self.rank(TokenSet(query_tokens, modality), cands, k)
        by_id = {h.id: h for h in hits}
        return [replace(by_id[r.id], score=r.score) for r in ranked]

    # -- artifact ------------------------------------------------------------------------------
    def save(self, path: Path, extra: dict[str, str] | None = None) -> None:
        from safetensors.torch import save_file

        meta = {"format": ARTIFACT_FORMAT, "config": self.cfg.to_json(), "space_key": self.space_key,
                "alpha": repr(self.alpha), "version": self.version, **self.meta, **(extra or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(tmp), metadata=meta)
        tmp.replace(path)


def load_reranker(path: Path, space_key: str | None = None) -> CrossAttentionReranker:
    """Load an artifact; with `space_key`, refuse one trained for another embedding space."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(
            f"Re-ranker artifact {path} is missing. Fix: train it with `crossmedia train-reranker "
            f"--out {path}` (needs ../shared/data), restore it from git, or search with --no-rerank.")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ModelUnavailableError(f"{path} is not a {ARTIFACT_FORMAT} artifact (format {meta.get('format')!r}).")
    if space_key is not None and meta["space_key"] != space_key:
        raise SpaceMismatchError(
            f"Re-ranker {path.name} was trained for embedding space {meta['space_key']!r}, but the "
            f"encoder is {space_key!r}. Its token sets would mean something else. Fix: retrain it "
            "for this space with `crossmedia train-reranker`, or search with --no-rerank.")
    cfg = RerankerConfig.from_json(meta.pop("config"))
    model = CrossReranker(cfg)
    model.load_state_dict(load_file(str(path)), strict=True)
    extra = {k: v for k, v in meta.items() if k not in ("format", "space_key", "alpha", "version")}
    return CrossAttentionReranker(model, meta["space_key"], float(meta["alpha"]), meta["version"], extra)


def _modality_ids(mods: Sequence[str]) -> torch.Tensor:
    import torch

    return torch.tensor([MODALITY_IDS[str(m)] for m in mods], dtype=torch.long)


def card_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=2, sort_keys=True)
