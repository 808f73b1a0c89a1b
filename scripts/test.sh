#!/usr/bin/env bash
# Run the whole test suite (offline, deterministic). Installs the environment on first use.
# Lint first (ruff check, ruff format --check, mypy on retrieval/ and api/): each fails fast with
# the file and line to fix. Set CROSSMEDIA_SKIP_LINT=1 to run only the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
if [ -z "${CROSSMEDIA_SKIP_LINT:-}" ]; then
  echo "--- ruff check, ruff format --check, mypy"
  .venv/bin/ruff check --quiet .
  .venv/bin/ruff format --check --quiet .
  .venv/bin/mypy --no-error-summary
fi
exec .venv/bin/python -m pytest -q "$@"
