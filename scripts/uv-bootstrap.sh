# Sourced by setup.sh, test.sh and lock.sh: a pinned uv in .uv/ (its own small venv, made with pip), so that
# installs come from uv.lock whatever uv the machine has. Sets UV and the uv environment for this project.
PYTHON="${PYTHON:-python3}"
UV_VERSION=0.13.8
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "wattwise needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
UV=.uv/bin/uv
if [[ "$("$UV" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
    rm -rf .uv
    if ! "$PYTHON" -m venv .uv; then
        echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    fi
    .uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
export UV_PYTHON="$PYTHON" UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="${UV_PROJECT_ENVIRONMENT:-.venv}"
export UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1
