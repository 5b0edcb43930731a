"""A real multi-service scenario shaped like GMT shop files, run with podman (examples/shop-microservices), and
GMT's runner form `wattwise run --uri <git repo> --filename sub/usage_scenario.yml --branch main`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from wattwise.analysis.sci import run_sci
from wattwise.measure.scenario.runner import RunOptions, run_scenario
from wattwise.store import Store

from .conftest import EXAMPLES, leftovers

pytestmark = [pytest.mark.podman, pytest.mark.slow]
SHOP = EXAMPLES / "shop-microservices"
INTENSITY = 400.0


def test_shop_microservices_for_real(store: Store, podman: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = tmp_path / "curve.csv"  # a known load→power curve (the estimate provider): 50 W idle, 150 W busy
    curve.write_text("utilization,power_w\n0,50\n1,150\n")
    monkeypatch.setenv("WATTWISE_POWER_CURVE", str(curve))
    labelled: dict[str, set[str]] = {"containers": set(), "networks": set()}
    key = hashlib.sha256(str(store.url).encode()).hexdigest()[:12]  # run ids repeat across databases
    done = threading.Event()

    def watch(run_id: int) -> None:  # while the run goes on: what carries wattwise.run_id=<its id>
        def poll() -> None:
            while not done.is_set():
                for what, args in (("containers", ["ps", "-a", "--format", "{{.Names}}"]),
                                   ("networks", ["network", "ls", "--format", "{{.Name}}"])):
                    filters = ["--filter", f"label=wattwise.run_id={run_id}", "--filter", f"label=wattwise.store={key}"]
                    out = subprocess.run([podman, *args, *filters], capture_output=True, text=True, check=False).stdout
                    labelled[what].update(out.split())
                done.wait(0.3)

        threading.Thread(target=poll, daemon=True).start()

    result = run_scenario(
        store,
        SHOP / "microservices" / "usage_scenario.yml",
        RunOptions(
            root=SHOP,
            dev_no_sleeps=True,
            interval_s=0.1,
            intensity_g_per_kwh=INTENSITY,
            pue=1.0,
            providers=["cpu", "network", "estimate"],
            on_run_created=watch,
        ),
    )
    done.set()
    assert result.status == "finished", (result.error, result.output)
    summary = result.summary
    phases = {p["name"]: p for p in summary["phases"]}
    assert list(phases) == ["[INSTALLATION]", "[BOOT]", "[RUNTIME]", "Browse and order", "Check the cart", "[REMOVE]"]

    # per-phase energy: every phase has some, and the flow steps make up [RUNTIME]
    for name, phase in phases.items():
        assert phase["energy_j"] is not None, name
        assert 50 * phase["duration_s"] <= phase["energy_j"] <= 150 * phase["duration_s"] + 1e-6, name
    steps = phases["Browse and order"]["energy_j"] + phases["Check the cart"]["energy_j"]
    assert phases["[RUNTIME]"]["energy_j"] == pytest.approx(steps, rel=1e-9)
    runtime = phases["[RUNTIME]"]
    assert runtime["carbon_g"] == pytest.approx(runtime["energy_j"] / 3.6e6 * INTENSITY, rel=1e-9)  # by hand

    # per-service CPU: the load loop made the client, the catalogue and the cart work
    order = phases["Browse and order"]["services"]
    assert sorted(order) == ["cart", "catalog", "client", "db"]
    for name in ("client", "catalog", "cart"):
        assert order[name]["cpu_time_s"] is not None and order[name]["cpu_time_s"] > 0, name
    assert order["catalog"]["network_tx_b"] > 20 * 65536  # 20 pages of 64 KiB went out of the catalogue
    assert order["client"]["network_rx_b"] > 20 * 65536

    # SCI per R: 20 orders (REQUESTS from the compose file's environment), read from GMT_SCI_R lines
    assert summary["sci"] == {"R_d": "order", "R": 20.0, "R_source": "GMT_SCI_R lines (20)"}
    sci = run_sci(store, result.run_id)
    assert sci.r == 20.0 and sci.operational_g is not None and sci.operational_g >= runtime["carbon_g"]
    assert sci.sci_g_per_unit == pytest.approx(sci.operational_g / 20.0, rel=1e-12)

    # health came from the images; everything carried the run id and was removed
    warnings = store.get_run(result.run_id).warnings or []
    assert any("service db: the healthcheck of its image is used (/bin/sh -c test -f /tmp/ready)" in w for w in warnings)
    assert any("service catalog: the healthcheck of its image is used" in w for w in warnings)
    settings = store.get_run(result.run_id).settings
    token = settings["run_token"]
    assert labelled["containers"] == {f"wattwise-{token}-{name}" for name in ("db", "catalog", "cart", "client")}
    assert labelled["networks"] == {f"wattwise-{token}-shop"}
    assert leftovers(podman, [f"wattwise-{token}"]) == {"containers": [], "networks": [], "volumes": []}
    images = subprocess.run(
        [podman, "images", "--format", "{{.Repository}}", "--filter", f"label=wattwise.run_id={result.run_id}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert images == []  # built images are removed (and were labelled with the run id)


def test_runner_flags_on_a_local_git_repository(tmp_path: Path, podman: str) -> None:
    repo = tmp_path / "shop"
    shutil.copytree(SHOP, repo)
    (repo / "microservices").rename(repo / "sub")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "shop"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, WATTWISE_DATA_DIR=str(tmp_path / "data"), TMPDIR=str(tmp_path))
    env.pop("WATTWISE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "wattwise", "run", "--uri", str(repo), "--filename", "sub/usage_scenario.yml",
         "--branch", "main", "--dev-no-metrics", "--dev-no-sleeps", "--print-logs", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "finished" and summary["error"] is None
    assert summary["sci"]["R"] == 20.0
    assert "logs of catalog" in done.stderr  # --print-logs
    assert [p for p in tmp_path.iterdir() if p.name.startswith("wattwise-uri-")] == []  # the clone is removed
    store = Store(f"sqlite:///{tmp_path / 'data' / 'wattwise.db'}")
    try:
        run = store.get_run(summary["run_id"])
        assert run.settings["uri"] == str(repo) and run.settings["branch"] == "main"
        assert run.settings["commit_hash"] == head and run.settings["dev_no_metrics"] is True
        assert run.settings["providers"] == []  # nothing sampled
    finally:
        store.close()

    # the same repository without --branch is used in place; a --filename may not leave it
    done = subprocess.run(
        [sys.executable, "-m", "wattwise", "validate", "--uri", str(repo), "--filename", "../x.yml"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 2 and "--filename ../x.yml: leads out of --uri" in done.stderr


def test_cached_builds_are_reused_and_labelled(store: Store, podman: str, tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shutil.copytree(SHOP, shop)
    scenario = shop / "microservices" / "usage_scenario.yml"
    options = RunOptions(root=shop, dev_no_sleeps=True, dev_no_metrics=True)
    missing = run_scenario(store, scenario, RunOptions(root=shop, dev_no_sleeps=True, dev_no_build=True))
    assert missing.status == "failed"
    assert "--dev-no-build, but there is no image localhost/wattwise-cache-" in (missing.error or "")
    cached: list[str] = []
    try:
        options.dev_cache_build = True
        first = run_scenario(store, scenario, options)
        assert first.status == "finished", first.error
        listing = subprocess.run(
            [podman, "images", "--format", "{{.Repository}}", "--filter", "reference=localhost/wattwise-cache-*"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        cached = sorted({name for name in listing if name.endswith(("-db", "-catalog", "-cart"))})
        assert len(cached) == 3, listing
        label = subprocess.run(
            [podman, "image", "inspect", "--format", '{{index .Labels "wattwise.run_id"}}', cached[0]],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        assert label == str(first.run_id)
        second = run_scenario(store, scenario, RunOptions(root=shop, dev_no_sleeps=True, dev_no_build=True))
        assert second.status == "finished", second.error
        builds = [e.text for e in store.logs(second.run_id) if e.source.endswith(" build")]
        assert len(builds) == 3 and all(text.startswith("reusing localhost/wattwise-cache-") for text in builds)
    finally:
        if cached:
            subprocess.run([podman, "rmi", "-f", *cached], capture_output=True, check=False)
