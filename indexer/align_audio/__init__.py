"""`crossmedia align-audio`: bind the audio tower (Whisper tokens, or MFCC statistics as a
baseline) to the starter's locked text space with a small trained head.

    from indexer.align_audio import AlignAudioConfig, run_align_audio
    record = run_align_audio(AlignAudioConfig(out=Path("starter-audio-head-v2.safetensors")))

data.py audio-text items and the feature cache; train.py the head's contrastive training;
eval.py retrieval scores; fusion.py transcript fusion weights; phrases.py the spoken-phrase
proxy; card.py the model card; config.py the one config; job.py the job.
"""

from __future__ import annotations

from indexer.align_audio.config import AlignAudioConfig
from indexer.align_audio.job import run_align_audio
from indexer.align_audio.train import AudioTrainConfig

__all__ = ["AlignAudioConfig", "AudioTrainConfig", "run_align_audio"]
