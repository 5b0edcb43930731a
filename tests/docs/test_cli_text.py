"""What `--help` and the CLI print reads right: no eaten brackets, no `<bool>`, no property objects, examples."""

from __future__ import annotations

import json

import pytest

EXAMPLES = ["simulate", "sweep", "runs show", "runs delete", "exporter", "monitor-api", "monitor-proxy"]


@pytest.mark.parametrize("command", EXAMPLES)
def test_help_has_examples(run_cli, command: str) -> None:
    out = run_cli(*command.split(), "--help", check=True).stdout
    assert "Example" in out and f"wattwise {command} " in out


def test_flags_show_no_bool_type_and_brackets_survive(run_cli) -> None:
    out = run_cli("measure", "--help", check=True).stdout
    assert "<bool>" not in out and "--json" in out
    slurm = run_cli("slurm", "submit", "--help", check=True).stdout
    assert "[now, now + wait]" in slurm


def test_providers_scope_is_text(run_cli) -> None:
    out = run_cli("providers", check=True).stdout
    assert "property object" not in out
    rows = json.loads(run_cli("providers", "--json", check=True).stdout)
    assert {r["name"]: r["scope"] for r in rows}["network"] == "machine or unit"


def test_unknown_country_names_no_missing_command(run_cli) -> None:
    out = run_cli("measure", "--country", "Germny", "--baseline", "0", "--", "true")
    assert out.returncode == 2
    assert "wattwise grid" not in out.stderr and "Germany" in out.stderr


def test_model_plot_smoothing_never_exceeds_a_quarter_of_the_shortest_phase() -> None:
    import numpy as np

    from wattwise.jobmodel.pinpoint import Event, PowerRun
    from wattwise.jobmodel.plot import effective_sigma_s, smooth

    # a 4 s run at 10 Hz: 60 W, then 250 W from 2 s on; events at 0, 2 and 4 s (two 2 s phases)
    edges = np.linspace(1000.0, 1004.0, 41)
    power = np.where(edges[:-1] < 1002.0, 60.0, 250.0)
    events = [Event(1000.0, "start program", 1), Event(1002.0, "Start training", 2), Event(1004.0, "Exit", 3)]
    run = PowerRun("r", "r", edges, power, events)
    used = effective_sigma_s(run, 2.0)
    assert used == 0.5  # ¼ of 2 s, not the 2 s asked for
    trend = smooth(power, 0.1, used)
    # the trend reaches the samples' levels within the phases instead of drawing one long ramp
    assert trend[2] == pytest.approx(60.0, abs=0.5) and trend[-3] == pytest.approx(250.0, abs=0.5)
    assert effective_sigma_s(run, 0.2) == 0.2 and effective_sigma_s(run, 0) == 0.0


def test_model_fit_prints_figures_at_the_measurement_resolution_with_approx(run_cli, tmp_path) -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    runs = sorted(str(p) for p in (root / "examples" / "pinpoint").glob("run-*"))
    out = run_cli("model", "fit", *runs, "--before", "5s", "--after", "5s", "-o", str(tmp_path / "m.json"),
                  check=True).stdout
    assert "e-1" not in out and "e-0" not in out  # no float noise such as ± 2.5e-15 W
    assert "model: ≈" in out
    cv = run_cli("model", "cv", *runs, "--before", "5s", "--after", "5s", check=True).stdout
    assert "≈" in cv


def test_metric_labels_keep_their_brackets_in_tables(run_cli, sqlite_url: str) -> None:
    from wattwise.analysis.synthetic import scenario_run
    from wattwise.store import Store

    run_id = scenario_run(Store(sqlite_url))
    out = run_cli("stats", str(run_id), "--phase", "[RUNTIME]", "--db", sqlite_url, check=True).stdout
    assert "cgroup_cpu_time_s[web]" in out and "ipmi_power_w[machine]" in out
    # totals only where they are amounts: memory (a gauge) has none
    memory = next(line for line in out.splitlines() if "cgroup_memory_b[web]" in line)
    assert memory.split("│")[2].strip() == "–"


def test_small_carbon_figures_stay_in_one_unit_family() -> None:
    from wattwise.units import format_si

    assert format_si(9.57e-7, "g") == "957 ng"
    assert format_si(4.2e-6, "g") == "4.2 µg"
    assert format_si(2.5e-11, "g") == "25 pg"
