"""Re-rankers: a registry of named factories, and the shipped re-ranker of each embedding space.

`create_reranker(name, space_key=None)` builds one by name (weights are read only here);
`reranker_for_space(encoder)` returns the re-ranker shipped for that encoder's space, or None
when the model has none; `select_reranker(choice, encoder)` is the one place the CLI, the API and
the benchmarks turn a user's choice ("auto", "none" or a name) into a re-ranker. Nothing loads at
import time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from retrieval.errors import UnknownModelError

if TYPE_CHECKING:
    from retrieval.encoders.base import Encoder
    from retrieval.rerank.reranker import CrossAttentionReranker

RerankerFactory = Callable[..., "CrossAttentionReranker"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
STARTER_RERANKER = "starter-reranker-v2"  # for `starter` (heads v1)
# encoder model name (EmbeddingSpace.model) -> the re-ranker shipped for it. `starter-v2` ships
# none yet: `crossmedia train-reranker --model starter-v2 --sets ...,flickr8k` reached +0.006
# mean val R@1 in stage 1 (benchmarks/RESULTS.md, "Starter heads v2"), too little to pay.
SHIPPED: dict[str, str] = {"starter": STARTER_RERANKER}

_REGISTRY: dict[str, RerankerFactory] = {}


def register_reranker(name: str) -> Callable[[RerankerFactory], RerankerFactory]:
    def deco(fn: RerankerFactory) -> RerankerFactory:
        if name in _REGISTRY:
            raise ValueError(f"Re-ranker {name!r} is registered twice.")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_rerankers() -> list[str]:
    return sorted(_REGISTRY)


def create_reranker(name: str, space_key: str | None = None) -> CrossAttentionReranker:
    """Build the re-ranker called `name`; with `space_key`, refuse one made for another space."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"Unknown re-ranker {name!r}. Available: {list_rerankers()}")
    return _REGISTRY[name](space_key=space_key)


def reranker_for_space(encoder: Encoder) -> CrossAttentionReranker | None:
    """The shipped re-ranker for `encoder`'s space; None when its model ships none. An artifact
    trained for other heads of the same model raises SpaceMismatchError (the fix is in it)."""
    name = SHIPPED.get(encoder.space.model)
    if name is None:
        return None
    return create_reranker(name, space_key=encoder.space.key())


def select_reranker(choice: str, encoder: Encoder) -> CrossAttentionReranker | None:
    """ "auto": the re-ranker shipped for the encoder's space (None for models that ship none);
    "none": first-stage results only; anything else: that registered re-ranker, checked against
    the encoder's space."""
    if choice == "auto":
        return reranker_for_space(encoder)
    if choice == "none":
        return None
    return create_reranker(choice, space_key=encoder.space.key())


@register_reranker(STARTER_RERANKER)
def _starter_reranker(space_key: str | None = None) -> CrossAttentionReranker:
    from retrieval.rerank.reranker import load_reranker

    return load_reranker(WEIGHTS_DIR / f"{STARTER_RERANKER}.safetensors", space_key)
