#!/usr/bin/env bash
# Create .venv and install crossmedia with its test extras. Idempotent: a second run is quick.
# torch is pinned and installed first, so the resolver never picks a multi-GB other build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.crossmedia-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.1
  .venv/bin/python -m pip install -q -e '.[dev,postgres]'
  touch "$stamp"
fi
