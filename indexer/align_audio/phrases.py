"""A spoken-phrase proxy from real recordings: fsdd digit strings of one speaker.

The only real speech in the training data is fsdd (single digit words). To measure audio->text
against a gallery of many transcripts, four clips of one speaker (same split) are joined with
0.3 s pauses into a phrase whose exact transcript is the four words ("four one three nine").
Deterministic: clips sorted by id, shuffled with a fixed seed, grouped in fours per speaker.
It is a proxy: digit strings share a ten-word vocabulary, so near-miss transcripts collide more
than natural sentences would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.align_audio.data import load_items
from retrieval.media.audio import Audio, decode_audio

GAP_SECONDS = 0.3
WORDS_PER_PHRASE = 4


def phrases(split: str, seed: int = 0, root: Path | None = None) -> list[tuple[str, Audio, str]]:
    items = sorted(
        (it for it in load_items("fsdd", root) if it.split == split), key=lambda it: it.id
    )
    by_speaker: dict[str, list] = {}
    for it in items:
        by_speaker.setdefault(it.id.split("_")[1], []).append(it)
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(GAP_SECONDS * 16000), np.float32)
    out = []
    for speaker in sorted(by_speaker):
        group = by_speaker[speaker]
        order = rng.permutation(len(group))
        for s in range(0, len(order) - WORDS_PER_PHRASE + 1, WORDS_PER_PHRASE):
            parts = [group[k] for k in order[s : s + WORDS_PER_PHRASE]]
            clips = [decode_audio(p.path, allow_silence=True).samples for p in parts]
            samples = np.concatenate([x for c in clips for x in (c, gap)][:-1])
            pid = "phrase-" + "+".join(p.id for p in parts)
            out.append((pid, Audio(samples, 16000), " ".join(p.text for p in parts)))
    return out


def phrase_vectors(
    cache: Path, split: str, tower_fn, transcribe_fn, root: Path | None = None
) -> dict:
    """Cached (tokens, transcripts) of the phrases of one split."""
    from retrieval.encoders.audio_whisper import Transcript

    path = Path(cache) / f"fsdd_phrases-{split}.npz"
    if not path.is_file():
        rows = phrases(split, root=root)
        clips = [a for _, a, _ in rows]
        tokens = np.concatenate([tower_fn(clips[s : s + 32]) for s in range(0, len(clips), 32)])
        tr = [t for s in range(0, len(clips), 16) for t in transcribe_fn(clips[s : s + 16])]
        np.savez(
            path,
            ids=np.array([r[0] for r in rows]),
            texts=np.array([r[2] for r in rows]),
            tokens=tokens,
            transcripts=np.array([t.text for t in tr]),
            no_speech=np.array([t.no_speech_prob for t in tr], np.float32),
            logprob=np.array([t.avg_logprob for t in tr], np.float32),
        )
    d = np.load(path, allow_pickle=False)
    return {
        "texts": d["texts"].tolist(),
        "tokens": d["tokens"],
        "transcripts": [
            Transcript(str(a), float(b), float(c))
            for a, b, c in zip(d["transcripts"], d["no_speech"], d["logprob"], strict=True)
        ],
    }
