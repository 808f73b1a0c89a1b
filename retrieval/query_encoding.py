"""Queries as the search channels see them: a vector, a token set for the re-ranker (from the
same encoder call), and words (typed text, or what a spoken query says, heard in the same pass
as its vector)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from retrieval.hybrid import spoken_words
from retrieval.modality import ALL_MODALITIES, Modality

if TYPE_CHECKING:
    from retrieval.encoders.base import Encoder
    from retrieval.results import Query


@dataclass
class EncodedQuery:
    vector: np.ndarray
    modality: str
    tokens: np.ndarray | None = None
    words: str | None = None  # typed text, or what a spoken query says (when enough to search by)
    heard: str | None = None  # everything a spoken query's transcript said, for display


def encode_queries(
    encoder: Encoder, queries: Sequence[Query], with_tokens: bool
) -> list[EncodedQuery]:
    """Vectors and, with_tokens, token sets from the SAME encoder call; a spoken query's
    transcript from the same pass as its vector."""
    out: list[EncodedQuery | None] = [None] * len(queries)
    for modality in ALL_MODALITIES:
        idx = [i for i, q in enumerate(queries) if q.modality == modality]
        if not idx:
            continue
        if modality == Modality.AUDIO:
            described = encoder.describe_audio([q.audio for i in idx if (q := queries[i]).audio])
            for i, d in zip(idx, described, strict=True):
                out[i] = EncodedQuery(
                    d.vector, "audio", None, spoken_words(d.transcript), d.transcript
                )
            continue
        payload = [queries[i].text if modality == Modality.TEXT else queries[i].image for i in idx]
        if with_tokens:
            vecs, sets = encoder.encode_with_tokens(modality, payload)
        else:
            vecs, sets = encoder.encode(modality, payload), None
        for j, i in enumerate(idx):
            out[i] = EncodedQuery(
                vecs[j], str(modality), None if sets is None else sets[j], queries[i].text
            )
    return [e for e in out if e is not None]
