"""`wattwise --help` stays fast: building the command tree imports no heavy library.

Every area's `cli.py` imports numpy, SQLAlchemy, FastAPI and the like inside its command functions, and the
packages export their names lazily (`wattwise._lazy`). This checks what is imported, not how long it takes, so
it holds on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "alembic", "dask", "distributed", "fastapi", "highspy", "httpx", "jinja2", "matplotlib", "numba", "numpy",
    "plotly", "prometheus_client", "psycopg", "pulp", "pyarrow", "pydantic", "scipy", "sqlalchemy", "starlette",
    "uvicorn", "yaml",
)


def test_building_the_cli_imports_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import wattwise.cli\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == [], "imported while building the wattwise command: " + done.stdout


def test_help_lists_every_area() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wattwise", "--help"], capture_output=True, text=True, timeout=120, check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    for command in ("measure", "run", "runs", "providers", "model", "simulate", "serve", "cluster", "exporter"):
        assert f" {command} " in done.stdout, command
