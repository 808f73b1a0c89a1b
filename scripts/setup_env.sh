#!/usr/bin/env bash
# Create .venv and install crossmedia with its test extras. Idempotent: a second run is quick.
# A constraints file keeps every install on these exact torch builds: the registry's default
# torch is a multi-GB CUDA build, and pip must never swap it in to satisfy some dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PINS=(torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.crossmedia-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  printf '%s\n' "${PINS[@]}" > "$constraints"
  .venv/bin/python -m pip install -q -c "$constraints" "${PINS[@]}"
  .venv/bin/python -m pip install -q -c "$constraints" -e '.[dev,postgres,ray]'
  .venv/bin/python - <<'PY'
import torch, torchvision, torchaudio
want = {"torch": "2.14.1", "torchvision": "0.29.1", "torchaudio": "2.11.1"}
got = {m.__name__: m.__version__.split("+")[0] for m in (torch, torchvision, torchaudio)}
assert got == want, f"wrong torch builds installed: {got}, expected {want}"
PY
  touch "$stamp"
fi
