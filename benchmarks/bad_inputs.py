"""How each input of the bad-input corpus ends: a Markdown table for benchmarks/RESULTS.md.

    python -m benchmarks.bad_inputs [--json benchmarks/results/bad_inputs.json]

Generates the corpus (tests/bad_inputs.py: good files and every kind of broken one, as a
manifest and as a folder) in a temporary directory, indexes both with the tiny test model plus a
stand-in audio tower, and prints one row per input: expected and actual outcome, and the reason
or warning the ingest report gave. Exits 1 if any input ended otherwise than expected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| source | input | expected | outcome | reason or warning |", "|---|---|---|---|---|"]
    for r in rows:
        detail = r["detail"].replace("|", "\\|")
        detail = detail if len(detail) <= 140 else detail[:137] + "..."
        mark = "" if r["outcome"] == r["expected"] else " **(unexpected)**"
        lines.append(
            f"| {r['source']} | {r['input']} | {r['expected']} | {r['outcome']}{mark} | {detail} |"
        )
    ok = sum(r["outcome"] == r["expected"] for r in rows)
    lines.append(
        f"\n{ok} of {len(rows)} inputs ended as expected "
        f"({sum(r['expected'] == 'skipped' for r in rows)} bad inputs skipped with a reason)."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from bad_inputs import corpus_outcomes

    from retrieval.encoders import create_encoder

    os.environ.pop("CROSSMEDIA_MEDIA_ROOTS", None)  # the corpus says which roots it allows
    with tempfile.TemporaryDirectory() as tmp:
        rows = corpus_outcomes(Path(tmp) / "corpus", create_encoder("tiny-test", device="cpu"))
    # Temporary paths say nothing in a table.
    rows = [{k: v.replace(tmp, "$TMP") for k, v in r.items()} for r in rows]
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0 if all(r["outcome"] == r["expected"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
