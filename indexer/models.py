"""Model loading for the CLI and the API: the re-ranker that belongs to an encoder's space."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrieval.encoders.base import Encoder
    from retrieval.search import Reranker


def load_reranker(encoder: Encoder) -> Reranker | None:
    """The shipped re-ranker for this encoder's space, or None when there is none."""
    try:
        from retrieval.rerank import reranker_for_space
    except ImportError:
        return None
    return reranker_for_space(encoder)
