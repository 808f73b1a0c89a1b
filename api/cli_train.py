"""The training commands of `crossmedia`: align, align-audio, train-reranker.

Each builds its job's config from typed options and calls the job (indexer/align,
indexer/align_audio, indexer/train_reranker). Caches live in the user cache directory
($CROSSMEDIA_CACHE_DIR overrides it); outputs go where --out says (required: a trained artifact
lands where the user chose, never inside the working directory or the installed package by
surprise); training data comes from --data-root, $CROSSMEDIA_TRAIN_DATA, or ../shared/data beside
the checkout.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

CacheDir = Annotated[
    Path | None,
    typer.Option(
        help="Cache root (tower features, checkpoints: a rerun resumes) "
        "(default: $CROSSMEDIA_CACHE_DIR or the user cache directory)."
    ),
]
DataRoot = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding the training sets (<name>/items.jsonl) "
        "(default: $CROSSMEDIA_TRAIN_DATA or ../shared/data beside the checkout)."
    ),
]


class AudioFeatures(StrEnum):
    whisper = "whisper"
    mfcc = "mfcc"


class TextSide(StrEnum):
    starter = "starter"
    starter_v2 = "starter-v2"
    minilm = "minilm"


def align(
    manifest: Annotated[
        list[Path],
        typer.Option(
            "--manifest",
            help="items.jsonl with images and captions or labels; repeat for several sets.",
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Where the heads (.safetensors) go; MODEL_CARD.md beside it.")
    ],
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    seed: int = 0,
    dim: Annotated[int, typer.Option(min=8)] = 256,
    batch_size: Annotated[int, typer.Option(min=2)] = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.2,
    distill: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Weight of distilling the trunk's ImageNet classifier into the heads "
            "(keeps class-name retrieval when training on captions); 0: off.",
        ),
    ] = 0.0,
    distill_temperature: Annotated[
        float, typer.Option(min=0.01, help="Temperature of the distilled classifier.")
    ] = 1.0,
    card: Annotated[
        Path | None, typer.Option(help="Model card path (default: MODEL_CARD.md beside --out).")
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Train the starter's image and text heads contrastively on your pairs (LiT-style)."""
    from indexer.align import AlignConfig, HeadConfig, run_align

    if out.suffix != ".safetensors":
        raise typer.BadParameter(f"--out must end in .safetensors (got {out}).")
    head = HeadConfig(
        dim=dim,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        dropout=dropout,
        distill=distill,
        distill_temperature=distill_temperature,
        epochs=epochs,
        seed=seed,
    )
    cfg = AlignConfig(manifests=manifest, out=out, head=head, cache_dir=cache_dir, card=card)
    report = run_align(cfg)
    typer.echo(
        f"wrote {report.out} (best epoch {report.best_epoch}); "
        f"val score {report.val.get('mean', {}).get('score', float('nan')):.3f}; "
        f"card: {cfg.card_path()}"
    )


def align_audio(
    out: Annotated[Path, typer.Option(help="Where the audio head (.safetensors) and its card go.")],
    features: Annotated[
        AudioFeatures, typer.Option(help="whisper (the starter's tower) or mfcc (baseline).")
    ] = AudioFeatures.whisper,
    epochs: Annotated[int, typer.Option(min=1)] = 40,
    seed: int = 0,
    text: Annotated[
        TextSide,
        typer.Option(
            help="Locked text side: a starter model's space (starter, starter-v2), or raw "
            "MiniLM (baseline)."
        ),
    ] = TextSide.starter,
    data_root: DataRoot = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Audio feature cache, built here when missing (default: <cache root>/audio)."
        ),
    ] = None,
) -> None:
    """Bind the audio tower to a starter model's locked text space (animal sounds, Tux Paint,
    FSDD)."""
    from indexer.align_audio import AlignAudioConfig, AudioTrainConfig, run_align_audio

    cfg = AlignAudioConfig(
        out=out,
        data_root=data_root,
        cache=cache,
        text=str(text),
        features=str(features),
        train=AudioTrainConfig(epochs=epochs, seed=seed),
    )
    typer.echo(json.dumps(run_align_audio(cfg), indent=1))


RerankSpace = Annotated[
    str, typer.Option(help="The starter model whose space it re-ranks (starter, starter-v2).")
]
RerankSets = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated training sets under the data root "
        "(default: coco_mini,tuxpaint,cifar10)."
    ),
]
Stage1From = Annotated[
    Path | None,
    typer.Option(
        help="Take the cross-attention model and alpha from this artifact instead of training."
    ),
]


def train_reranker(
    out: Annotated[
        Path, typer.Option(help="Artifact path (.safetensors); .json and .md cards beside it.")
    ],
    model: RerankSpace = "starter",
    sets: RerankSets = None,
    data_root: DataRoot = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: int = 0,
    oof_folds: Annotated[
        int, typer.Option(help="K > 1: train features out-of-fold from K fold heads.")
    ] = 0,
    token_noise: float = 0.0625,
    cos_offset: float = 0.0,
    hub_folds: Annotated[
        int, typer.Option(help="Fold heads for choosing the query-bank stage (0: none).")
    ] = 4,
    stage1_from: Stage1From = None,
    use_global: Annotated[
        bool,
        typer.Option(
            "--use-global",
            help="Let the model read the items' vectors (token row 0) besides local tokens.",
        ),
    ] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Train the re-ranker on the train splits: the cross-attention model (first-stage hard
    negatives), then the query-bank stage, chosen on out-of-fold and validation data."""
    from indexer.train_reranker import TrainRerankerConfig, run_train_reranker
    from retrieval.rerank.model import RerankerConfig

    cfg = TrainRerankerConfig(
        out=out,
        encoder=model,
        data_root=data_root,
        epochs=epochs,
        seed=seed,
        cos_offset=cos_offset,
        token_noise=token_noise,
        oof_folds=oof_folds,
        hub_folds=hub_folds,
        stage1_from=stage1_from,
        model=RerankerConfig(use_global=use_global),
        cache_dir=cache_dir,
    )
    if sets:
        cfg.sets = tuple(x.strip() for x in sets.split(",") if x.strip())
    card = run_train_reranker(cfg)
    typer.echo(
        json.dumps(
            {
                "stage 1": card["selection"],
                "stage 2": {k: v for k, v in card.get("hub", {}).items() if k != "grid"},
            },
            indent=2,
        )
    )


def register(app: typer.Typer) -> None:
    """Add the training commands to the `crossmedia` app."""
    app.command("align")(align)
    app.command("align-audio")(align_audio)
    app.command("train-reranker")(train_reranker)
