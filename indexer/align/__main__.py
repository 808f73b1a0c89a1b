"""`python -m indexer.align`: the same job as `crossmedia align`, usable without the CLI wiring."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from indexer.align.features import DEFAULT_CACHE
from indexer.align.heads import HeadConfig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the starter model's heads (LiT-style).")
    ap.add_argument(
        "--manifest",
        type=Path,
        action="append",
        required=True,
        help="items.jsonl with image + captions or label; repeat for several sets",
    )
    ap.add_argument(
        "--out", type=Path, default=Path("retrieval/encoders/weights/starter-heads-v1.safetensors")
    )
    ap.add_argument("--epochs", type=int, default=HeadConfig.epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=HeadConfig.dim)
    ap.add_argument("--lr", type=float, default=HeadConfig.lr)
    ap.add_argument("--weight-decay", type=float, default=HeadConfig.weight_decay)
    ap.add_argument("--dropout", type=float, default=HeadConfig.dropout)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args(argv)
    from indexer.align.run import run_align

    head = HeadConfig(
        dim=args.dim, lr=args.lr, weight_decay=args.weight_decay, dropout=args.dropout
    )
    command = "python -m indexer.align " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = run_align(
        args.manifest,
        args.out,
        args.epochs,
        args.seed,
        head=head,
        cache_dir=args.cache_dir,
        command=command,
    )
    print(
        f"wrote {report.out} (best epoch {report.best_epoch}); "
        f"val score {report.val.get('mean', {}).get('score', float('nan')):.3f}; "
        f"card: {report.out.parent / 'MODEL_CARD.md'}"
    )


if __name__ == "__main__":
    main()
