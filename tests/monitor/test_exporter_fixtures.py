"""The exporter on the Slurm v1 and v2 fixture trees: golden output, attribution by hand, promtool."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from tests.monitor.conftest import (
    FIXTURES,
    check_metrics,
    parse_samples,
    unit_labels,
    unit_values,
)

from wattwise.carbon.static import country_factor
from wattwise.monitor.discovery import discover_units, read_usage, rebase_mounts
from wattwise.providers.cgroup import CgroupMounts, UnitCgroup
from wattwise.providers.gpu_tools import GpuDevice, GpuSnapshot

UPDATE = os.environ.get("WATTWISE_UPDATE_GOLDEN") == "1"
VOLATILE = re.compile(r"^wattwise_exporter_scrape_duration_seconds\{.*$", re.MULTILINE)


def _compare_golden(text: str, name: str) -> None:
    text = VOLATILE.sub("wattwise_exporter_scrape_duration_seconds{...} <volatile>", text)
    golden = FIXTURES / name / "expected.prom"
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with WATTWISE_UPDATE_GOLDEN=1 once"
    expected = golden.read_text()
    assert text == expected, f"exporter output differs from {golden} (WATTWISE_UPDATE_GOLDEN=1 rewrites it)"


def test_slurm_v1_golden_output(fixture_run) -> None:
    run = fixture_run("slurm-v1")
    run.advance(10.0)
    text = run.scrape()
    check_metrics(text)
    _compare_golden(text, "slurm-v1")


def test_slurm_v2_golden_output(fixture_run) -> None:
    run = fixture_run("slurm-v2", ipmi=True)
    run.advance(10.0)
    text = run.scrape()
    check_metrics(text)
    _compare_golden(text, "slurm-v2")


def test_slurm_v1_units_labels_and_stale_jobs(fixture_run) -> None:
    run = fixture_run("slurm-v1")
    run.advance(10.0)
    labels = unit_labels(run.scrape())
    # job 4244 has no process left: dropped; init.scope and user.slice are no units
    assert sorted(labels) == ["slurm/4242", "slurm/4243", "slurm/4245", "systemd/slurmd.service"]
    assert labels["slurm/4242"]["user"] == "alice"  # uid from the v1 path, name from the passwd file
    assert labels["slurm/4242"]["project"] == "astro"  # users: mapping
    assert labels["slurm/4243"]["project"] == "chem"  # SLURM_JOB_ACCOUNT of the job's process
    assert labels["slurm/4245"] == {"hostname": "node01", "manager": "slurm", "unit": "4245", "user": "1003",
                                    "project": "bio"}  # unknown uid stays a number; units: mapping
    assert labels["systemd/slurmd.service"]["user"] == "root"


def test_slurm_v1_attribution_by_hand(fixture_run) -> None:
    """RAPL only: P_cpu = 2 packages × 400 J / 10 s = 80 W (package-0 wrapped), P_mem = 2 × 50 J / 10 s.
    Node busy CPU: 2,500 ticks = 25 s. Node memory used: 16 − 8 GiB."""
    run = fixture_run("slurm-v1", pue=1.2)
    run.advance(10.0)
    text = run.scrape()
    power = unit_values(text, "wattwise_unit_power_watts")
    share = unit_values(text, "wattwise_unit_cpu_share_ratio")
    memory_share = unit_values(text, "wattwise_unit_memory_share_ratio")
    assert share["slurm/4242"] == pytest.approx(15 / 25)
    assert share["slurm/4243"] == pytest.approx(5 / 25)
    assert share["slurm/4245"] == 0
    assert share["systemd/slurmd.service"] == pytest.approx(0.5 / 25)
    assert memory_share["slurm/4242"] == pytest.approx(2 / 8)
    assert power["slurm/4242"] == pytest.approx(1.2 * (0.6 * 80 + 0.25 * 10))
    assert power["slurm/4245"] == pytest.approx(1.2 * (0.25 / 8) * 10)
    energy = unit_values(text, "wattwise_unit_energy_joules_total")
    assert energy["slurm/4242"] == pytest.approx(10 * power["slurm/4242"])
    emissions = unit_values(text, "wattwise_unit_emissions_grams_total")
    fr = country_factor("FR").intensity_g_per_kwh
    assert emissions["slurm/4242"] == pytest.approx(energy["slurm/4242"] / 3.6e6 * fr)
    samples = parse_samples(text)
    node = {name: value for (name, labels), value in samples.items() if name.startswith("wattwise_node_power")}
    assert node["wattwise_node_power_watts"] == pytest.approx(90.0)
    rapl = {dict(labels)["zone"]: value for (name, labels), value in samples.items()
            if name == "wattwise_rapl_energy_joules_total"}
    # the counter goes on past the wrap: raw value before + 400 J
    assert rapl["package-0"] == pytest.approx((262143328850 - 200_000_000) / 1e6 + 400)
    assert rapl["package-1"] == pytest.approx(1400)
    cpu = unit_values(text, "wattwise_unit_cpu_seconds_total")
    assert cpu["slurm/4242"] == pytest.approx(115.0)
    assert unit_values(text, "wattwise_unit_cpus")["slurm/4242"] == 2
    assert unit_values(text, "wattwise_unit_memory_limit_bytes")["slurm/4242"] == 4 * 2**30
    assert unit_values(text, "wattwise_unit_memory_failures_total")["slurm/4242"] == 3
    assert unit_values(text, "wattwise_unit_oom_kills_total")["slurm/4243"] == 1
    assert "slurm/4245" not in unit_values(text, "wattwise_unit_memory_limit_bytes")  # unlimited


def test_slurm_v2_with_containers_services_and_ipmi(fixture_run) -> None:
    """IPMI only (312 W): P_cpu = 0.7·312, P_mem = 0.1·312, P_fixed = 0.2·312 shared by the 4 live units."""
    run = fixture_run("slurm-v2", ipmi=True, pue=1.0)
    run.advance(10.0)
    text = run.scrape()
    labels = unit_labels(text)
    assert sorted(labels) == ["docker/3f4e8a1c2b7d", "podman/a1b2c3d4e5f6", "slurm/77", "systemd/nginx.service"]
    assert labels["slurm/77"]["user"] == "dave" and labels["slurm/77"]["project"] == "physics"
    assert labels["docker/3f4e8a1c2b7d"]["project"] == "web" and labels["docker/3f4e8a1c2b7d"]["user"] == "root"
    assert labels["podman/a1b2c3d4e5f6"]["user"] == "erin"
    assert labels["systemd/nginx.service"]["user"] == "www-data"
    busy = 70.0  # (6000 + 1000) ticks
    used = 32 * 2**30
    power = unit_values(text, "wattwise_unit_power_watts")
    expected_job = 0.7 * 312 * 50 / busy + 0.1 * 312 * 8 * 2**30 / used + 0.2 * 312 / 4
    assert power["slurm/77"] == pytest.approx(expected_job)
    assert sum(power.values()) <= 312
    assert unit_values(text, "wattwise_unit_oom_kills_total")["docker/3f4e8a1c2b7d"] == 2
    assert unit_values(text, "wattwise_unit_memory_failures_total")["docker/3f4e8a1c2b7d"] == 12
    assert unit_values(text, "wattwise_unit_memory_rss_bytes")["slurm/77"] == 7 * 2**30
    assert unit_values(text, "wattwise_unit_cpus")["podman/a1b2c3d4e5f6"] == 2
    samples = parse_samples(text)
    assert samples[("wattwise_ipmi_power_watts", frozenset({("hostname", "node01")}))] == 312
    assert not any(name == "wattwise_node_estimated_power_watts" for name, _ in samples)


def test_counters_are_monotonic_and_units_come_and_go(fixture_run) -> None:
    run = fixture_run("slurm-v2", ipmi=True)
    run.advance(10.0)
    first = unit_values(run.scrape(), "wattwise_unit_energy_joules_total")
    run.clock[0] += 10.0  # nothing used CPU: the memory and fixed parts of the BMC reading still accrue
    second = unit_values(run.scrape(), "wattwise_unit_energy_joules_total")
    for unit, value in first.items():
        assert second[unit] > value
    # the container ends and its cgroup is removed: it is no longer exported, the others go on
    docker = next(run.root.glob("cgroup/system.slice/docker-*.scope"))
    shutil.rmtree(docker)
    run.clock[0] += 10.0
    third = unit_values(run.scrape(), "wattwise_unit_energy_joules_total")
    assert "docker/3f4e8a1c2b7d" not in third
    assert all(third[unit] > second[unit] for unit in third)
    # a job whose processes all ended but whose cgroup is left behind is dropped too
    (run.root / "cgroup/system.slice/slurmstepd.scope/job_77/cgroup.events").write_text("populated 0\nfrozen 0\n")
    run.clock[0] += 10.0
    assert "slurm/77" not in unit_values(run.scrape(), "wattwise_unit_energy_joules_total")


def test_scrapes_closer_than_the_minimum_interval_keep_power(fixture_run) -> None:
    run = fixture_run("slurm-v1")
    run.advance(10.0)
    first = run.scrape()
    run.clock[0] += 0.2
    second = run.scrape()
    assert unit_values(second, "wattwise_unit_power_watts") == unit_values(first, "wattwise_unit_power_watts")
    assert unit_values(second, "wattwise_unit_energy_joules_total") == unit_values(
        first, "wattwise_unit_energy_joules_total")


@pytest.mark.parametrize("name", ["slurm-v1", "slurm-v2"])
def test_fast_reader_agrees_with_unit_cgroup(name: str, tmp_path: Path) -> None:
    """read_usage (raw reads, for speed) gives what the foundation's UnitCgroup.read gives."""
    root = tmp_path / name
    shutil.copytree(FIXTURES / name / "before", root)
    mounts = rebase_mounts(CgroupMounts.from_mountinfo(root / "mountinfo"), root / "cgroup")
    units = discover_units(mounts)
    assert units
    for unit in units:
        ours = read_usage(unit)
        theirs = UnitCgroup(unit.unit_id, {c: Path(d) for c, d in unit.v1.items()},
                            Path(unit.v2) if unit.v2 else None).read()
        for field in ("cpu_time_s", "cpu_user_s", "cpu_system_s", "memory_b", "memory_limit_b", "memory_rss_b",
                      "memory_cache_b", "memory_fail_count", "oom_kill_count", "cpu_count"):
            assert getattr(ours, field) == pytest.approx(getattr(theirs, field)), (unit.key, field)


class GpuStandIn:
    """Two GPUs as a GPU reader presents them: one with an energy counter, one with power only; no process."""

    source = "stand-in"

    def __init__(self) -> None:
        self.energy_j = 1000.0

    def read(self) -> GpuSnapshot:
        self.energy_j += 400.0  # 40 W over the 10 s between the readings
        return GpuSnapshot((GpuDevice("gpu0:5f7c2e3a", 0, energy_j=self.energy_j),
                            GpuDevice("gpu1:0a1b2c3d", 1, power_w=22.0)))


def test_gpu_power_no_unit_uses_is_reported_and_kept_out_of_the_split(fixture_run) -> None:
    run = fixture_run("slurm-v2", ipmi=True, pue=1.0)
    run.exporter.node.gpu = GpuStandIn()
    run.exporter._point = None  # start the first interval with the GPUs present
    run.exporter.scrape()
    run.advance(10.0)
    text = run.scrape()
    check_metrics(text)
    samples = parse_samples(text)
    gpu_power = {dict(labels)["gpu"]: v for (name, labels), v in samples.items() if name == "wattwise_gpu_power_watts"}
    assert gpu_power == {"gpu0:5f7c2e3a": pytest.approx(40.0), "gpu1:0a1b2c3d": 22.0}
    gpu_energy = {dict(labels)["gpu"]: v for (name, labels), v in samples.items()
                  if name == "wattwise_gpu_energy_joules_total"}
    assert gpu_energy == {"gpu0:5f7c2e3a": 1800.0}
    split = {dict(labels)["part"]: v for (name, labels), v in samples.items()
             if name == "wattwise_node_power_split_watts"}
    assert split["unattributed"] == pytest.approx(62.0)
    assert split["cpu"] == pytest.approx(0.7 * (312 - 62))
    assert sum(unit_values(text, "wattwise_unit_power_watts").values()) <= 312 - 62 + 1e-9


def test_emissions_keep_the_intensity_of_the_moment(fixture_run) -> None:
    """A unit's emissions counter integrates each interval's energy at that interval's grid intensity, so
    what a job emitted does not change when the grid does later (CEEMS multiplies at query time)."""
    from wattwise.carbon.live import CachedIntensity, StaticSource

    run = fixture_run("slurm-v1")
    run.exporter.intensity = CachedIntensity(StaticSource.for_country("PL"))
    run.advance(10.0)
    first = run.scrape()
    run.exporter.intensity = CachedIntensity(StaticSource.for_country("FR"))
    run.clock[0] += 10.0
    second = run.scrape()
    pl, fr = country_factor("PL").intensity_g_per_kwh, country_factor("FR").intensity_g_per_kwh
    assert pl > 3 * fr  # two very different grids
    e1 = unit_values(first, "wattwise_unit_energy_joules_total")
    e2 = unit_values(second, "wattwise_unit_energy_joules_total")
    g1 = unit_values(first, "wattwise_unit_emissions_grams_total")
    g2 = unit_values(second, "wattwise_unit_emissions_grams_total")
    for unit in e1:
        assert g1[unit] == pytest.approx(e1[unit] / 3.6e6 * pl)
        assert g2[unit] == pytest.approx(e1[unit] / 3.6e6 * pl + (e2[unit] - e1[unit]) / 3.6e6 * fr)
        assert g2[unit] > e2[unit] / 3.6e6 * fr  # not re-priced at the new intensity
