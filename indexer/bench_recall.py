"""`crossmedia bench recall`: build a temporary catalogue from a manifest and measure recall@k
through the real search path (ingestion, FAISS, re-ranker when on) for every direction the data
allows.

Protocol (printed with the numbers):
- captioned sets: a caption query is correct when any item carrying that exact caption is
  retrieved; a media query when any of its captions is (identical captions on several items are
  all relevant, so the caption gallery holds each distinct caption once).
- labelled sets: one prompt per label ("a photo of a {label}" for images, "the sound of a
  {label}" for audio, or --label-prompt); a prompt query counts any item with that label as
  relevant, and a media query is correct when its label's prompt is retrieved.
- honest galleries: no media item is linked to the texts under test, and media items carry no
  name, label or attribute in the lexical channel: a media item is found only through its content
  (pixels, sound, and the transcript the system itself hears). Queries are catalogue items: a
  text query's words are its text, a recording's are what the system heard in it.
- mode: `hybrid` (default) fuses the vector channel with the lexical one (and, for recordings,
  their transcript's text vector) wherever the query has words; `vector` is the first stage.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.pipeline import Ingestor
from indexer.sources import Entry, ManifestSource
from retrieval.catalogue import Catalogue
from retrieval.encoders import DEFAULT_MODEL, create_encoder
from retrieval.metrics import chance_recall, map_at_k, recall_at_k
from retrieval.splits import split_of

DEFAULT_PROMPTS = {"image": "a photo of a {label}", "audio": "the sound of a {label}"}
KS = (1, 5, 10)


@dataclass
class _Gallery:
    entries: list[Entry]
    texts: dict[str, str]  # text key -> text (distinct captions or label prompts)
    relevant_text: dict[str, set[str]]  # media key -> text keys
    relevant_media: dict[str, set[str]]  # text key -> media keys


def _build_gallery(manifest: Path, split: str, label_prompt: str | None) -> _Gallery:
    entries = [e for e in ManifestSource(manifest) if not e.error]
    if split != "all":
        entries = [e for e in entries if split_of(e.key) == split]
    texts: dict[str, str] = {}
    rel_text: dict[str, set[str]] = defaultdict(set)
    rel_media: dict[str, set[str]] = defaultdict(set)
    kept = []
    for e in entries:
        media_keys = [
            e.key if i == 0 else f"{e.key}#{ref.modality}" for i, ref in enumerate(e.media)
        ]
        if e.captions:
            text_keys = []
            for cap in e.captions:
                tkey = f"text:{cap}"
                texts[tkey] = cap
                text_keys.append(tkey)
            kept.append(Entry(key=e.key, media=e.media, attrs=e.attrs, where=e.where))
        elif "label" in e.attrs and e.media:
            modality = str(e.media[0].modality)
            template = label_prompt or DEFAULT_PROMPTS[modality]
            prompt = template.format(label=e.attrs["label"])
            tkey = f"text:{prompt}"
            texts[tkey] = prompt
            text_keys = [tkey]
            kept.append(Entry(key=e.key, media=e.media, attrs=e.attrs, where=e.where))
        else:
            continue
        for mk in media_keys:
            rel_text[mk].update(text_keys)
            for tk in text_keys:
                rel_media[tk].add(mk)
    return _Gallery(kept, texts, dict(rel_text), dict(rel_media))


def run_recall_bench(
    manifest: Path,
    *,
    model: str = DEFAULT_MODEL,
    split: str = "all",
    rerank: bool = False,
    label_prompt: str | None = None,
    progress: bool = True,
    mode: str | None = None,
    data_dir: Path | None = None,
    rrf_k: int | None = None,
    encoder: Any = None,
) -> dict[str, Any]:
    """Build the gallery's catalogue (in `data_dir` to keep it for later runs, which then only
    re-hash the files; else a temporary folder) and measure every direction. `encoder`: an
    already built encoder of `model` (benchmarks that run many galleries load it once)."""
    from retrieval.rerank import select_reranker
    from retrieval.search import SearchService

    gallery = _build_gallery(manifest, split, label_prompt)
    if not gallery.entries:
        raise ValueError(f"No usable items in {manifest} for split {split!r}.")
    encoder = encoder or create_encoder(model)
    with (
        tempfile.TemporaryDirectory(prefix="crossmedia-bench-") as tmp,
        Catalogue.open(data_dir or Path(tmp) / "cat") as cat,
    ):
        cat.store.set_lexical_fields(["text"])  # content only: see the protocol above
        ing = Ingestor(cat, encoder)
        report = ing.ingest(_ListSource(gallery), progress=progress)
        reranker = select_reranker("auto" if rerank else "none", encoder)
        if rerank and reranker is None:
            raise ValueError(f"No re-ranker is shipped for model {model!r}; run with --no-rerank.")
        service = SearchService(cat, encoder, reranker=reranker)
        service.rrf_k = rrf_k or service.rrf_k
        run = {"service": service, "rerank": rerank, "mode": mode}
        tasks = _all_tasks(cat, gallery, run)
    return {
        "model": model,
        "manifest": str(manifest),
        "split": split,
        "rerank": rerank,
        "mode": mode or "hybrid",
        "skipped_files": len(report.failed),
        "tasks": tasks,
    }


def _all_tasks(
    cat: Catalogue, gallery: _Gallery, run: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """text -> media and media -> text for each media modality in the gallery."""
    key_of: dict[int, str] = {}
    by_mod: dict[str, list[int]] = defaultdict(list)
    for rec in cat.store.iter_items():
        key_of[rec.id] = rec.key
        by_mod[rec.modality].append(rec.id)
    run["key_of"] = key_of
    text_ids = sorted(by_mod.get("text", []))
    tasks: dict[str, dict[str, float]] = {}
    for modality in ("image", "audio"):
        media_ids = sorted(by_mod.get(modality, []))
        if not media_ids or not text_ids:
            continue
        mkeys = {key_of[m] for m in media_ids}
        # text -> media: queries are the gallery texts that describe at least one such item
        q_ids = [t for t in text_ids if gallery.relevant_media.get(key_of[t], set()) & mkeys]
        rel = [gallery.relevant_media[key_of[t]] & mkeys for t in q_ids]
        tasks[f"text_to_{modality}"] = _run(run, q_ids, rel, modality, len(media_ids))
        rel = [gallery.relevant_text[key_of[m]] for m in media_ids]
        tasks[f"{modality}_to_text"] = _run(run, media_ids, rel, "text", len(text_ids))
    return tasks


def _run(
    run: dict[str, Any], query_ids: list[int], relevant: list[set[str]], target: str, gallery: int
) -> dict[str, float]:
    k = max(KS)
    service, key_of = run["service"], run["key_of"]
    ranked: list[list[str]] = []
    for start in range(0, len(query_ids), 256):
        rows = service.search_items(
            query_ids[start : start + 256],
            target=target,
            k=k,
            rerank=run["rerank"],
            mode=run["mode"],
        )
        ranked.extend([[key_of[i] for i, _, _ in row] for row in rows])
    out: dict[str, float] = {f"R@{kk}": recall_at_k(ranked, relevant, kk) for kk in KS}
    out["mAP@10"] = map_at_k(ranked, relevant, 10)
    out["queries"] = len(query_ids)
    out["gallery"] = gallery
    out["chance_R@1"] = float(np.mean([chance_recall(gallery, len(r), 1) for r in relevant]))
    out["chance_R@10"] = float(np.mean([chance_recall(gallery, len(r), 10) for r in relevant]))
    return out


class _ListSource:
    """The bench's entries (media and distinct texts) as an ingestion source."""

    def __init__(self, g: _Gallery) -> None:
        self.name = "bench"
        self._entries = list(g.entries) + [
            Entry(key=tkey, text=text, where=tkey) for tkey, text in sorted(g.texts.items())
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):  # noqa: ANN204
        return iter(self._entries)


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Recall of {result['model']} on {result['manifest']} (split: {result['split']}, "
        f"mode: {result.get('mode', 'hybrid')}, re-rank: {'on' if result['rerank'] else 'off'})",
        "",
        "| task | R@1 | R@5 | R@10 | mAP@10 | queries | gallery | chance R@1 | chance R@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, m in result["tasks"].items():
        lines.append(
            f"| {task} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['R@10']:.3f} | {m['mAP@10']:.3f} | "
            f"{m['queries']} | {m['gallery']} | {m['chance_R@1']:.3f} | {m['chance_R@10']:.3f} |"
        )
    lines += [
        "",
        "Protocol: " + " ".join(__doc__.split("Protocol (printed with the numbers):")[1].split()),
    ]
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(
        {
            "model": result["model"],
            "split": result["split"],
            "rerank": result["rerank"],
            "mode": result.get("mode"),
            "tasks": result["tasks"],
        },
        indent=2,
    )
