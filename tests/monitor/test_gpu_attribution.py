"""GPU power attributed to compute units: NVML through a test double of the few pynvml calls used, and the
nvidia-smi, amd-smi and rocm-smi readers on outputs in the tools' documented formats (no GPU on the test
machine). The exporter runs on a synthetic Slurm cgroup v2 tree whose /proc/<pid>/cgroup files place the GPU
processes in their jobs."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tests.monitor.conftest import FIXTURES, check_metrics, parse_samples, unit_values

from wattwise.carbon.live import CachedIntensity, StaticSource
from wattwise.monitor import synth
from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
from wattwise.monitor.gpus import gpus_from_environment, share_gpus, unit_of_cgroup_path
from wattwise.monitor.metadata import OwnerResolver, UserNames
from wattwise.monitor.node import NodeReader
from wattwise.providers.base import ProviderError
from wattwise.providers.estimate import PowerCurve
from wattwise.providers.gpu_tools import (
    AmdSmiReader,
    GpuDevice,
    NvidiaSmiReader,
    NvmlGpuReader,
    RocmSmiReader,
    parse_amd_smi_metric,
    parse_amd_smi_process,
    parse_nvidia_smi_apps,
    parse_nvidia_smi_gpus,
    parse_rocm_smi_pidgpus,
    parse_rocm_smi_power,
)

GPU_FIXTURES = FIXTURES / "gpu"
NOT_SUPPORTED, NOT_FOUND = 3, 6
T0 = 1_700_000_000.0


# --- a test double of pynvml: only the calls NvmlGpuReader makes, in pynvml's units and error style -----------


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


@dataclass
class FakeGpu:
    uuid: str
    energy_mj: list[int] | None = None  # successive counter values; None: not supported
    power_mw: int = 0
    pids: list[int] = field(default_factory=list)
    # per read: [(pid, smUtil)] samples newer than the previous read; None: NVML has no per-process samples
    utilisation: list[list[tuple[int, int]]] | None = None


class FakeNvml:
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.since: list[list[int]] = [[] for _ in gpus]
        self.clock_us = 1_000_000

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.gpus[handle].uuid

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        gpu = self.gpus[handle]
        if gpu.energy_mj is None:
            raise NVMLError(NOT_SUPPORTED)
        return gpu.energy_mj.pop(0) if len(gpu.energy_mj) > 1 else gpu.energy_mj[0]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self.gpus[handle].power_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=2**30) for pid in self.gpus[handle].pids]

    def nvmlDeviceGetProcessUtilization(self, handle: int, last_seen_us: int) -> list[SimpleNamespace]:
        gpu = self.gpus[handle]
        self.since[handle].append(last_seen_us)
        if gpu.utilisation is None or not gpu.utilisation:
            raise NVMLError(NOT_FOUND)
        self.clock_us += 1_000_000
        return [SimpleNamespace(pid=pid, smUtil=util, memUtil=0, encUtil=0, decUtil=0, timeStamp=self.clock_us)
                for pid, util in gpu.utilisation.pop(0)]


# --- the tree -----------------------------------------------------------------------------------------------------


def build_tree(base: Path) -> Path:
    """Slurm jobs 1000–1003 (pids 100000–100003) plus a second process of job 1001 (200001) and of job 1002
    (200002); job 1003 has SLURM_JOB_GPUS=3 in its environment; pid 999 is outside any unit."""
    synth.build_v2_slurm_tree(base, 4, cpus=8)
    proc = base / "proc"
    scope = "/system.slice/slurmstepd.scope"
    for index in range(4):
        job, pid = 1000 + index, 100000 + index
        (proc / str(pid) / "cgroup").write_text(f"0::{scope}/job_{job}/step_0/user/task_0\n")
    for pid, job in ((200001, 1001), (200002, 1002)):
        synth.write_process(proc, pid, 1000)
        (proc / str(pid) / "cgroup").write_text(f"0::{scope}/job_{job}/step_0/user/task_0\n")
        procs = base / "cgroup" / scope.strip("/") / f"job_{job}" / "step_0" / "user" / "task_0" / "cgroup.procs"
        procs.write_text(procs.read_text() + f"{pid}\n")
    synth.write_process(proc, 100003, 1003, environ=[("SLURM_JOB_ID", "1003"), ("SLURM_JOB_GPUS", "3"),
                                                     ("CUDA_VISIBLE_DEVICES", "0")])
    synth.write_process(proc, 999, 0)
    (proc / "999" / "cgroup").write_text("0::/system.slice/nvidia-persistenced.service\n")
    return base


def make_exporter(base: Path, gpu: Any, pue: float = 1.5) -> tuple[MonitorExporter, list[float]]:
    clock = [T0]
    config = ExporterConfig(mountinfo=base / "mountinfo", cgroup_root=base / "cgroup", powercap_root=None,
                            proc_root=base / "proc", hostname="gpu01", pue=pue)
    node = NodeReader(config.proc_root, None)
    node.gpu = gpu
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("FR")), node=node,
                               owners=OwnerResolver(config.proc_root, names=UserNames(None)),
                               power_curve=PowerCurve.from_tdp(200.0, "test"), clock=lambda: clock[0])
    exporter.open()
    return exporter, clock


def gpu_series(text: str, metric: str) -> dict[tuple[str, str, str], float]:
    """{(unit, gpu, split or ''): value}."""
    result = {}
    for (name, labels), value in parse_samples(text).items():
        if name == metric:
            d = dict(labels)
            result[(d["unit"], d["gpu"], d.get("split", ""))] = value
    return result


def fake_nvml() -> FakeNvml:
    return FakeNvml([
        # gpu0: energy counter, 3000 J in 10 s = 300 W, job 1000 alone
        FakeGpu("GPU-5f7c2e3a-91d4-4c1b-8a9e-0123456789ab", energy_mj=[1_000_000, 4_000_000], pids=[100000]),
        # gpu1: 200 W shared by jobs 1001 (two processes: SM utilisation 60 + 90) and 1002 (25)
        FakeGpu("GPU-0a1b2c3d-1111-2222-3333-444455556666", power_mw=200_000, pids=[100001, 100002, 200001],
                utilisation=[[], [(100001, 60), (200001, 90), (100002, 25)]]),
        # gpu2: 100 W shared by jobs 1001 and 1002, no per-process samples: evenly
        FakeGpu("GPU-99aa88bb-0000-4000-8000-000000000002", power_mw=100_000, pids=[200001, 200002]),
        # gpu3: 80 W, no process listed; job 1003's environment names it (SLURM_JOB_GPUS=3)
        FakeGpu("GPU-77665544-0000-4000-8000-000000000003", power_mw=80_000),
        # gpu4: 40 W used by a process in no unit: unattributed
        FakeGpu("GPU-12345678-0000-4000-8000-000000000004", power_mw=40_000, pids=[999]),
    ])


def test_nvml_gpus_are_attributed_to_the_jobs_using_them(tmp_path: Path) -> None:
    base = build_tree(tmp_path / "tree")
    nvml = fake_nvml()
    reader = NvmlGpuReader(nvml)
    reader.open()
    exporter, clock = make_exporter(base, reader)
    plain, plain_clock = make_exporter(build_tree(tmp_path / "plain"), None)
    for clk in (clock, plain_clock):
        clk[0] += 10
    text, without = exporter.scrape(), plain.scrape()
    check_metrics(text)

    power = gpu_series(text, "wattwise_unit_gpu_power_watts")
    pue = 1.5
    assert power == {
        ("1000", "gpu0:5f7c2e3a", "exclusive"): pytest.approx(pue * 300),
        ("1001", "gpu1:0a1b2c3d", "utilization"): pytest.approx(pue * 200 * 150 / 175),
        ("1002", "gpu1:0a1b2c3d", "utilization"): pytest.approx(pue * 200 * 25 / 175),
        ("1001", "gpu2:99aa88bb", "even"): pytest.approx(pue * 50),
        ("1002", "gpu2:99aa88bb", "even"): pytest.approx(pue * 50),
        ("1003", "gpu3:77665544", "exclusive"): pytest.approx(pue * 80),
    }
    energy = gpu_series(text, "wattwise_unit_gpu_energy_joules_total")
    assert energy == {(u, g, ""): pytest.approx(10 * w) for (u, g, _), w in power.items()}
    # the unit's total is its CPU/memory/fixed share (the same as without GPUs) plus its GPUs
    total, base_power = unit_values(text, "wattwise_unit_power_watts"), unit_values(without, "wattwise_unit_power_watts")
    for unit in ("1000", "1001", "1002", "1003"):
        gpus = sum(w for (u, _, _), w in power.items() if u == unit)
        assert total[f"slurm/{unit}"] == pytest.approx(base_power[f"slurm/{unit}"] + gpus)
        assert unit_values(text, "wattwise_unit_energy_joules_total")[f"slurm/{unit}"] == pytest.approx(
            10 * total[f"slurm/{unit}"])
    split = {dict(labels)["part"]: v for (name, labels), v in parse_samples(text).items()
             if name == "wattwise_node_power_split_watts"}
    assert split["gpu"] == pytest.approx(300 + 200 + 100 + 80)
    assert split["unattributed"] == pytest.approx(40)
    node_power = {dict(labels)["source"]: v for (name, labels), v in parse_samples(text).items()
                  if name == "wattwise_node_power_watts"}
    assert node_power["estimate"] == pytest.approx(split["cpu"] + split["memory"] + split["fixed"] + 720)


def test_utilisation_samples_are_asked_since_the_last_one_seen(tmp_path: Path) -> None:
    nvml = FakeNvml([FakeGpu("GPU-0a1b2c3d-1111", power_mw=1000, pids=[1, 2],
                             utilisation=[[(1, 50)], [(1, 30), (2, 10)], []])])
    reader = NvmlGpuReader(nvml)
    reader.open()
    first, second, third = reader.read(), reader.read(), reader.read()
    assert nvml.since[0][0] == 0 and nvml.since[0][1] == nvml.since[0][2] - 1_000_000 > 0
    assert [p.weight for p in first.processes] == [50.0, None]  # pid 2 had no sample: unknown
    assert [p.weight for p in second.processes] == [30.0, 10.0]
    assert [p.weight for p in third.processes] == [None, None]  # no samples this time


def test_a_gpu_of_two_units_without_weights_for_both_is_split_evenly() -> None:
    shares = share_gpus({"g": 90.0}, {"g": {("slurm", "1"): 80.0, ("slurm", "2"): None, ("slurm", "3"): 5.0}})
    assert {(s.unit[1], s.split): s.power_w for s in shares} == {("1", "even"): 30.0, ("2", "even"): 30.0,
                                                                  ("3", "even"): 30.0}
    zero = share_gpus({"g": 10.0}, {"g": {("slurm", "1"): 0.0, ("slurm", "2"): 0.0}})
    assert [s.split for s in zero] == ["even", "even"]


def test_environment_names_gpus_by_index_or_uuid() -> None:
    devices = [GpuDevice("gpu0:5f7c2e3a", 0, "GPU-5f7c2e3a-91d4"), GpuDevice("gpu1:0a1b2c3d", 1, "GPU-0a1b2c3d-11")]
    assert gpus_from_environment({"SLURM_JOB_GPUS": "1"}, devices) == ["gpu1:0a1b2c3d"]
    assert gpus_from_environment({"CUDA_VISIBLE_DEVICES": "GPU-0a1b2c3d-11,0"}, devices) == [
        "gpu1:0a1b2c3d", "gpu0:5f7c2e3a"]
    assert gpus_from_environment({"SLURM_JOB_GPUS": "0", "CUDA_VISIBLE_DEVICES": "1"}, devices) == ["gpu0:5f7c2e3a"]
    assert gpus_from_environment({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, devices) is None
    assert gpus_from_environment({"PATH": "/bin"}, devices) is None


def test_cgroup_paths_resolve_to_units() -> None:
    assert unit_of_cgroup_path("/system.slice/slurmstepd.scope/job_42/step_0/user/task_0") == ("slurm", "42")
    assert unit_of_cgroup_path("/slurm/uid_1000/job_7/step_batch") == ("slurm", "7")
    docker = "/system.slice/docker-" + "ab" * 32 + ".scope"
    assert unit_of_cgroup_path(docker) == ("docker", "ab" * 6)
    assert unit_of_cgroup_path("/user.slice/user-1000.slice/session-2.scope") is None


def test_the_real_pynvml_without_a_driver_is_a_clear_error() -> None:
    pynvml = pytest.importorskip("pynvml")
    reader = NvmlGpuReader(pynvml)
    try:
        reader.open()
    except ProviderError as exc:
        assert "NVML" in str(exc)
    else:  # a machine with an NVIDIA GPU: the reader works
        assert reader.read().devices
        reader.close()


# --- the tools' outputs ----------------------------------------------------------------------------------------


def test_nvidia_smi_csv() -> None:
    devices = parse_nvidia_smi_gpus((GPU_FIXTURES / "nvidia_smi_query_gpu.csv").read_text())
    assert [(d.label, d.power_w) for d in devices] == [("gpu0:5f7c2e3a", 250.31), ("gpu1:0a1b2c3d", 61.07),
                                                       ("gpu2:99aa88bb", None)]
    apps = parse_nvidia_smi_apps((GPU_FIXTURES / "nvidia_smi_compute_apps.csv").read_text(), devices)
    assert [(p.pid, p.gpu) for p in apps] == [(100000, "gpu0:5f7c2e3a"), (100001, "gpu1:0a1b2c3d"),
                                              (100002, "gpu1:0a1b2c3d")]  # the unknown GPU is left out
    assert parse_nvidia_smi_apps("pid, gpu_uuid\n", devices) == []
    with pytest.raises(ProviderError, match="expected columns index, uuid"):
        parse_nvidia_smi_gpus("name, power.draw [W]\nA100, 50 W\n")


def test_amd_smi_json() -> None:
    metrics = parse_amd_smi_metric((GPU_FIXTURES / "amd_smi_metric.json").read_text())
    assert metrics == [(0, 542.0, 1523044.25), (1, 141.0, pytest.approx(88000.0))]
    assert parse_amd_smi_metric((GPU_FIXTURES / "amd_smi_metric_wrapped.json").read_text()) == [(0, 100.0, None)]
    processes = parse_amd_smi_process((GPU_FIXTURES / "amd_smi_process.json").read_text())
    assert processes == [(0, 100000, 3e9), (0, 100001, 1e9)]
    with pytest.raises(ProviderError, match="invalid JSON"):
        parse_amd_smi_metric('[{"gpu": 0,')


def test_rocm_smi() -> None:
    devices = parse_rocm_smi_power((GPU_FIXTURES / "rocm_smi_power.json").read_text())
    assert [(d.label, d.power_w, d.uuid) for d in devices] == [("gpu0", 35.0, "0x18f68e602b8a790f"),
                                                               ("gpu1", 131.0, "0x2a3b4c5d6e7f8091")]
    pairs = parse_rocm_smi_pidgpus((GPU_FIXTURES / "rocm_smi_showpidgpus.txt").read_text())
    assert pairs == [(100000, 0), (100002, 0), (100002, 1)]


def fake_tool(tmp_path: Path, name: str, outputs: dict[str, list[str]]) -> Path:
    """An executable that prints the fixture file for its arguments (the next one on each call)."""
    script = tmp_path / name
    state = tmp_path / f"{name}.calls"
    script.write_text(f"""#!{sys.executable}
import json, sys
from pathlib import Path
outputs = {outputs!r}
state = Path({str(state)!r})
calls = json.loads(state.read_text()) if state.exists() else {{}}
key = " ".join(sys.argv[1:])
n = calls.get(key, 0)
calls[key] = n + 1
state.write_text(json.dumps(calls))
files = outputs[key]
sys.stdout.write(Path(files[min(n, len(files) - 1)]).read_text())
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _tool_readers(tmp_path: Path) -> dict[str, Callable[[], Any]]:
    f = {name: str(GPU_FIXTURES / name) for name in (
        "nvidia_smi_query_gpu.csv", "nvidia_smi_compute_apps.csv", "amd_smi_metric.json", "amd_smi_process.json",
        "amd_smi_process_later.json", "rocm_smi_power.json", "rocm_smi_showpidgpus.txt")}
    nvidia = fake_tool(tmp_path, "nvidia-smi", {
        "--query-gpu=index,uuid,power.draw --format=csv": [f["nvidia_smi_query_gpu.csv"]],
        "--query-compute-apps=pid,gpu_uuid --format=csv": [f["nvidia_smi_compute_apps.csv"]]})
    amd = fake_tool(tmp_path, "amd-smi", {"metric --json": [f["amd_smi_metric.json"]],
                                           "process --json": [f["amd_smi_process.json"],
                                                              f["amd_smi_process_later.json"]]})
    rocm = fake_tool(tmp_path, "rocm-smi", {"--showpower --showuniqueid --json": [f["rocm_smi_power.json"]],
                                             "--showpidgpus": [f["rocm_smi_showpidgpus.txt"]]})
    return {"nvidia-smi": lambda: NvidiaSmiReader([str(nvidia)]), "amd-smi": lambda: AmdSmiReader([str(amd)]),
            "rocm-smi": lambda: RocmSmiReader([str(rocm)])}


def test_tool_readers_attribute_through_the_exporter(tmp_path: Path) -> None:
    readers = _tool_readers(tmp_path)
    # nvidia-smi: gpu0 (250.31 W) to job 1000; gpu1 (61.07 W) shared by 1001 and 1002, no weights: evenly
    exporter, clock = make_exporter(build_tree(tmp_path / "nv"), readers["nvidia-smi"](), pue=1.0)
    clock[0] += 10
    power = gpu_series(exporter.scrape(), "wattwise_unit_gpu_power_watts")
    assert power == {("1000", "gpu0:5f7c2e3a", "exclusive"): pytest.approx(250.31),
                     ("1001", "gpu1:0a1b2c3d", "even"): pytest.approx(61.07 / 2),
                     ("1002", "gpu1:0a1b2c3d", "even"): pytest.approx(61.07 / 2)}
    # amd-smi: gpu0 (542 W) shared by 1000 and 1001 by their gfx engine time since the previous read:
    # (9 − 3) s against (3 − 1) s → 3/4 and 1/4; gpu1 has no process, and job 1003's SLURM_JOB_GPUS=3 names no
    # device here
    exporter, clock = make_exporter(build_tree(tmp_path / "amd"), readers["amd-smi"](), pue=1.0)
    clock[0] += 10
    text = exporter.scrape()
    check_metrics(text)
    assert gpu_series(text, "wattwise_unit_gpu_power_watts") == {
        ("1000", "gpu0", "utilization"): pytest.approx(542 * 0.75),
        ("1001", "gpu0", "utilization"): pytest.approx(542 * 0.25)}
    # rocm-smi: gpu0 (35 W) shared by 1000 and 1002 evenly; gpu1 (131 W) used by 1002 alone
    exporter, clock = make_exporter(build_tree(tmp_path / "rocm"), readers["rocm-smi"](), pue=1.0)
    clock[0] += 10
    assert gpu_series(exporter.scrape(), "wattwise_unit_gpu_power_watts") == {
        ("1000", "gpu0", "even"): pytest.approx(17.5), ("1002", "gpu0", "even"): pytest.approx(17.5),
        ("1002", "gpu1", "exclusive"): pytest.approx(131.0)}


def test_a_failing_tool_is_a_node_error_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA "
                      "driver.' >&2\nexit 9\n")
    broken.chmod(0o755)
    reader = NvidiaSmiReader([str(broken)])
    with pytest.raises(ProviderError, match="exited with 9: NVIDIA-SMI has failed"):
        reader.read()
    exporter, clock = make_exporter(build_tree(tmp_path / "tree"), reader)
    clock[0] += 10
    text = exporter.scrape()
    assert "wattwise_unit_gpu_power_watts" not in text
    assert unit_values(text, "wattwise_unit_power_watts")["slurm/1000"] > 0
