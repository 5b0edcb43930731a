#!/usr/bin/env bash
# Set up everything the tests need (Python environment, system packages, local services) and run them.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/test-services.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest "$@"
