#!/usr/bin/env bash
# Set up wattwise for use: a virtual environment in .venv with wattwise and the exact dependency versions of
# uv.lock (the one lock file; refresh it with scripts/lock.sh). Idempotent; seconds when nothing changed.
# Usage: bash scripts/setup.sh [--dev]     (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv-bootstrap.sh

if [[ "${1:-}" == "--dev" ]]; then
    # exact: the venv holds what the lock says for the tests, nothing more
    "$UV" sync --locked --extra postgres --extra dev
else
    # inexact: a developer's test tools already in .venv stay
    "$UV" sync --locked --inexact --extra postgres
fi
echo "wattwise is installed in .venv ($(.venv/bin/wattwise --version))"
