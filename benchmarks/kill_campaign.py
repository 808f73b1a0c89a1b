"""The kill -9 campaign as a table: `crossmedia index` runs killed at random moments and inside
atomic file replaces, and a server killed while two clients upload; then what survived.

    python -m benchmarks.kill_campaign [--rounds 7] [--api-kills 8] [--seed 0]

Writes benchmarks/results/kill_campaign.json; the same code runs (bounded) in
tests/test_kill_campaign.py."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tests.kill_campaign import api_rounds, cli_rounds

OUT = Path(__file__).resolve().parent / "results" / "kill_campaign.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--kills-per-round", type=int, default=2)
    ap.add_argument("--api-kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cli = cli_rounds(Path(tmp) / "cli", args.rounds, args.kills_per_round, seed=args.seed)
        api = api_rounds(Path(tmp) / "api", args.api_kills, seed=args.seed + 1)
    rows = {"cli index": cli.to_json(), "server uploads": api.to_json()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2))
    print(
        "| writer | kills | in a save | runs | items expected | found | lost | duplicates | "
        "acknowledged uploads | lost uploads | index/store mismatches | lexical mismatches |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, t in rows.items():
        print(
            f"| {name} | {t['kills']} | {t['kills_in_save']} | {t['runs']} | "
            f"{t['expected_items']} | {t['found_items']} | {t['lost']} | {t['duplicates']} | "
            f"{t['acknowledged_uploads']} | {t['lost_uploads']} | "
            f"{t['index_store_mismatches']} | {t['lexical_mismatches']} |"
        )


if __name__ == "__main__":
    main()
