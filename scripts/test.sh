#!/usr/bin/env bash
# Run the whole test suite (offline, deterministic). Installs the environment on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
