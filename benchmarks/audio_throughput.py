"""Audio ingestion with transcription: Whisper's 30 s recipe, one clip per call (old) against
the spliced window in batches (new), side by side on the same clips.

    nice python -m benchmarks.audio_throughput [--fsdd 120] [--speech 300] [--phrases 40] [--long 3]

What is timed is the embed stage of ingestion on each clip: decode the file, then
`describe_audio` (encoder, head, transcription, gates, transcript fusion). The two recipes run
alternately on chunks of the same clips, so a change in the machine's load hits both; read the
ratio, not the absolute rate. Clips come from the VALIDATION split (retrieval.splits), evenly
spaced through each set: fsdd (spoken digits, under 1 s), speech (read sentences, 1-10 s), fsdd
phrases (four digits of one speaker, ~3-4 s, decoded before timing) and recordings of ~65 s
made by joining LJSpeech validation sentences (30 s windows: there the old recipe only adds one
encoder pass per window). Word error rates compare each window's raw transcript with the
reference; recall is audio->text and text->audio within each set, from the vectors ingestion
would store. Writes benchmarks/results/audio_throughput.json and the "Audio throughput" section
of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results_md import replace_section
from retrieval.media.audio import Audio, decode_audio
from retrieval.splits import split_of

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice .venv/bin/python -m benchmarks.audio_throughput"
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
Clip = tuple[Callable[[], Audio], str]  # (decode, reference text)


def words(text: str) -> list[str]:
    """Lower case, digits spelled one by one ("7342" -> seven three four two), no punctuation."""
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group(0))]} ", text.lower())
    return re.sub(r"[^a-z' ]", " ", text).split()


def edits(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1]))
    return row[-1]


def wer(hyps: Sequence[str], refs: Sequence[str]) -> float:
    errors = sum(edits(words(r), words(h)) for h, r in zip(hyps, refs, strict=True))
    return errors / max(1, sum(len(words(r)) for r in refs))


def spaced(rows: list, n: int) -> list:
    return [rows[i] for i in sorted(set(np.linspace(0, len(rows) - 1, n).astype(int)))]


def val_rows(root: Path, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (root / name / "items.jsonl").open()]
    return [r for r in rows if split_of(r["id"]) == "val"]


def val_clips(root: Path, name: str, n: int) -> list[Clip]:
    """`n` validation clips evenly spaced through the file (every digit, speaker, corpus)."""
    rows = val_rows(root, name)
    return [
        (lambda p=root / name / r["audio"]: decode_audio(p), r.get("label") or r["captions"][0])
        for r in spaced(rows, n)
    ]


def long_clips(root: Path, n: int, seconds: float = 65.0) -> list[Clip]:
    """Recordings of ~65 s: consecutive LJSpeech validation sentences with 0.3 s of silence."""
    out: list[Clip] = []
    parts: list[dict] = []
    for r in (r for r in val_rows(root, "speech") if r["corpus"] == "ljspeech"):
        parts.append(r)
        if sum(p["seconds"] + 0.3 for p in parts) >= seconds:
            paths = tuple(root / "speech" / p["audio"] for p in parts)
            out.append((lambda ps=paths: _join(ps), " ".join(p["captions"][0] for p in parts)))
            parts = []
        if len(out) == n:
            break
    return out


def phrase_clips(root: Path, n: int) -> list[Clip]:
    """fsdd validation digits joined in fours (indexer/align_audio/phrases.py: the set the
    head's phrase weight was chosen on), evenly spaced; decoded up front, so decode is untimed."""
    from indexer.align_audio.phrases import phrases

    rows = phrases("val", root=root)
    return [(lambda a=a: a, text) for _, a, text in spaced(rows, n)]


def _join(paths: Sequence[Path]) -> Audio:
    gap = np.zeros(int(0.3 * 16000), np.float32)
    return Audio(np.concatenate([x for p in paths for x in (decode_audio(p).samples, gap)]), 16000)


def systems(text: Any) -> dict[str, tuple[Any, Callable]]:
    """name -> (StarterAudioTower, describe(tower, clips)); the old one is the code before
    batching: one clip per describe_audio call, 30 s windows for transcription."""
    from retrieval.encoders.audio_starter import create_audio_tower

    towers = {}
    for recipe in ("full", "spliced"):
        st = create_audio_tower(encode_texts=text.encode_texts, space_key=text.space.key())
        st.tower.config = dataclasses.replace(st.tower.config, transcribe_recipe=recipe)
        _record(st.tower)
        towers[recipe] = st
    return {
        "old: 30 s window, per clip": (
            towers["full"],
            lambda st, clips: [d for c in clips for d in st.describe_audio([c])],
        ),
        "new: spliced window, batched": (
            towers["spliced"],
            lambda st, clips: st.describe_audio(clips),
        ),
    }


def _record(tower: Any) -> None:
    """Keep every transcript the tower produces (for the word error rate), in call order."""
    inner = tower.transcribe_detailed
    tower.seen = []

    def call(clips: Sequence[Audio], encoded: Any = None) -> list:
        out = inner(clips, encoded=encoded)
        tower.seen.extend(out)
        return out

    tower.transcribe_detailed = call


def run_set(name: str, clips: list[Clip], text: Any, systems_: dict, chunk: int) -> list[dict]:
    """Both systems on the same chunks, alternating which goes first."""
    got: dict[str, dict] = {s: {"wall": 0.0, "descr": [], "audio_s": 0.0} for s in systems_}
    for k, s in enumerate(range(0, len(clips), chunk)):
        order = list(systems_) if k % 2 == 0 else list(systems_)[::-1]
        for sname in order:
            st, describe = systems_[sname]
            t = time.perf_counter()
            audio = [decode() for decode, _ in clips[s : s + chunk]]
            got[sname]["descr"] += describe(st, audio)
            got[sname]["wall"] += time.perf_counter() - t
            got[sname]["audio_s"] += sum(a.seconds for a in audio)
    refs = [r for _, r in clips]
    return [_row(name, sname, g, systems_[sname][0], refs, text) for sname, g in got.items()]


def _row(name: str, sname: str, g: dict, st: Any, refs: list[str], text: Any) -> dict:
    from indexer.align_audio.eval import both_directions, text_gallery

    seen, hyps, k = st.tower.seen, [], 0
    st.tower.seen = []
    assert len(seen) == sum(max(1, len(d.segments)) for d in g["descr"]), "one per window"
    for d in g["descr"]:  # the windows' transcripts of each clip, in order
        n_win = max(1, len(d.segments))
        hyps.append(" ".join(t.text for t in seen[k : k + n_win]))
        k += n_win
    texts, index = text_gallery(refs)
    pairs = list(zip(g["descr"], refs, strict=True))
    rec = both_directions(np.stack([d.vector for d in g["descr"]]), text.encode_texts(texts), index)
    return {
        "data": name,
        "system": sname,
        "clips": len(refs),
        "audio_s": round(g["audio_s"], 1),
        "wall_s": round(g["wall"], 1),
        "clips_per_s": round(len(refs) / g["wall"], 2),
        "audio_s_per_s": round(g["audio_s"] / g["wall"], 2),
        "wer": round(wer(hyps, refs), 3),
        "transcript_kept": round(np.mean([d.transcript is not None for d in g["descr"]]), 3),
        "kept_exact": round(np.mean([_exact(d.transcript, r) for d, r in pairs]), 3),
        "no_speech_median": round(float(np.median([t.no_speech_prob for t in seen])), 3),
        "a2t_R@1": round(rec["audio_to_text"]["R@1"], 3),
        "t2a_R@1": round(rec["text_to_audio"]["R@1"], 3),
        "gallery": len(texts),
    }


def _exact(kept: str | None, ref: str) -> bool:
    """The transcript ingestion stores as the item's text says exactly the reference words."""
    return kept is not None and words(kept) == words(ref)


def markdown(rows: list[dict], load: tuple[str, str]) -> str:
    cols = ["data", "system", "clips", "audio_s", "clips_per_s", "audio_s_per_s", "wer"]
    cols += ["transcript_kept", "kept_exact", "no_speech_median", "a2t_R@1", "t2a_R@1", "gallery"]
    lines = ["## Audio throughput", "", f"Reproduce: `{COMMAND}`", ""]
    lines += [f"Load during the run: {load[0]} at the start, {load[1]} at the end.", ""]
    lines += [
        "old: every clip on its own, transcribed from Whisper's 30 s window (a second, 30 s "
        "encoder pass); new: clips in batches, the decoder reads the clip's own 2 s-bucket "
        "encoder frames followed by a fixed silence window; buckets of 8-28 s decode from a "
        "fresh 30 s window (retrieval/encoders/audio_whisper.py)."
        " wer: word error rate of the raw transcripts (digits spelled out); transcript_kept: "
        "share of clips whose transcript passes the shipped gates and is stored as the item's "
        "text; kept_exact: stored and word-for-word right; recall within each set (gallery: "
        "distinct texts) from the stored vectors. Validation split.",
        "",
    ]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    by = {(r["data"], r["system"].split(":")[0]): r for r in rows}
    lines += [""] + [
        f"- {d}: new/old clips per second = "
        f"{by[(d, 'new')]['clips_per_s'] / by[(d, 'old')]['clips_per_s']:.1f}x"
        for d in dict.fromkeys(r["data"] for r in rows)
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fsdd", type=int, default=120)
    ap.add_argument("--speech", type=int, default=300)
    ap.add_argument("--phrases", type=int, default=40)
    ap.add_argument("--long", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=30, help="clips per timed call (new recipe)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    import torch

    from benchmarks.results_md import load_note
    from retrieval.encoders import create_encoder

    torch.set_num_threads(1)  # tiny matrices: extra OpenMP threads only spin on 2 busy cores
    if not (args.data_root / "fsdd" / "items.jsonl").is_file():
        raise SystemExit(f"No data under {args.data_root}: see ../shared/data/README.md")
    load_start = load_note()
    text = create_encoder("starter")
    sys_ = systems(text)
    sets = {
        "fsdd (val)": val_clips(args.data_root, "fsdd", args.fsdd),
        "speech (val)": val_clips(args.data_root, "speech", args.speech),
        "fsdd phrases (val, 4 digits)": phrase_clips(args.data_root, args.phrases),
        "long ~65 s (LJ val)": long_clips(args.data_root, args.long),
    }
    for st, describe in sys_.values():  # warm up: first calls load kernels, the silence window
        describe(st, [sets["fsdd (val)"][0][0]()])
        st.tower.seen = []
    rows = []
    for name, clips in sets.items():
        if clips:
            rows += run_set(name, clips, text, sys_, args.chunk)
            print(json.dumps(rows[-2:]), flush=True)
    section = markdown(rows, (load_start, load_note()))
    print(section)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        meta = {"command": COMMAND, "load_start": load_start, "load_end": load_note()}
        meta["cpus"] = os.cpu_count()
        (RESULTS / "audio_throughput.json").write_text(json.dumps({"rows": rows, **meta}, indent=1))
        replace_section("audio-throughput", section)


if __name__ == "__main__":
    main()
