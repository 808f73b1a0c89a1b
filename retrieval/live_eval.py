"""`crossmedia eval`: how well search works on the live catalogue itself.

Protocol (the same as `crossmedia bench recall --mode vector`, on the catalogue's own items):
- sample up to N captioned media items (seeded), per media modality;
- queries: the distinct caption texts of the sampled items, each searched with its stored caption
  item's vector (and token set, for the re-ranker) against the WHOLE live index of that modality;
- relevant: every media item of that modality in the catalogue carrying a caption with exactly
  that text (identical captions on several items are all relevant);
- first stage: the vector channel only, since a query's own caption item is in the catalogue
  and the caption and lexical channels would find its media through it; re-ranked: that first
  stage re-ranked by the model's re-ranker (when it ships one).
Reported: R@1/5/10 and mAP@10 with the gallery size and chance level, plus a drift figure
(retrieval/drift.py). The last result is kept in the data directory for `/metrics` and the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.drift import drift_report
from retrieval.errors import CrossmediaError
from retrieval.fsutil import atomic_write_json
from retrieval.metrics import chance_recall, map_at_k, recall_at_k

if TYPE_CHECKING:
    from retrieval.catalogue import Catalogue
    from retrieval.search import SearchService

KS = (1, 5, 10)
LAST_EVAL = "last_eval.json"
MEDIA = ("image", "audio")


def sample_captioned(cat: Catalogue, modality: str, n: int, seed: int = 0) -> dict[int, list[int]]:
    """Up to n media ids of `modality` with at least one caption: media id -> caption ids."""
    ids = cat.store.ids(modality)
    order = np.random.default_rng(seed).permutation(len(ids))
    out: dict[int, list[int]] = {}
    for start in range(0, len(order), 2000):
        chunk = [int(i) for i in ids[order[start : start + 2000]]]
        records = cat.store.get_items(chunk)
        linked = cat.store.modalities_of([t for r in records.values() for t in r.linked])
        for mid in chunk:
            caps = (
                [t for t in records[mid].linked if linked.get(t) == "text"]
                if mid in records
                else []
            )
            if caps:
                out[mid] = caps
            if len(out) >= n:
                return out
    return out


def _queries(
    cat: Catalogue, modality: str, sample: dict[int, list[int]]
) -> tuple[list[int], list[set[int]]]:
    """One query per distinct caption text (its first caption item) and its relevant media."""
    texts = cat.store.get_items(sorted({c for caps in sample.values() for c in caps}))
    first: dict[str, int] = {}
    for cid in sorted(texts):
        first.setdefault(texts[cid].text or "", cid)
    holders = cat.store.media_with_caption_texts(list(first), modality)
    queries, relevant = [], []
    for text, cid in sorted(first.items(), key=lambda kv: kv[1]):
        rel = set(holders.get(text, ()))
        if rel:
            queries.append(cid)
            relevant.append(rel)
    return queries, relevant


def _recall(
    service: SearchService,
    queries: list[int],
    relevant: list[set[int]],
    modality: str,
    rerank: bool,
) -> dict[str, float]:
    ranked: list[list[int]] = []
    for start in range(0, len(queries), 256):
        rows = service.search_items(
            queries[start : start + 256], target=modality, k=max(KS), rerank=rerank, mode="vector"
        )
        ranked.extend([[i for i, _, _ in row] for row in rows])
    out = {f"R@{k}": recall_at_k(ranked, relevant, k) for k in KS}
    out["mAP@10"] = map_at_k(ranked, relevant, 10)
    return out


def run_eval(
    cat: Catalogue, service: SearchService, sample: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Recall of caption queries on the live catalogue, per media modality, plus drift."""
    if sample < 1:
        raise CrossmediaError(f"--sample must be at least 1, got {sample}.")
    tasks: dict[str, dict[str, Any]] = {}
    drift: dict[str, Any] = {}
    for modality in MEDIA:
        picked = sample_captioned(cat, modality, sample, seed)
        if not picked:
            continue
        queries, relevant = _queries(cat, modality, picked)
        gallery = cat.index(modality).count()
        row: dict[str, Any] = {"sampled_media": len(picked), "queries": len(queries)}
        row["gallery"] = gallery
        row["first_stage"] = _recall(service, queries, relevant, modality, rerank=False)
        if service.reranker is not None:
            row["reranked"] = _recall(service, queries, relevant, modality, rerank=True)
        for k in (1, 10):
            row[f"chance_R@{k}"] = float(
                np.mean([chance_recall(gallery, len(r), k) for r in relevant])
            )
        tasks[f"text_to_{modality}"] = row
        vectors = cat.store.vectors_for(sorted(picked), service.encoder.dim)
        head_version = service.encoder.space.head_version
        drift[modality] = drift_report(
            service.reranker, modality, np.stack(list(vectors.values())), head_version
        )
    if not tasks:
        raise CrossmediaError(
            "No captioned image or audio items in this catalogue: `eval` needs media with "
            "captions (index a manifest with a `captions` field)."
        )
    return {
        "model": service.encoder.space.model,
        "sample": sample,
        "seed": seed,
        "tasks": tasks,
        "drift": drift,
    }


def save_last_eval(data_dir: Path, result: dict[str, Any]) -> None:
    atomic_write_json(Path(data_dir) / LAST_EVAL, result)


def load_last_eval(data_dir: Path) -> dict[str, Any] | None:
    """The last `crossmedia eval` result kept in `data_dir`; None when there is none."""
    path = Path(data_dir) / LAST_EVAL
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}: {exc}; run `crossmedia eval` again"}
