#!/usr/bin/env bash
# Set up wattwise for use: a virtual environment in .venv with wattwise and its dependencies.
# Idempotent; safe to run again. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "wattwise needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    # missing, or left broken by an earlier failure (e.g. Debian's python3 without python3-venv)
    rm -rf .venv
    if ! "$PYTHON" -m venv .venv; then
        echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    fi
    rm -f .venv/.wattwise-installed-*
fi
extras="postgres"
[[ "${1:-}" == "--dev" ]] && extras="dev"
stamp=".venv/.wattwise-installed-$extras"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
fi
echo "wattwise is installed in .venv ($(.venv/bin/wattwise --version))"
