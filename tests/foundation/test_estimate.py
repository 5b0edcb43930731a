from __future__ import annotations

from pathlib import Path

import pytest

from wattwise.errors import ConfigError
from wattwise.providers.estimate import (
    EstimatedPowerProvider,
    PowerCurve,
    default_power_curve,
    lookup_tdp,
)
from wattwise.providers.procstat import USER_HZ


def test_teads_curve_from_tdp() -> None:
    curve = PowerCurve.from_tdp(100.0, "test")
    assert curve.power_w(0.0) == pytest.approx(12.0)
    assert curve.power_w(0.10) == pytest.approx(32.0)
    assert curve.power_w(0.30) == pytest.approx(53.5)  # halfway between 32 and 75
    assert curve.power_w(1.0) == pytest.approx(102.0)
    assert curve.power_w(1.5) == pytest.approx(102.0)


def test_calibration_table_replaces_curve(tmp_path: Path) -> None:
    table = tmp_path / "cal.csv"
    table.write_text("utilization,power_w\n0,50\n50,150\n100,200\n")  # percent is accepted
    curve = PowerCurve.from_csv(table)
    assert curve.power_w(0.25) == pytest.approx(100.0)
    assert default_power_curve(calibration=table).power_w(1.0) == pytest.approx(200.0)


def test_calibration_errors_name_the_line(tmp_path: Path) -> None:
    table = tmp_path / "cal.csv"
    table.write_text("utilization,power_w\n0,50\nhalf,150\n")
    with pytest.raises(ConfigError, match=r"cal.csv:3"):
        PowerCurve.from_csv(table)
    table.write_text("utilization,power_w\n0.5,50\n")
    with pytest.raises(ConfigError, match="at least two points"):
        PowerCurve.from_csv(table)


def test_tdp_table_lookup() -> None:
    found = lookup_tdp("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    assert found is not None and found.tdp_w == 150.0
    found = lookup_tdp("AMD EPYC 7763 64-Core Processor")
    assert found is not None and found.tdp_w == 280.0
    assert lookup_tdp("Imaginary CPU 9000") is None


def test_unknown_cpu_falls_back_and_says_so(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Imaginary CPU 9000\n")
    curve = default_power_curve(cpuinfo=cpuinfo)
    assert "assumed:" in curve.source and "tdp" in curve.source.split("assumed:")[1]
    assert any(a.startswith("tdp") for a in curve.assumed)
    assert "65 W/chip (configured)" in default_power_curve(tdp_w=65.0, cpuinfo=cpuinfo).source


def test_estimate_provider_follows_load(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  0 0 0 {USER_HZ} 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")
    provider = EstimatedPowerProvider(PowerCurve.from_tdp(100.0, "t"), proc_root=tmp_path)
    provider.open()
    stat.write_text(f"cpu  {USER_HZ} 0 0 {USER_HZ} 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")  # fully busy since
    assert provider.read() == [pytest.approx(102.0)]
    stat.write_text(f"cpu  {USER_HZ} 0 0 {2 * USER_HZ} 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0\n")  # fully idle since
    assert provider.read() == [pytest.approx(12.0)]
    assert provider.specs()[0].estimated


def test_negative_tdp_rejected() -> None:
    with pytest.raises(ConfigError, match="TDP must be positive"):
        PowerCurve.from_tdp(-5, "x")
