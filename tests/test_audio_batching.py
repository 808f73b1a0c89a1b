"""Batched transcription: one encoder pass per clip feeds the head and the decoder (the spliced
30 s window), and a clip's vector and transcript do not depend on the batch it was in.

Tolerance: vectors agree to 1e-6 (absolute, per component, on L2-normalised float32 vectors)
whatever the batch; transcripts agree exactly. Measured here: encoder output, transcripts and
acoustic (head) vectors bit-identical; vectors fused with a transcript's text vector moved by up
to 1.3e-7, from the text tower's batching."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from retrieval.media.audio import Audio, decode_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOLERANCE = 1e-6
# Short read sentences (LJSpeech, train/val splits) of 1.8, 2.0 and 2.5 s: buckets of 2 and 4 s.
SPEECH = {
    "lj/LJ001-0008.ogg": "has never been surpassed",
    "lj/LJ002-0012.ogg": "after that they fell as steadily",
    "lj/LJ001-0174.ogg": "should be a part of the whole scheme of the book",
}
DIGITS = {"1_george_0": "one", "5_jackson_1": "five", "7_theo_2": "seven", "9_yweweler_3": "nine"}
pytestmark = pytest.mark.slow  # the real Whisper model (a few seconds per test on 2 busy cores)


def noise(seconds: float, seed: int) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)


def need_data() -> None:
    if not (DATA / "speech" / "items.jsonl").is_file() or not (DATA / "fsdd").is_dir():
        pytest.skip(f"real speech missing: {DATA}/speech and fsdd (see ../shared/data/README.md)")


def real_clips() -> tuple[list[Audio], list[str]]:
    need_data()
    clips = [decode_audio(DATA / "speech" / "audio" / p) for p in SPEECH]
    clips += [decode_audio(DATA / "fsdd" / "audio" / f"{k}.flac") for k in DIGITS]
    return clips, [*SPEECH.values(), *DIGITS.values()]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


@pytest.fixture(scope="module")
def tower():
    from retrieval.encoders.audio_whisper import WhisperAudioTower, WhisperTowerConfig

    return WhisperAudioTower(WhisperTowerConfig(batch_size=4))  # 4: batches split and mix


@pytest.fixture(scope="module")
def starter_audio():
    from retrieval.encoders import create_encoder
    from retrieval.encoders.audio_starter import create_audio_tower

    text = create_encoder("starter")
    return create_audio_tower(encode_texts=text.encode_texts, space_key=text.space.key())


def test_spliced_window_is_the_clip_then_fixed_silence(tower) -> None:
    a, b = noise(0.7, 1), noise(2.9, 2)
    enc = tower.encode([a, b])
    assert [e.shape for e in enc] == [(100, 384), (200, 384)]
    sa, sb = tower._spliced(enc[0]), tower._spliced(enc[1])
    assert sa.shape == sb.shape == (1500, 384)
    np.testing.assert_array_equal(sa[:100], enc[0])
    np.testing.assert_array_equal(sa[200:], sb[200:])  # the tail is the clip-independent silence
    # the frames the head pools are exactly the frames the decoder starts from
    np.testing.assert_array_equal(tower.frames([a])[0], enc[0][:35])


def test_transcripts_do_not_depend_on_the_batch(tower) -> None:
    clips = [noise(s, i) for i, s in enumerate((0.4, 1.3, 2.2, 3.7, 0.9, 7.3, 5.1, 1.7))]
    alone = [tower.transcribe_detailed([c])[0] for c in clips]
    mixed = tower.transcribe_detailed(clips)  # batches of 4; buckets of 2 to 8 s, both paths
    shuffled = tower.transcribe_detailed(clips[::-1])[::-1]
    for t in (mixed, shuffled):
        assert [x.text for x in t] == [x.text for x in alone]
        np.testing.assert_allclose(
            [x.no_speech_prob for x in t], [x.no_speech_prob for x in alone], atol=TOLERANCE
        )
        np.testing.assert_allclose(
            [x.avg_logprob for x in t], [x.avg_logprob for x in alone], atol=TOLERANCE
        )


def test_long_buckets_decode_from_a_fresh_30s_window(tower) -> None:
    short, long = noise(5.5, 3), noise(7.3, 4)  # buckets of 6 s (spliced) and 8 s (30 s window)
    got = tower.transcribe_detailed([short, long])
    assert got[0] == tower._decode([tower._spliced(tower.encode([short])[0])])[0]
    assert got[1] == tower._decode([tower.log_mel(long.samples, 3000)])[0]
    assert got[1] != tower._decode([tower._spliced(tower.encode([long])[0])])[0]


def test_same_clip_same_vector_and_transcript_in_any_batch(starter_audio) -> None:
    clips, _ = real_clips()
    clips += [noise(1.2, 7), noise(4.5, 8)]
    alone = [starter_audio.describe_audio([c])[0] for c in clips]
    assert sum(d.transcript is not None for d in alone) >= 3  # fusion and gates are exercised
    for batch in (clips, clips[::-1], clips[1::2] + clips[0::2]):
        got = {id(c): d for c, d in zip(batch, starter_audio.describe_audio(batch), strict=True)}
        for c, ref in zip(clips, alone, strict=True):
            np.testing.assert_allclose(got[id(c)].vector, ref.vector, atol=TOLERANCE, rtol=0)
            assert got[id(c)].transcript == ref.transcript


def test_spliced_transcripts_of_real_speech(tower) -> None:
    clips, refs = real_clips()
    got = tower.transcribe(clips)
    digits = {"1": "one", "5": "five", "7": "seven", "9": "nine"}
    hyp = [[digits.get(w, w) for w in words(t)] for t in got]
    assert sum(h == words(r) for h, r in zip(hyp[3:], refs[3:], strict=True)) >= 3, got
    errors = sum(len(set(words(r)) - set(h)) for h, r in zip(hyp[:3], refs[:3], strict=True))
    assert errors <= 2, got  # 21 reference words; both recipes got all of them here


def test_full_recipe_still_available() -> None:
    from retrieval.encoders.audio_whisper import WhisperAudioTower, WhisperTowerConfig

    need_data()
    clip = decode_audio(DATA / "fsdd" / "audio" / "1_george_0.flac")
    full = WhisperAudioTower(WhisperTowerConfig(transcribe_recipe="full"))
    assert words(full.transcribe([clip])[0]) in (["one"], ["1"])
    with pytest.raises(ValueError, match="Available"):
        WhisperAudioTower(WhisperTowerConfig(transcribe_recipe="x")).transcribe([clip])
