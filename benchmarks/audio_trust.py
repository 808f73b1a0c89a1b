"""Which transcripts to trust (issue 15): Whisper's own confidence against the word count.

The fusion grid (indexer/align_audio/fusion.py) on the validation splits, for a shipped audio
head: the best configuration of each rule ("logprob": the phrase weight goes to transcripts whose
average log-probability clears a threshold; "words": to transcripts of two or more words), and
what each gives per set (audio-to-text R@1, text-to-audio mAP@10). Validation only: this is how
the rule is chosen, so no test split is read.

    python -m benchmarks.audio_trust [--model starter-v2]

Needs the audio feature cache of `crossmedia align-audio` (built on first use, ~11 min here).
Writes the "audio-trust" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.results_md import load_note, replace_section


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="starter-v2")
    args = ap.parse_args(argv)
    import torch

    from indexer.align_audio.config import AlignAudioConfig
    from indexer.align_audio.data import DATASETS, build_cache
    from indexer.align_audio.fusion import best_fusion, fusion_grid, set_scores, val_sets
    from indexer.align_audio.job import locked_text
    from retrieval.encoders.audio_head import load_audio_head
    from retrieval.encoders.audio_starter import FusionConfig
    from retrieval.encoders.starter import audio_head_path

    torch.set_num_threads(1)  # the grid is small GEMMs: extra threads only spin here
    cache = AlignAudioConfig(out="unused").cache_path()
    build_cache(cache, DATASETS)
    art = load_audio_head(audio_head_path(args.model))
    text_fn, _ = locked_text(args.model)
    sets = val_sets(art.head, text_fn, cache)
    chosen = {
        rule: best_fusion(sets, [f for f in fusion_grid() if f.split == rule])
        for rule in ("logprob", "words")
    }
    chosen["shipped"] = best_fusion(sets, [FusionConfig(**art.fusion)])
    results = {
        rule: (cfg, info["fusion_val"], _rows(set_scores(sets, cfg)))
        for rule, (cfg, info) in chosen.items()
    }
    body = markdown(args.model, art.version, results)
    print(body)
    replace_section("audio-trust", body)


def _rows(scores: dict[str, dict]) -> dict[str, tuple[float, float]]:
    return {n: (r["audio_to_text"]["R@1"], r["text_to_audio"]["mAP@10"]) for n, r in scores.items()}


def markdown(model: str, version: str, results: dict[str, Any]) -> str:
    sets = list(next(iter(results.values()))[2])
    lines = [
        "## Audio: which transcripts to trust (validation)",
        "",
        f"`python -m benchmarks.audio_trust --model {model}`: the fusion grid of "
        f"`indexer/align_audio/fusion.py` on the validation splits, audio head {version}; per "
        "set audio-to-text R@1 / text-to-audio mAP@10; score = their mean over the sets. "
        f"{load_note()}.",
        "",
        "| rule | configuration | score | " + " | ".join(sets) + " |",
        "|---|---|---|" + "---|" * len(sets),
    ]
    for rule, (cfg, score, rows) in results.items():
        knobs = (
            f"w {cfg.transcript_weight} / sure {cfg.phrase_weight}, no-speech <= "
            f"{cfg.max_no_speech_prob}, log-prob >= {cfg.min_avg_logprob}"
            + (f", sure if log-prob >= {cfg.sure_logprob}" if cfg.split == "logprob" else "")
        )
        cells = " | ".join(f"{a:.3f} / {t:.3f}" for a, t in rows.values())
        lines.append(f"| {rule} | {knobs} | {score:.4f} | {cells} |")
    lines += [
        "",
        "`crossmedia align-audio` searches both rules in one grid and ships the higher score (a tie "
        "goes to Whisper's log-probability); `shipped` is what the head's artifact holds.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
