"""Real audio-text pairs from the training data root and a feature cache for the audio job.

Items: animal_sounds (target text "the sound of a {label}"), fsdd (the spoken word; trained
against the mean of a few phrasings), tuxpaint sound effects (their one-line caption), speech
(read sentences and digit strings: their exact transcript), sonic_pi (instrument and effect
samples: their short caption). Splits always come from `retrieval.splits.split_of(item_id)`.
starter-audio-head-v1 was trained on the first three only.

Cache (`<cache>/<set>-<kind>.npz`, keyed by `ids`): `whisper` token features (N, 8, 384),
`mfcc` statistics (N, 80), and `transcripts` (val and test, a fixed sample: see `transcribe_sample`).
`crossmedia align-audio` builds what is missing before it trains (`build_cache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.splits import split_of

DATASETS = ("animal_sounds", "fsdd", "tuxpaint", "speech", "sonic_pi")
FSDD_TEMPLATES = ("{w}", "someone saying {w}", "the spoken word {w}")


@dataclass(frozen=True)
class AudioItem:
    id: str
    path: Path
    dataset: str
    text: str  # the evaluation text (class prompt, word or caption)
    train_texts: tuple[str, ...]  # phrasings averaged into the training target
    split: str


def load_items(dataset: str, root: Path | None = None) -> list[AudioItem]:
    """`root`: the training data folder (None: indexer.training.paths.data_root())."""
    from indexer.training.paths import DATA_ENV, TrainingDataMissing, data_root

    root = data_root(root) / dataset
    manifest = root / "items.jsonl"
    if not manifest.is_file():
        raise TrainingDataMissing(
            f"{manifest} not found. Pass --data-root DIR (or set ${DATA_ENV}) to the folder "
            f"holding the audio sets {', '.join(DATASETS)}."
        )
    items = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if "audio" not in row:
            continue
        if dataset == "animal_sounds":
            text = f"the sound of a {row['label']}"
            train: tuple[str, ...] = (text,)
        elif dataset == "fsdd":
            text = row["label"]
            train = tuple(t.format(w=text) for t in FSDD_TEMPLATES)
        else:
            text = row["captions"][0]
            train = (text,)
        items.append(
            AudioItem(row["id"], root / row["audio"], dataset, text, train, split_of(row["id"]))
        )
    return items


def transcribe_sample(item: AudioItem) -> bool:
    """The clips whose transcripts are cached: 30 s-window decoding costs ~1 s of CPU per clip,
    so fsdd keeps recordings 0-9 of each speaker and digit (1/5), animal_sounds a fixed third
    and speech a fixed fifth (by id hash); tuxpaint and sonic_pi keep all."""
    if item.dataset == "fsdd":
        return int(item.id.rsplit("_", 1)[1]) < 10
    if item.dataset in ("animal_sounds", "speech"):
        every = 3 if item.dataset == "animal_sounds" else 5
        return int(hashlib.sha1(item.id.encode()).hexdigest()[:8], 16) % every == 0
    return True


def mfcc_stats(samples: np.ndarray, n_mfcc: int = 40) -> np.ndarray:
    """Baseline features: MFCC mean and std over time, (2 * n_mfcc,) float32, 16 kHz input."""
    import torch
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(
        sample_rate=16000,
        n_mfcc=n_mfcc,
        melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64},
    )
    with torch.inference_mode():
        m = mfcc(torch.from_numpy(np.ascontiguousarray(samples)))  # (n_mfcc, T)
    return torch.cat([m.mean(1), m.std(1, unbiased=False)]).numpy().astype(np.float32)


def cache_path(cache: Path, dataset: str, kind: str) -> Path:
    return Path(cache) / f"{dataset}-{kind}.npz"


def load_cached(cache: Path, dataset: str, kind: str, ids: Sequence[str]) -> np.ndarray:
    path = cache_path(cache, dataset, kind)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} missing. Build it: crossmedia align-audio --cache {cache} --out HEAD.safetensors "
            "(it builds the cache first), or indexer.align_audio.data.build_cache"
        )
    data = np.load(path, allow_pickle=False)
    row = {i: k for k, i in enumerate(data["ids"].tolist())}
    missing = [i for i in ids if i not in row]
    if missing:
        raise KeyError(f"{len(missing)} items missing from {path} (e.g. {missing[0]}); rebuild it.")
    return data["values"][[row[i] for i in ids]]


def build_cache(
    cache: Path,
    datasets: Sequence[str] = DATASETS,
    transcribe_splits: Sequence[str] = ("val", "test"),
    root: Path | None = None,
) -> None:
    """Compute what `cache` lacks: per set, Whisper tokens and MFCC stats of every clip, then
    transcripts of the sampled clips of `transcribe_splits`. Present files are kept as they are."""
    from tqdm import tqdm

    from retrieval.encoders.audio_whisper import WhisperAudioTower

    tower = WhisperAudioTower()
    Path(cache).mkdir(parents=True, exist_ok=True)
    # Features for every set first (minutes), transcripts after (slow: full 30 s windows).
    for name in datasets:
        items = load_items(name, root)
        ids = np.array([it.id for it in items])
        if (
            cache_path(cache, name, "whisper").is_file()
            and cache_path(cache, name, "mfcc").is_file()
        ):
            continue
        clips = _decode(items, name)
        feats = [
            tower.token_features(clips[s : s + 64])
            for s in tqdm(range(0, len(clips), 64), desc=f"whisper {name}")
        ]
        np.savez(cache_path(cache, name, "whisper"), ids=ids, values=np.concatenate(feats))
        np.savez(
            cache_path(cache, name, "mfcc"),
            ids=ids,
            values=np.stack([mfcc_stats(c.samples) for c in clips]),
        )
    for name in datasets:
        if cache_path(cache, name, "transcripts").is_file():
            continue
        items = [
            it
            for it in load_items(name, root)
            if it.split in transcribe_splits and transcribe_sample(it)
        ]
        clips = _decode(items, name)
        rows = []
        for s in tqdm(range(0, len(clips), 16), desc=f"transcribe {name}"):
            rows += tower.transcribe_detailed(clips[s : s + 16])
        np.savez(
            cache_path(cache, name, "transcripts"),
            ids=np.array([it.id for it in items]),
            values=np.array([r.text for r in rows]),
            no_speech=np.array([r.no_speech_prob for r in rows], np.float32),
            logprob=np.array([r.avg_logprob for r in rows], np.float32),
        )


def _decode(items: Sequence[AudioItem], name: str) -> list:
    from tqdm import tqdm

    from retrieval.media.audio import decode_audio

    return [
        decode_audio(it.path, max_seconds=30.0, allow_silence=True)
        for it in tqdm(items, desc=f"decode {name}")
    ]
