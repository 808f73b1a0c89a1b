"""Audio benchmark: encoding throughput and text<->audio recall on the held-out TEST splits.

    nice python -m benchmarks.audio_bench [--cache DIR] [--data-root DIR]

Audio features are cached as `crossmedia align-audio` caches them (built here when missing).

Systems: random vectors (chance), an MFCC-statistics baseline (MFCC mean+std -> the same head,
trained on the same train split against the same locked text side), the Whisper tower + head
(acoustic only), and the Whisper tower + head fused with the transcript (weights from validation).
Writes benchmarks/results/audio.json and the "Audio" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from indexer.align_audio.data import DATASETS, build_cache, load_cached, transcribe_sample
from indexer.align_audio.eval import both_directions, text_gallery
from indexer.align_audio.fusion import (
    fused_vectors,
    load_transcripts,
    phrase_data,
    split_items,
    spoken_vectors,
    tokens,
)
from indexer.align_audio.job import locked_text, train
from indexer.align_audio.train import AudioTrainConfig, embed_head
from indexer.training.paths import cache_dir
from retrieval.encoders.audio_head import load_audio_head
from retrieval.encoders.audio_starter import FusionConfig
from retrieval.encoders.base import l2_normalize

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice python -m benchmarks.audio_bench"


def throughput(root: Path | None, n_clips: int = 24) -> list[dict]:
    """Seconds of audio per CPU second (process time, all threads) on test clips."""
    from retrieval.encoders.audio_whisper import WhisperAudioTower, WhisperTowerConfig
    from retrieval.media.audio import decode_audio

    items = {d: [it for it in its][:n_clips] for d, its in split_items("test", root).items()}
    rows = []
    for compute_type in ("int8", "float32"):
        tower = WhisperAudioTower(WhisperTowerConfig(compute_type=compute_type))
        tower.token_features([decode_audio(items["fsdd"][0].path)])  # warm-up
        for name in ("animal_sounds", "fsdd"):
            clips = [decode_audio(it.path, allow_silence=True) for it in items[name]]
            seconds = sum(c.seconds for c in clips)
            for what, fn in (
                ("encoder", tower.token_features),
                ("encoder+transcribe", lambda c, t=tower: (t.token_features(c), t.transcribe(c))),
            ):
                if what != "encoder" and compute_type != "int8":
                    continue
                cpu, wall = time.process_time(), time.perf_counter()
                fn(clips)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                rows.append(
                    {
                        "data": name,
                        "compute_type": compute_type,
                        "path": what,
                        "clips": len(clips),
                        "audio_s": round(seconds, 1),
                        "audio_s_per_cpu_s": round(seconds / cpu, 2),
                        "audio_s_per_wall_s": round(seconds / wall, 2),
                    }
                )
    return rows


def recall(cache: Path, root: Path | None, model: str = "starter") -> tuple[list[dict], dict]:
    from retrieval.encoders.starter import audio_head_path

    art = load_audio_head(audio_head_path(model))
    text_kind = "minilm" if art.space_key.startswith("minilm") else model
    text_fn, space_key = locked_text(text_kind)
    if space_key != art.space_key:
        raise SystemExit(f"Head trained against {art.space_key}, text side is {space_key}.")
    mfcc_head, _ = train(
        "mfcc", text_fn, cache, AudioTrainConfig(**art.extra.get("align", {})), root
    )
    fusion = FusionConfig(**art.fusion)
    rng = np.random.default_rng(0)
    rows = []

    def add(data: str, systems: dict, tv: np.ndarray, index: np.ndarray) -> None:
        for system, vecs in systems.items():
            for direction, m in both_directions(vecs, tv, index).items():
                rows.append(
                    {
                        "data": data,
                        "system": system,
                        "direction": direction,
                        **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()},
                    }
                )

    for name, its in split_items("test", root).items():
        ids = [it.id for it in its]
        texts, index = text_gallery([it.text for it in its])
        tv = text_fn(texts)
        add(
            name,
            {
                "random": l2_normalize(rng.standard_normal((len(its), tv.shape[1]))),
                "mfcc-stats + head": embed_head(
                    mfcc_head, tokens(load_cached(cache, name, "mfcc", ids))
                ),
                "whisper + head": embed_head(
                    art.head, tokens(load_cached(cache, name, "whisper", ids))
                ),
            },
            tv,
            index,
        )
        # Transcripts exist for a fixed sample (transcribe_sample): compare on that sample.
        sub = [it for it in its if transcribe_sample(it)]
        ids = [it.id for it in sub]
        texts, index = text_gallery([it.text for it in sub])
        tv = text_fn(texts)
        acoustic = embed_head(art.head, tokens(load_cached(cache, name, "whisper", ids)))
        tr = load_transcripts(cache, name, ids)
        spoken = spoken_vectors(text_fn, tr)
        add(
            f"{name} (transcribed sample)",
            {
                "whisper + head": acoustic,
                "whisper + head + transcript": fused_vectors(acoustic, tr, spoken, fusion),
            },
            tv,
            index,
        )
    p = phrase_data(cache, "test", root)
    texts, index = text_gallery(p["texts"])
    tv, tr = text_fn(texts), p["transcripts"]
    spoken = spoken_vectors(text_fn, tr)
    acoustic = embed_head(art.head, p["tokens"])
    add(
        "fsdd_phrases (4 digits)",
        {
            "random": l2_normalize(rng.standard_normal((len(tr), tv.shape[1]))),
            "whisper + head": acoustic,
            "transcript text only": spoken,
            "whisper + head + transcript": fused_vectors(acoustic, tr, spoken, fusion),
        },
        tv,
        index,
    )
    return rows, {
        "text_side": text_kind,
        "space_key": space_key,
        "fusion": asdict(fusion),
        "head_version": art.version,
    }


def section_title(model: str) -> str:
    return "## Audio\n" if model == "starter" else f"## Audio ({model})\n"


def markdown(thr: Sequence[dict], rec: Sequence[dict], meta: dict, model: str) -> str:
    command = COMMAND if model == "starter" else f"{COMMAND} --model {model}"
    out = [
        section_title(model).rstrip("\n"),
        "",
        f"Reproduce: `{command}`",
        "",
        f"Text side: {meta['text_side']} (`{meta['space_key']}`), head `{meta['head_version']}`,"
        f" fusion {meta['fusion']}. Test splits from `retrieval.splits`; CPU, 2 shared cores.",
    ]
    if thr:
        out += [
            "",
            "### Throughput (seconds of audio per second)",
            "",
            "| data | compute | path | clips | audio s | audio s / CPU s | audio s / wall s |",
            "|---|---|---|---|---|---|---|",
        ]
    out += [
        f"| {r['data']} | {r['compute_type']} | {r['path']} | {r['clips']} | {r['audio_s']} | "
        f"{r['audio_s_per_cpu_s']} | {r['audio_s_per_wall_s']} |"
        for r in thr
    ]
    out += [
        "",
        "### Recall on TEST splits",
        "",
        "| data | system | direction | R@1 | R@5 | R@10 | mAP@10 | queries | gallery | chance R@1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    out += [
        f"| {r['data']} | {r['system']} | {r['direction']} | {r['R@1']:.3f} | {r['R@5']:.3f} | "
        f"{r['R@10']:.3f} | {r['mAP@10']:.3f} | {r['queries']} | {r['gallery']} | "
        f"{r['chance_R@1']:.3f} |"
        for r in rec
    ]
    return "\n".join(out) + "\n"


def write_section(path: Path, section: str, title: str = "## Audio\n") -> None:
    text = path.read_text() if path.is_file() else "# Benchmark results\n\n"
    start = text.find(title)
    if start >= 0:  # replace only our own section
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help="default: <user cache>/audio")
    ap.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="default: $CROSSMEDIA_TRAIN_DATA or ../shared/data beside the checkout",
    )
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--model", default="starter", help="starter config: its text side and head")
    args = ap.parse_args(argv)
    import torch

    cache = args.cache or cache_dir("audio")
    build_cache(cache, DATASETS, ("val", "test"), args.data_root)

    # The head is tiny; on shared CPUs extra OpenMP threads only spin (10x slower epochs here).
    torch.set_num_threads(1)
    thr = [] if args.skip_throughput else throughput(args.data_root)
    rec, meta = recall(cache, args.data_root, args.model)
    RESULTS.mkdir(exist_ok=True)
    name = "audio.json" if args.model == "starter" else f"audio-{args.model}.json"
    (RESULTS / name).write_text(
        json.dumps(
            {"throughput": thr, "recall": rec, "meta": meta, "datasets": list(DATASETS)}, indent=1
        )
    )
    section = markdown(thr, rec, meta, args.model)
    write_section(Path(__file__).parent / "RESULTS.md", section, section_title(args.model))
    print(section)


if __name__ == "__main__":
    main()
