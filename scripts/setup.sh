#!/usr/bin/env bash
# Set up wattwise for use: a virtual environment in .venv with wattwise and the exact dependency versions of
# uv.lock (the one lock file; refresh it with scripts/lock.sh). Idempotent; seconds when nothing changed.
# Usage: bash scripts/setup.sh [--dev] [--bench]   (--dev: test and lint tools; --bench: benchmark peers)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv-bootstrap.sh

extras=(--extra postgres)
exact=(--inexact)  # a developer's tools already in .venv stay
for arg in "$@"; do
    case "$arg" in
        --dev) extras+=(--extra dev); exact=() ;;  # exact: the venv holds what the lock says for the tests
        --bench) extras+=(--extra bench) ;;        # peers for benchmarks/ (CodeCarbon, scikit-learn, xgboost)
        *) echo "usage: bash scripts/setup.sh [--dev] [--bench]" >&2; exit 2 ;;
    esac
done
"$UV" sync --locked "${exact[@]}" "${extras[@]}"
# byte-code ahead of time: with PYTHONDONTWRITEBYTECODE set (as on CI machines here), every process would
# otherwise compile sqlalchemy, numpy & co. from source at each start
.venv/bin/python -m compileall -q -j 0 src/wattwise >/dev/null
echo "wattwise is installed in .venv ($(.venv/bin/wattwise --version))"
