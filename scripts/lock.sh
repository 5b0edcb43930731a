#!/usr/bin/env bash
# Refresh uv.lock from pyproject.toml. Keeps every locked version that still fits pyproject.toml, so on an
# unchanged tree it changes nothing. Usage: bash scripts/lock.sh [--upgrade | --upgrade-package NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv-bootstrap.sh
"$UV" lock "$@"
