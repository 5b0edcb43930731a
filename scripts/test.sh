#!/usr/bin/env bash
# Set up everything the tests need (Python environment from uv.lock, system packages, local services), run the
# linters and architecture/type checks, then the whole test suite.
# Usage: bash scripts/test.sh [--latest] [pytest arguments]
#   --latest  run against the newest versions pyproject.toml allows, in .venv-latest (not the lock; outside CI)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--latest" ]]; then
    shift
    source scripts/uv-bootstrap.sh
    export UV_PROJECT_ENVIRONMENT=.venv-latest
    [[ -x .venv-latest/bin/python ]] || "$UV" venv --quiet .venv-latest
    "$UV" pip install --quiet --python .venv-latest/bin/python --upgrade -e ".[postgres,dev]"
    VENV=.venv-latest
else
    bash scripts/setup.sh --dev
    VENV=.venv
fi
bash scripts/test-services.sh
"$VENV/bin/ruff" check src tests benchmarks scripts
if grep -q '^\[tool.importlinter\]' pyproject.toml; then "$VENV/bin/lint-imports" --no-cache; fi
if grep -q '^\[tool.mypy\]' pyproject.toml; then "$VENV/bin/mypy"; fi
"$VENV/bin/python" -m pytest "$@"
