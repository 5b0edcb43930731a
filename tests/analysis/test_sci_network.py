"""SCI network transfer: only bytes that leave the machine, each once; ≈ estimated; traces outside the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wattwise.analysis.sci import run_sci
from wattwise.analysis.synthetic import T0, add_series
from wattwise.carbon.trace import read_trace
from wattwise.errors import WattwiseError
from wattwise.providers.base import Kind, MetricSpec
from wattwise.store import Store
from wattwise.units import J_PER_KWH

ROOT = Path(__file__).resolve().parents[2]
DE_TRACE = ROOT / "data" / "carbon" / "DE-2024-hourly-electricitymaps.csv"


def _container_run(store: Store, *, estimated: bool = False, t0_us: int = T0) -> int:
    """10 s at 50 W. Container 'client' sends 1 GB to container 'db' on the same machine (the machine's
    veths see it twice: 1 GB rx + 1 GB tx); 'db' also receives 0.2 GB from outside (its veth 0.2 GB tx, the
    uplink 0.2 GB rx)."""
    run_id = store.create_run("net", "scenario", settings={"intensity_g_per_kwh": 400.0, "pue": 1.0})
    t = np.linspace(0, 10, 11)
    power = MetricSpec("estimated_power_w" if estimated else "ipmi_power_w", "W", Kind.GAUGE, "machine")
    add_series(store, run_id, power, t, np.full_like(t, 50.0), t0_us=t0_us)
    f = t / 10
    machine_rx, machine_tx = f * (1e9 + 0.2e9), f * (1e9 + 0.2e9)
    add_series(store, run_id, MetricSpec("network_rx_b", "B", Kind.COUNTER, "machine"), t, machine_rx, t0_us=t0_us)
    add_series(store, run_id, MetricSpec("network_tx_b", "B", Kind.COUNTER, "machine"), t, machine_tx, t0_us=t0_us)
    for name, rx, tx in (("client", 0.0, 1e9), ("db", 1.2e9, 0.0)):
        add_series(store, run_id, MetricSpec("network_rx_b", "B", Kind.COUNTER, name), t, f * rx, t0_us=t0_us)
        add_series(store, run_id, MetricSpec("network_tx_b", "B", Kind.COUNTER, name), t, f * tx, t0_us=t0_us)
    store.add_phase(run_id, "[RUNTIME]", t0_us, t0_us + 10_000_000)
    store.finish_run(run_id, "finished")
    return run_id


def test_same_host_traffic_is_not_network_transfer(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    run_id = _container_run(store)
    result = run_sci(store, run_id, network_kwh_per_gb=0.1)
    # only the 0.2 GB from outside crossed the machine's boundary
    assert result.network_bytes == pytest.approx(0.2e9)
    assert result.network_energy_j == pytest.approx(0.2 * 0.1 * J_PER_KWH)
    assert result.network_scope == "external"
    every = run_sci(store, run_id, network_kwh_per_gb=0.1, network_scope="all")
    # plus the 1 GB between the two containers, once
    assert every.network_bytes == pytest.approx(1.2e9)
    with pytest.raises(WattwiseError, match="network scope"):
        run_sci(store, run_id, network_scope="both")


def test_sci_json_says_estimated(sqlite_url: str, run_cli) -> None:
    store = Store(sqlite_url)
    measured, guessed = _container_run(store), _container_run(store, estimated=True)
    assert run_sci(store, measured).estimated is False
    assert run_sci(store, guessed).estimated is True
    out = run_cli("sci", str(guessed), "--json", "--db", sqlite_url, check=True)
    assert json.loads(out.stdout)["estimated"] is True
    text = run_cli("sci", str(guessed), "--db", sqlite_url, check=True).stdout
    assert "≈" in text and "estimated" in text


def test_trace_outside_the_run_says_how_to_map_it(sqlite_url: str, run_cli) -> None:
    store = Store(sqlite_url)
    today = 1_786_752_000_000_000  # 2026-08-15, after the 2024 trace (which covers July to October 2024)
    run_id = _container_run(store, t0_us=today)
    trace = read_trace(DE_TRACE)
    with pytest.raises(WattwiseError, match=r"--trace-at 2024-08-15T"):
        run_sci(store, run_id, intensity=trace)
    out = run_cli("sci", str(run_id), "--trace", str(DE_TRACE), "--db", sqlite_url)
    assert out.returncode == 2 and "--trace-at 2024-08-15T" in out.stderr and "Traceback" not in out.stderr
    at = out.stderr.split("e.g. --trace-at ")[1].split()[0]
    ok = run_cli("sci", str(run_id), "--trace", str(DE_TRACE), "--trace-at", at, "--json", "--db", sqlite_url)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["intensity_g_per_kwh"] == pytest.approx(trace.mean_over(_at_s(at), _at_s(at) + 10))


def _at_s(iso: str) -> float:
    from wattwise.carbon.trace import parse_time_s

    return parse_time_s(iso)
