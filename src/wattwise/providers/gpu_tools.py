"""GPUs and the processes running on them, for attributing GPU power to compute units.

One snapshot per read: each device's power (W) or energy counter (J), and the compute processes on each
device with, where the source gives it, a utilisation weight per process. Sources:

* **NVML** (``nvidia-ml-py``): ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) else ``nvmlDeviceGetPowerUsage``
  (mW); processes from ``nvmlDeviceGetComputeRunningProcesses`` (``.pid``), their SM utilisation from
  ``nvmlDeviceGetProcessUtilization(handle, last_seen_us)`` (``.pid``, ``.smUtil``, ``.timeStamp``): the
  mean ``smUtil`` of each process's samples since the previous read.
* **nvidia-smi**: ``--query-gpu=index,uuid,power.draw --format=csv`` and
  ``--query-compute-apps=pid,gpu_uuid --format=csv`` (no per-process utilisation).
* **amd-smi**: ``amd-smi metric --json`` (``power.socket_power`` / ``average_socket_power`` /
  ``current_socket_power``, ``energy.total_energy_consumption``; values as numbers or ``{"value", "unit"}``;
  a list or ``{"gpu_data": [...]}``) and ``amd-smi process --json`` (``process_list`` entries with
  ``process_info.pid`` and the cumulative ``engine_usage.gfx`` (older: ``usage.gfx``) in ns, whose growth
  between reads is the process's weight).
* **rocm-smi**: ``rocm-smi --showpower --json`` (``cardN``: ``Average Graphics Package Power (W)`` or
  ``Current Socket Graphics Package Power (W)``) and ``rocm-smi --showpidgpus`` (text: ``PID <p> is using
  <n> DRM device(s):`` followed by the device indices).

Device labels are ``gpu<index>:<first 8 hex digits of the UUID>`` when the UUID is known (as the NVML
provider writes them), else ``gpu<index>``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from wattwise.providers.base import CounterAccumulator, ProviderError
from wattwise.providers.nvml import load_nvml, short_uuid

TOOL_TIMEOUT_S = 10.0
GPU_SOURCES = ("nvml", "nvidia-smi", "amd-smi", "rocm-smi")


@dataclass(frozen=True)
class GpuDevice:
    label: str  # gpu0:5f7c2e3a
    index: int
    uuid: str = ""
    power_w: float | None = None
    energy_j: float | None = None  # cumulative since the reader opened


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    gpu: str  # the device label
    weight: float | None = None  # utilisation of the device by this process (any unit, same per device)


@dataclass(frozen=True)
class GpuSnapshot:
    devices: tuple[GpuDevice, ...] = ()
    processes: tuple[GpuProcess, ...] = ()


class GpuReader(Protocol):
    source: str

    def read(self) -> GpuSnapshot: ...


def device_label(index: int, uuid: str | bytes = "") -> str:
    return f"gpu{index}:{short_uuid(uuid)}" if uuid else f"gpu{index}"


def _number(value: Any) -> float | None:
    """12, "12.5", "12.5 W", {"value": 12, "unit": "W"} → float; "N/A", "[Not Supported]", None → None."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", str(value))
    return float(match.group(1)) if match else None


def _unit(value: Any) -> str:
    return str(value.get("unit") or "") if isinstance(value, dict) else ""


def _json_document(text: str, what: str) -> Any:
    """The JSON of a tool's output, after any WARNING lines the tool prints before it."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        raise ProviderError(f"{what}: no JSON in the output ({text.strip()[:120]!r})")
    try:
        return json.loads(text[min(starts):])
    except json.JSONDecodeError as exc:
        raise ProviderError(f"{what}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


# --- nvidia-smi -------------------------------------------------------------------------------------------------


def _csv_rows(text: str) -> list[dict[str, str]]:
    """nvidia-smi --format=csv: a header 'pid, gpu_uuid' (units in brackets) and rows."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    reader = csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True)
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in next(reader)]
    return [dict(zip(header, (c.strip() for c in row), strict=False)) for row in reader if row]


def parse_nvidia_smi_gpus(text: str) -> list[GpuDevice]:
    """``nvidia-smi --query-gpu=index,uuid,power.draw --format=csv``."""
    devices = []
    for number, row in enumerate(_csv_rows(text), start=2):
        if "index" not in row or "uuid" not in row:
            raise ProviderError(f"nvidia-smi --query-gpu output line {number}: expected columns index, uuid, "
                                f"power.draw; got {sorted(row)}")
        index = int(row["index"])
        devices.append(GpuDevice(device_label(index, row["uuid"]), index, row["uuid"],
                                 power_w=_number(row.get("power.draw"))))
    return devices


def parse_nvidia_smi_apps(text: str, devices: Sequence[GpuDevice]) -> list[GpuProcess]:
    """``nvidia-smi --query-compute-apps=pid,gpu_uuid --format=csv``; processes on unknown GPUs are left out."""
    by_uuid = {d.uuid: d.label for d in devices}
    processes = []
    for number, row in enumerate(_csv_rows(text), start=2):
        if "pid" not in row or "gpu_uuid" not in row:
            raise ProviderError(f"nvidia-smi --query-compute-apps output line {number}: expected columns pid, "
                                f"gpu_uuid; got {sorted(row)}")
        if not row["pid"].isdigit() or row["gpu_uuid"] not in by_uuid:
            continue
        processes.append(GpuProcess(int(row["pid"]), by_uuid[row["gpu_uuid"]]))
    return processes


def _run(command: Sequence[str], what: str) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ProviderError(f"{what}: {command[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderError(f"{what}: {command[0]} did not answer within {TOOL_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        raise ProviderError(f"{what}: {' '.join(command)} exited with {done.returncode}: "
                            f"{(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout


class NvidiaSmiReader:
    source = "nvidia-smi"

    def __init__(self, command: Sequence[str] = ("nvidia-smi",)) -> None:
        self.command = list(command)

    def read(self) -> GpuSnapshot:
        devices = parse_nvidia_smi_gpus(_run([*self.command, "--query-gpu=index,uuid,power.draw", "--format=csv"],
                                             "nvidia-smi"))
        apps = _run([*self.command, "--query-compute-apps=pid,gpu_uuid", "--format=csv"], "nvidia-smi")
        return GpuSnapshot(tuple(devices), tuple(parse_nvidia_smi_apps(apps, devices)))


# --- amd-smi ----------------------------------------------------------------------------------------------------


def _gpu_entries(document: Any, what: str) -> list[dict[str, Any]]:
    entries = document.get("gpu_data") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ProviderError(f"{what}: expected a list of GPUs (or {{\"gpu_data\": [...]}})")
    return entries


_ENERGY_SCALE = {"J": 1.0, "mJ": 1e-3, "uJ": 1e-6, "µJ": 1e-6, "": 1.0}


def parse_amd_smi_metric(text: str) -> list[tuple[int, float | None, float | None]]:
    """``amd-smi metric --json`` → [(gpu index, power W, energy counter J)]."""
    result = []
    for entry in _gpu_entries(_json_document(text, "amd-smi metric"), "amd-smi metric"):
        index = _number(entry.get("gpu"))
        if index is None:
            raise ProviderError(f"amd-smi metric: a GPU entry without 'gpu' index: {sorted(entry)}")
        power: dict[str, Any] = entry["power"] if isinstance(entry.get("power"), dict) else {}
        power_w = None
        for key in ("socket_power", "current_socket_power", "average_socket_power"):
            power_w = _number(power.get(key))
            if power_w is not None:
                break
        energy: dict[str, Any] = entry["energy"] if isinstance(entry.get("energy"), dict) else {}
        total = energy.get("total_energy_consumption")
        energy_j = _number(total)
        if energy_j is not None:
            unit = _unit(total)
            if unit not in _ENERGY_SCALE:
                raise ProviderError(f"amd-smi metric: gpu {int(index)}: unknown energy unit {unit!r}")
            energy_j *= _ENERGY_SCALE[unit]
        result.append((int(index), power_w, energy_j))
    return result


def parse_amd_smi_process(text: str) -> list[tuple[int, int, float | None]]:
    """``amd-smi process --json`` → [(gpu index, pid, cumulative gfx engine time in ns or None)]."""
    result = []
    for entry in _gpu_entries(_json_document(text, "amd-smi process"), "amd-smi process"):
        index = _number(entry.get("gpu"))
        listed = entry.get("process_list") or []
        if index is None or not isinstance(listed, list):
            continue
        for item in listed:
            info = item.get("process_info", item) if isinstance(item, dict) else None
            if not isinstance(info, dict):  # "No running processes detected"
                continue
            pid = _number(info.get("pid"))
            if pid is None:
                continue
            usage = info.get("engine_usage", info.get("usage"))
            usage = usage if isinstance(usage, dict) else {}
            result.append((int(index), int(pid), _number(usage.get("gfx"))))
    return result


class _Energy:
    """Device energy counters made cumulative since open (wrap- and reset-safe)."""

    def __init__(self) -> None:
        self._counters: dict[str, CounterAccumulator] = {}

    def total_j(self, label: str, raw_j: float | None) -> float | None:
        if raw_j is None:
            return None
        counter = self._counters.get(label)
        if counter is None:
            counter = self._counters[label] = CounterAccumulator(raw_j, None)
        return counter.update(raw_j)


class AmdSmiReader:
    source = "amd-smi"

    def __init__(self, command: Sequence[str] = ("amd-smi",)) -> None:
        self.command = list(command)
        self._energy = _Energy()
        self._gfx_ns: dict[tuple[int, int], float] = {}

    def read(self) -> GpuSnapshot:
        metrics = parse_amd_smi_metric(_run([*self.command, "metric", "--json"], "amd-smi metric"))
        devices = tuple(GpuDevice(device_label(i), i, power_w=p, energy_j=self._energy.total_j(device_label(i), e))
                        for i, p, e in metrics)
        labels = {d.index: d.label for d in devices}
        processes = []
        gfx_now: dict[tuple[int, int], float] = {}
        for index, pid, gfx_ns in parse_amd_smi_process(_run([*self.command, "process", "--json"],
                                                              "amd-smi process")):
            if index not in labels:
                continue
            weight = None
            if gfx_ns is not None:
                gfx_now[(index, pid)] = gfx_ns
                before = self._gfx_ns.get((index, pid))
                weight = max(0.0, gfx_ns - before) if before is not None else None
            processes.append(GpuProcess(pid, labels[index], weight))
        self._gfx_ns = gfx_now
        return GpuSnapshot(devices, tuple(processes))


# --- rocm-smi ---------------------------------------------------------------------------------------------------

_ROCM_POWER = re.compile(r"^(?:Average|Current Socket) Graphics Package Power \(W\)$")


def parse_rocm_smi_power(text: str) -> list[GpuDevice]:
    """``rocm-smi --showpower --showuniqueid --json``: {"card0": {"Average Graphics Package Power (W)": "35.0",
    "Unique ID": "0x..."}, ...}."""
    document = _json_document(text, "rocm-smi")
    if not isinstance(document, dict):
        raise ProviderError("rocm-smi: expected a JSON object with cardN keys")
    devices = []
    for key, values in document.items():
        match = re.fullmatch(r"card(\d+)", key)
        if not match or not isinstance(values, dict):
            continue
        power = next((_number(v) for k, v in values.items() if _ROCM_POWER.match(k)), None)
        index = int(match.group(1))
        devices.append(GpuDevice(device_label(index), index, str(values.get("Unique ID", "")), power_w=power))
    return sorted(devices, key=lambda d: d.index)


def parse_rocm_smi_pidgpus(text: str) -> list[tuple[int, int]]:
    """``rocm-smi --showpidgpus`` → [(pid, gpu index)]."""
    result: list[tuple[int, int]] = []
    pid: int | None = None
    for line in text.splitlines():
        match = re.match(r"\s*PID (\d+) is using (\d+) DRM device", line)
        if match:
            pid = int(match.group(1)) if int(match.group(2)) > 0 else None
            continue
        if pid is not None and re.fullmatch(r"[\d\s]+", line.strip() or "x"):
            result.extend((pid, int(i)) for i in line.split())
            pid = None
    return result


class RocmSmiReader:
    source = "rocm-smi"

    def __init__(self, command: Sequence[str] = ("rocm-smi",)) -> None:
        self.command = list(command)

    def read(self) -> GpuSnapshot:
        devices = parse_rocm_smi_power(_run([*self.command, "--showpower", "--showuniqueid", "--json"],
                                            "rocm-smi"))
        labels = {d.index: d.label for d in devices}
        pairs = parse_rocm_smi_pidgpus(_run([*self.command, "--showpidgpus"], "rocm-smi --showpidgpus"))
        return GpuSnapshot(tuple(devices), tuple(GpuProcess(p, labels[i]) for p, i in pairs if i in labels))


# --- NVML -------------------------------------------------------------------------------------------------------


class NvmlGpuReader:
    """Power or energy and the compute processes of every NVIDIA GPU through NVML.

    `nvml`: the pynvml module or an object with the same functions (default: import pynvml)."""

    source = "nvml"

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._handles: list[tuple[int, str, Any]] = []
        self._energy = _Energy()
        self._has_energy: dict[str, bool] = {}
        self._last_seen_us: dict[str, int] = {}

    def _error(self, exc: BaseException) -> bool:
        error_class = getattr(self._nvml, "NVMLError", None)
        return isinstance(error_class, type) and isinstance(exc, error_class)

    def _try(self, function: Callable[[], Any]) -> Any:
        """The value, or None when NVML raises (not supported, no samples yet, …)."""
        try:
            return function()
        except Exception as exc:
            if self._error(exc):
                return None
            raise

    def open(self) -> None:
        if self._nvml is None:
            self._nvml = load_nvml()
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = nvml.nvmlDeviceGetUUID(handle)
                uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
                self._handles.append((index, uuid, handle))
        except Exception as exc:
            if self._error(exc):
                raise ProviderError(f"NVML: {exc}") from exc
            raise
        if not self._handles:
            raise ProviderError("NVML reports no GPU")

    def read(self) -> GpuSnapshot:
        if not self._handles:
            raise ProviderError("NvmlGpuReader.read() called before open()")
        nvml = self._nvml
        devices: list[GpuDevice] = []
        processes: list[GpuProcess] = []
        for index, uuid, handle in self._handles:
            label = device_label(index, uuid)
            energy_j = power_w = None
            if self._has_energy.get(label, True):
                raw = self._try(partial(nvml.nvmlDeviceGetTotalEnergyConsumption, handle))
                self._has_energy[label] = raw is not None
                energy_j = self._energy.total_j(label, raw / 1000 if raw is not None else None)
            if energy_j is None:
                raw = self._try(partial(nvml.nvmlDeviceGetPowerUsage, handle))
                power_w = raw / 1000 if raw is not None else None
            devices.append(GpuDevice(label, index, uuid, power_w=power_w, energy_j=energy_j))
            running = self._try(partial(nvml.nvmlDeviceGetComputeRunningProcesses, handle)) or []
            weights = self._utilisation(label, handle)
            for pid in dict.fromkeys(int(p.pid) for p in running):
                processes.append(GpuProcess(pid, label, weights.get(pid) if weights else None))
        return GpuSnapshot(tuple(devices), tuple(processes))

    def _utilisation(self, label: str, handle: Any) -> dict[int, float] | None:
        """Mean SM utilisation (%) of each process over the samples since the previous read; None when NVML
        gives no per-process samples (not supported, or none yet)."""
        nvml = self._nvml
        since = self._last_seen_us.get(label, 0)
        samples = self._try(lambda: nvml.nvmlDeviceGetProcessUtilization(handle, since))
        if not samples:
            return None
        sums: dict[int, list[float]] = {}
        for sample in samples:
            sums.setdefault(int(sample.pid), []).append(float(sample.smUtil))
            self._last_seen_us[label] = max(self._last_seen_us.get(label, 0), int(sample.timeStamp))
        return {pid: sum(values) / len(values) for pid, values in sums.items()}

    def close(self) -> None:
        if self._handles and self._nvml is not None:
            self._handles = []
            self._try(self._nvml.nvmlShutdown)


def open_gpu_reader(source: str, command: Sequence[str] | None = None) -> GpuReader:
    """A reader for `source` (nvml, nvidia-smi, amd-smi, rocm-smi); ProviderError when it is unusable here."""
    if source == "nvml":
        reader = NvmlGpuReader()
        reader.open()
        return reader
    classes: dict[str, type[NvidiaSmiReader] | type[AmdSmiReader] | type[RocmSmiReader]] = {
        "nvidia-smi": NvidiaSmiReader, "amd-smi": AmdSmiReader, "rocm-smi": RocmSmiReader}
    if source not in classes:
        raise ProviderError(f"unknown GPU source {source!r}: allowed are {', '.join(GPU_SOURCES)}")
    tool = list(command) if command else [source]
    if shutil.which(tool[0]) is None:
        raise ProviderError(f"{tool[0]} not found")
    tool_reader = classes[source](tool)
    tool_reader.read()  # fail now rather than at the first scrape
    return tool_reader


def detect_gpu_reader() -> GpuReader | None:
    """The first usable source of nvml, amd-smi, rocm-smi, nvidia-smi, or None."""
    for source in ("nvml", "amd-smi", "rocm-smi", "nvidia-smi"):
        try:
            return open_gpu_reader(source)
        except ProviderError:
            continue
    return None
