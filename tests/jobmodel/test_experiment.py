"""Measurement campaigns with a real program (a small 'training' script) and real measurements: the machine's
CPU utilisation from /proc/stat turned into watts, and wattwise's own sampler into a SQLite store."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wattwise.cli import app
from wattwise.jobmodel.experiment import (
    CampaignOptions,
    ExperimentError,
    FunctionMeter,
    SamplerMeter,
    run_campaign,
    run_program,
    stop_rule,
)
from wattwise.jobmodel.fit import fit_runs
from wattwise.jobmodel.phasemap import default_phasemap
from wattwise.jobmodel.pinpoint import Event, read_pinpoint
from wattwise.store import Store

TRAIN = textwrap.dedent(
    """
    import os, pathlib, sys, time

    EPOCHS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    ckpt = pathlib.Path(os.environ["CKPT_DIR"]) / (
        "ckpt-" + os.environ.get("WATTWISE_VARIANT", "x") + "-" + os.environ.get("WATTWISE_REP", "0"))

    def note(label):
        print(f"{time.time_ns() // 1000} {label}", flush=True)

    def busy(seconds):
        end = time.time() + seconds
        while time.time() < end:
            pass

    busy(0.05)  # "imports"
    note("start program")
    time.sleep(0.05)
    note("after load data")
    first = 1
    if os.environ.get("WATTWISE_RESUME") == "1" and ckpt.exists():
        first = int(ckpt.read_text()) + 1
    note("Start training")
    for epoch in range(first, EPOCHS + 1):
        busy(0.25)
        note(f"Epoch {epoch}.0 ended. Steps: {12 * epoch}")
        time.sleep(0.05)
        note("Evaluate")
        time.sleep(0.15)  # writing the checkpoint
        ckpt.write_text(str(epoch))
        note(f"Epoch {epoch}.0. Saved. Steps: {12 * epoch}")
    note("End training")
    note("Exit")
    """
)


class CpuMeter(FunctionMeter):
    """Machine power from /proc/stat: 10 W idle + 40 W × CPU utilisation (a simple, real measurement)."""

    def __init__(self) -> None:
        self._last = self._cpu_times()
        super().__init__(self._read, interval_s=0.02, source="procstat")

    @staticmethod
    def _cpu_times() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def _read(self) -> float:
        total, idle = self._cpu_times()
        d_total, d_idle = total - self._last[0], idle - self._last[1]
        self._last = (total, idle)
        return 10.0 + 40.0 * (1 - d_idle / d_total) if d_total > 0 else 10.0


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    (tmp_path / "ckpt").mkdir()
    monkeypatch.setenv("CKPT_DIR", str(tmp_path / "ckpt"))
    return [sys.executable, str(path)]


def labels(events: list[Event]) -> list[str]:
    return [e.label for e in events]


def test_run_program_reads_events_and_stops_at_the_checkpoint(script: list[str]) -> None:
    full = run_program(script)
    assert full.exit_code == 0 and not full.stopped
    assert labels(full.events)[0] == "start program" and labels(full.events)[-1] == "Exit"
    assert full.launch_s < full.events[0].time_s <= full.events[-1].time_s < full.exit_s
    rule = stop_rule("after-checkpoint", default_phasemap(), 1)
    stopped = run_program(script, stop_when=rule, stop_signal=signal.SIGINT)
    assert stopped.stopped and labels(stopped.events)[-1] == "Epoch 1.0. Saved. Steps: 12"
    assert stopped.exit_s - stopped.launch_s < full.exit_s - full.launch_s


def test_stop_rules() -> None:
    pmap = default_phasemap()
    seq = ["start program", "after load data", "Start training", "Epoch 1.0 ended. Steps: 1", "Evaluate",
           "Epoch 1.0. Saved. Steps: 1", "Epoch 2.0 ended. Steps: 2", "Evaluate", "Epoch 2.0. Saved. Steps: 2"]

    def first_stop(variant: str, k: int) -> str | None:
        rule = stop_rule(variant, pmap, k)
        assert rule is not None
        for n in range(1, len(seq) + 1):
            if rule([Event(float(i), lbl) for i, lbl in enumerate(seq[:n])]):
                return seq[n - 1]
        return None

    assert first_stop("startup", 1) == "Start training"
    assert first_stop("before-checkpoint", 1) == "Evaluate"
    assert first_stop("after-checkpoint", 1) == "Epoch 1.0. Saved. Steps: 1"
    assert first_stop("after-checkpoint", 2) == "Epoch 2.0. Saved. Steps: 2"
    assert stop_rule("full", pmap, 1) is None
    with pytest.raises(Exception, match="unknown variant"):
        stop_rule("half", pmap, 1)


def test_campaign_variants_windows_and_folders(tmp_path: Path, script: list[str]) -> None:
    out = tmp_path / "campaign"
    options = CampaignOptions(argv=script, runs=2, rest_s=0.05, before_s=0.3, after_s=0.3, idle_s=0.4,
                              out_dir=out)
    seen: list[str] = []
    result = run_campaign(options, default_phasemap(), CpuMeter(), progress=seen.append)
    assert any("before window" in s for s in seen) and any("resuming" in s for s in seen)
    by = {s.variant: s for s in result.summaries}
    assert set(by) == {"full", "after-checkpoint", "before-checkpoint", "startup", "idle"}
    assert all(s.n == 2 for s in by.values())
    assert [r.variant for r in result.recordings[:5]] == list(options.variants)  # interleaved
    recs = {(r.variant, r.rep): r for r in result.recordings}
    after, before = recs[("after-checkpoint", 1)], recs[("before-checkpoint", 1)]
    assert [len(r.segments) for r in (after, before, recs[("full", 1)], recs[("startup", 1)])] == [2, 2, 1, 1]
    # resumed after the checkpoint: epoch 1 is not done again; before it: it is
    assert "Epoch 1.0 ended. Steps: 12" not in labels(after.segments[1].events)
    assert "Epoch 1.0 ended. Steps: 12" in labels(before.segments[1].events)
    assert labels(recs[("startup", 1)].segments[0].events)[-1] == "Start training"
    # the stop/resume variants last longer than the full run (the startup again); startup is shorter
    assert by["after-checkpoint"].duration_mean_s > by["full"].duration_mean_s
    assert by["before-checkpoint"].duration_mean_s > by["after-checkpoint"].duration_mean_s
    assert by["startup"].duration_mean_s < by["full"].duration_mean_s
    assert by["after-checkpoint"].overhead_j is not None and by["full"].overhead_j is None
    assert by["startup"].energy_mean_j < by["full"].energy_mean_j
    assert result.idle_power_w is not None and 10.0 <= result.idle_power_w <= 50.0
    assert by["full"].above_idle_mean_j is not None
    # recordings as pinpoint folders: the full runs can be fitted with the same windows
    data = json.loads((out / "campaign.json").read_text())
    assert len(data["recordings"]) == 10 and data["variants"][0]["variant"] == "full"
    runs = [read_pinpoint(out / "full" / f"rep-{i}", before_s=0.3, after_s=0.3) for i in (1, 2)]
    model = fit_runs(runs).model
    assert [p.name for p in model.startup] == ["start", "prepare"]
    assert [p.name for p in model.work][:3] == ["train", "evaluate", "save"]
    assert model.duration_s == pytest.approx(by["full"].duration_mean_s, rel=0.1)
    assert (out / "idle" / "rep-1" / "measurements.csv").exists()


def test_campaign_errors(script: list[str]) -> None:
    with pytest.raises(ExperimentError, match=r"ended .* before the event to stop at was seen"):
        run_campaign(CampaignOptions(argv=script, runs=1, variants=("after-checkpoint",), epoch=5, rest_s=0,
                                     before_s=0, after_s=0), default_phasemap(), CpuMeter())
    with pytest.raises(ExperimentError, match="exited with code 3"):
        run_campaign(CampaignOptions(argv=[sys.executable, "-c", "raise SystemExit(3)"], runs=1,
                                     variants=("full",), rest_s=0, before_s=0, after_s=0),
                     default_phasemap(), CpuMeter())
    with pytest.raises(Exception, match="unknown variant 'half'"):
        run_campaign(CampaignOptions(argv=script, variants=("half",)), default_phasemap(), CpuMeter())
    with pytest.raises(ExperimentError, match="could not start"):
        run_program(["/nonexistent/program"])


def test_sampler_meter_stores_runs_that_fit(tmp_path: Path, script: list[str]) -> None:
    db = tmp_path / "w.sqlite"
    store = Store(f"sqlite:///{db}")
    try:
        meter = SamplerMeter(store, providers=["estimate"], interval_s=0.05)
        options = CampaignOptions(argv=script, runs=2, variants=("full",), rest_s=0, before_s=0.3, after_s=0.3)
        result = run_campaign(options, default_phasemap(), meter)
        ids = [r.run_id for r in result.recordings]
        assert all(ids) and result.recordings[0].power_source == "estimate"
        assert [p.name for p in store.phases(ids[0])] == ["[BASELINE]", "[RUNTIME]"]
    finally:
        store.close()
    cli = CliRunner().invoke(app, ["model", "fit", *(f"run:{i}" for i in ids), "--db", str(db), "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["model"]["startup"][0]["name"] == "start"


def test_experiment_command(tmp_path: Path, script: list[str]) -> None:
    result = CliRunner().invoke(app, [
        "experiment", "-n", "1", "--variants", "full,startup", "--rest", "0s", "--before", "200ms",
        "--after", "200ms", "--providers", "estimate", "--interval", "50ms", "--db", str(tmp_path / "w.sqlite"),
        "-o", str(tmp_path / "c"), "--json", "--", *script,
    ])
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(result.stdout)
    assert [v["variant"] for v in data["variants"]] == ["full", "startup"]
    assert data["variants"][1]["overhead_j"] < 0  # startup only costs less than the full run
    assert (tmp_path / "c" / "startup" / "rep-1" / "events.csv").exists()


def test_failed_recording_keeps_its_samples_and_is_marked_failed(tmp_path: Path) -> None:
    from wattwise.jobmodel.experiment import record

    store = Store(f"sqlite:///{tmp_path / 'fail.db'}")
    meter = SamplerMeter(store, providers=["estimate"], interval_s=0.05)
    options = CampaignOptions(argv=[sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(4)"],
                              variants=("full",), runs=1, before_s=0.2, after_s=0.2, rest_s=0)
    with pytest.raises(ExperimentError, match="exited with code 4"):
        record("full", 1, options, default_phasemap(), meter)
    run = store.list_runs()[0]
    assert run.status == "failed" and "exited with code 4" in run.error
    assert store.sample_count(run.id) > 3
