"""Contrastive alignment: train projection heads that bind locked towers into one space (LiT-style).

Two entry points.

1. The starter model (images + text), what `crossmedia align` runs::

       from indexer.align import AlignConfig, HeadConfig, run_align
       report = run_align(AlignConfig(
           manifests=[data / "coco_mini/items.jsonl", data / "tuxpaint/items.jsonl",
                      data / "cifar10/items.jsonl"],
           out=Path("starter-heads-v2.safetensors"),
           head=HeadConfig(epochs=20, seed=0),
       ))

   Tower features come from the shared per-manifest cache (indexer/training/features.py, under
   the user cache directory), every epoch is checkpointed there (a rerun resumes); writes the
   safetensors + MODEL_CARD.md.

2. Any other tower against the locked text tower (e.g. audio), on features you computed::

       from indexer.align import AlignData, HeadConfig, train_heads, apply_heads
       data = AlignData(
           media=audio_feats,            # (N, D_a) float32, one row per clip
           text=text_feats,              # (M, 384) pooled MiniLM, one row per unique string
           pairs=pairs,                  # (P, 2) int: (clip row, text row) positives
           split=[split_of(i) for i in clip_ids],
           group=[dataset_name, ...],    # optional, metrics are averaged per group
       )
       result = train_heads(data, HeadConfig(dim=256, epochs=20, seed=0), checkpoint_dir=Path(...))
       result.heads   # {"media_weight" (256, D_a), "media_bias" (256,), "text_weight" (256, 384),
                      #  "bridge_gate", "logit_scale"} acting on raw features
       result.val     # per group + "mean": m2t/t2m R@1/5/10, mAP@10

   To land in the starter's space, keep the text head fixed to the starter's:
   `train_heads(data, cfg, ckpt_dir, text_weight=<"text.proj.weight" from the starter heads
   safetensors>)`; then only the media head (and logit scale) train, and
   `l2_normalize(media @ W.T + b)` is directly comparable with
   `create_encoder("starter").encode_texts(...)`.
"""

from __future__ import annotations

from indexer.align.heads import ContrastiveHeads, HeadConfig, apply_heads
from indexer.align.run import AlignConfig, AlignReport, run_align
from indexer.align.train import AlignData, TrainResult, evaluate_embeddings, train_heads

__all__ = [
    "AlignConfig",
    "AlignData",
    "AlignReport",
    "ContrastiveHeads",
    "HeadConfig",
    "TrainResult",
    "apply_heads",
    "evaluate_embeddings",
    "run_align",
    "train_heads",
]
