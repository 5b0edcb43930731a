"""Whole-node power meters besides IPMI: Redfish against a real Redfish emulator (sushy-tools' sushy-static
serving a mockup written here, on a free loopback port), hwmon power sensors on fixture trees modelled on
/sys/class/hwmon, and the IPMI DCMI average/minimum/maximum."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.monitor.conftest import free_port, parse_samples

from wattwise.monitor.node import IpmiPoller
from wattwise.providers.base import ProviderError
from wattwise.providers.hwmon_power import HwmonPower, list_power_sensors
from wattwise.providers.redfish import RedfishPower


def _write(root: Path, resource: str, document: dict) -> None:
    directory = root / resource
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps(document, indent=1))


def _power(watts: list[float], average: list[float] | None = None, interval_min: int = 1) -> dict:
    controls = []
    for i, w in enumerate(watts):
        control: dict = {"@odata.id": f"#/PowerControl/{i}", "MemberId": str(i), "Name": f"Power control {i}",
                         "PowerConsumedWatts": w, "PowerCapacityWatts": 1600}
        if average is not None:
            control["PowerMetrics"] = {"IntervalInMin": interval_min, "MinConsumedWatts": w - 40,
                                       "MaxConsumedWatts": w + 60, "AverageConsumedWatts": average[i]}
        controls.append(control)
    return {"@odata.type": "#Power.v1_7_1.Power", "Id": "Power", "Name": "Power", "PowerControl": controls}


def write_mockup(root: Path) -> None:
    """Service root; chassis 1U (two PSU power controls), Blade1 contained by 1U (its power is inside 1U's),
    Drawer (EnvironmentMetrics only), Cooling (no power at all)."""
    _write(root, "", {"@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot", "Id": "RootService", "RedfishVersion": "1.6.0",
                      "Chassis": {"@odata.id": "/redfish/v1/Chassis"}})
    members = ["1U", "Blade1", "Drawer", "Cooling"]
    _write(root, "Chassis", {"@odata.type": "#ChassisCollection.ChassisCollection", "Name": "Chassis Collection",
                             "Members@odata.count": len(members),
                             "Members": [{"@odata.id": f"/redfish/v1/Chassis/{m}"} for m in members]})
    _write(root, "Chassis/1U", {"@odata.type": "#Chassis.v1_8_0.Chassis", "Id": "1U", "ChassisType": "RackMount",
                                "Power": {"@odata.id": "/redfish/v1/Chassis/1U/Power"}, "Links": {}})
    _write(root, "Chassis/1U/Power", _power([180.0, 170.0], average=[175.0, 160.0]))
    _write(root, "Chassis/Blade1", {"@odata.type": "#Chassis.v1_8_0.Chassis", "Id": "Blade1", "ChassisType": "Blade",
                                    "Power": {"@odata.id": "/redfish/v1/Chassis/Blade1/Power"},
                                    "Links": {"ContainedBy": {"@odata.id": "/redfish/v1/Chassis/1U"}}})
    _write(root, "Chassis/Blade1/Power", _power([90.0]))
    _write(root, "Chassis/Drawer", {"@odata.type": "#Chassis.v1_14_0.Chassis", "Id": "Drawer", "ChassisType": "Drawer",
                                    "EnvironmentMetrics": {"@odata.id": "/redfish/v1/Chassis/Drawer/EnvironmentMetrics"}})
    _write(root, "Chassis/Drawer/EnvironmentMetrics", {"@odata.type": "#EnvironmentMetrics.v1_2_0.EnvironmentMetrics",
                                                       "Id": "EnvironmentMetrics", "PowerWatts": {"Reading": 42.5}})
    _write(root, "Chassis/Cooling", {"@odata.type": "#Chassis.v1_8_0.Chassis", "Id": "Cooling",
                                     "ChassisType": "Component"})


@pytest.fixture
def redfish(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = shutil.which("sushy-static") or str(Path(sys.executable).parent / "sushy-static")
    if not Path(binary).exists():
        pytest.skip("sushy-tools (sushy-static) is not installed")
    mockup = tmp_path / "mockup"
    write_mockup(mockup)
    port = free_port()
    process = subprocess.Popen([binary, "--interface", "127.0.0.1", "--port", str(port), "--mockup-files",
                                str(mockup)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # hang guard
        while True:
            if process.poll() is not None:
                raise AssertionError(f"sushy-static exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/redfish/v1", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("sushy-static did not answer within 60 s")
            time.sleep(0.1)
        yield url, mockup
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_redfish_chassis_power_from_the_emulator(redfish: tuple[str, Path]) -> None:
    url, mockup = redfish
    meter = RedfishPower(url, user="admin", password="password")
    readings = {r.chassis: r for r in meter.readings()}
    assert sorted(readings) == ["1U", "Drawer"]  # Blade1 is inside 1U; Cooling reports no power
    assert readings["1U"].power_w == 350.0 and readings["1U"].average_w == 335.0
    assert (readings["1U"].minimum_w, readings["1U"].maximum_w, readings["1U"].interval_s) == (270.0, 470.0, 60.0)
    assert readings["Drawer"].power_w == 42.5
    total = meter.query()
    assert total.power_w == 392.5 and total.average_w is None  # the drawer gives no average
    # the BMC's reading changes: the next query sees it
    _write(mockup, "Chassis/1U/Power", _power([200.0, 200.0], average=[190.0, 180.0]))
    assert meter.query().power_w == 442.5
    one = RedfishPower(url, chassis=["1U"]).query()
    assert (one.power_w, one.average_w, one.minimum_w, one.maximum_w, one.sampling_period_s) == (
        400.0, 370.0, 320.0, 520.0, 60.0)
    with pytest.raises(ProviderError, match="no chassis Nope reports its power"):
        RedfishPower(url, chassis=["Nope"]).query()


def test_redfish_unreachable_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match=r"Redfish http://127\.0\.0\.1:\d+/redfish/v1/Chassis"):
        RedfishPower(f"http://127.0.0.1:{free_port()}", timeout_s=2).query()


def test_redfish_meter_drives_the_exporter(redfish: tuple[str, Path], fixture_run) -> None:
    url, _ = redfish
    run = fixture_run("slurm-v2", pue=1.0)
    poller = IpmiPoller(RedfishPower(url, chassis=["1U"]), interval_s=3600, meter="redfish", stat="average")
    poller.poll_once()
    run.exporter.node.ipmi = poller
    run.exporter._point = None
    run.scrape()
    run.advance(10.0)
    samples = parse_samples(run.scrape())
    node = {dict(k)["source"]: v for (n, k), v in samples.items() if n == "wattwise_node_power_watts"}
    assert node == {"redfish": 335.0}  # --meter-stat average; no RAPL in this tree
    meter = {dict(k)["stat"]: v for (n, k), v in samples.items() if n == "wattwise_node_meter_power_watts"}
    assert meter == {"current": 350.0, "average": 335.0, "minimum": 270.0, "maximum": 470.0}
    assert not any(n == "wattwise_ipmi_power_watts" for n, _ in samples)
    split = {dict(k)["part"]: v for (n, k), v in samples.items() if n == "wattwise_node_power_split_watts"}
    assert split["cpu"] == pytest.approx(0.7 * 335.0) and split["fixed"] == pytest.approx(0.2 * 335.0)


def _hwmon_tree(root: Path) -> Path:
    """hwmon0 acpitz (temperatures only), hwmon1 an ACPI power meter (power1_average, µW), hwmon2 amdgpu
    (power1_average labelled PPT), hwmon10 a second power meter channel with power1_input."""
    files = {
        "hwmon0/name": "acpitz\n", "hwmon0/temp1_input": "27800\n",
        "hwmon1/name": "power_meter\n", "hwmon1/power1_average": "231500000\n",
        "hwmon1/power1_average_interval": "1000\n", "hwmon1/power1_model_number": "PM1\n",
        "hwmon2/name": "amdgpu\n", "hwmon2/power1_average": "35000000\n", "hwmon2/power1_label": "PPT\n",
        "hwmon2/power1_cap": "150000000\n",
        "hwmon10/name": "power_meter\n", "hwmon10/power1_input": "18250000\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_hwmon_power_sensors(tmp_path: Path) -> None:
    root = _hwmon_tree(tmp_path / "hwmon")
    sensors = list_power_sensors(root)
    assert [s.key for s in sensors] == ["hwmon1/power_meter/power1", "hwmon2/amdgpu/PPT", "hwmon10/power_meter/power1"]
    assert HwmonPower(["power_meter"], root).query().power_w == pytest.approx(231.5 + 18.25)
    assert HwmonPower(["amdgpu:PPT"], root).query().power_w == pytest.approx(35.0)
    with pytest.raises(ProviderError, match=r"matches nvme \(present: amdgpu:PPT, power_meter:power1\)"):
        HwmonPower(["nvme"], root).open()
    (root / "hwmon1" / "power1_average").write_text("garbage\n")
    with pytest.raises(ProviderError, match="expected microwatts"):
        HwmonPower(["power_meter"], root).query()


def test_ipmi_average_drives_the_split_when_asked(fixture_run) -> None:
    from tests.monitor.conftest import IPMI_FIXTURE

    from wattwise.providers.ipmi import IpmiDcmiProvider

    run = fixture_run("slurm-v2", pue=1.0)
    poller = IpmiPoller(IpmiDcmiProvider(command=["cat", str(IPMI_FIXTURE)]), interval_s=3600, stat="average")
    poller.poll_once()
    run.exporter.node.ipmi = poller
    run.exporter._point = None
    run.scrape()
    run.advance(10.0)
    samples = parse_samples(run.scrape())
    node = {dict(k)["source"]: v for (n, k), v in samples.items() if n == "wattwise_node_power_watts"}
    assert node == {"ipmi": 305.0}  # "Average power reading over sample period: 305 Watts"
    assert samples[("wattwise_ipmi_power_watts", frozenset({("hostname", "node01")}))] == 305.0
