"""schemathesis fuzzes the OpenAPI spec of our routes: no server errors, responses match their schemas.

Routes of the cluster area (/api/cluster) are fuzzed by that area's own tests."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from wattwise.analysis.synthetic import scenario_run, simple_run
from wattwise.store import Store
from wattwise.web.app import create_app
from wattwise.web.deps import create_token

_DIR = Path(tempfile.mkdtemp(prefix="wattwise-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_store = Store(f"sqlite:///{_DIR / 'fuzz.db'}")
for _ in range(2):
    scenario_run(_store, sci={"TE": 1000, "R_d": "request"})
    simple_run(_store, 100.0)
TOKEN = create_token(_store, "fuzz")
app = create_app(store=_store)

schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/api(?!/cluster)")


@schema.parametrize()
@settings(
    # WATTWISE_FUZZ_EXAMPLES=300 for a longer, random search; the suite's run is derandomized (reproducible)
    max_examples=int(os.environ.get("WATTWISE_FUZZ_EXAMPLES", "25")),
    derandomize="WATTWISE_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_has_no_server_errors(case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
