"""What the power model needs to know about this machine, and which of it was found or assumed.

Facts come from `/proc/cpuinfo` (model name, vendor, sockets, cores, threads, clock, the `hypervisor` flag),
`lscpu` (sockets, cores per socket, max MHz, hypervisor vendor) and `/proc/meminfo` (MemTotal). Roots are
parameters so tests read fixture trees; `lscpu_text` is lscpu's output (None: run `lscpu` if installed).

A virtual machine sees only its vCPUs: its power is its host's curve × its share of the host, the vCPUs over
the host's hardware threads (GMT's `vhost_ratio`; set it with `--vhost-ratio` or `$WATTWISE_VHOST_RATIO`, or
give the host's threads). An unknown host is assumed to be the median recent two-socket SPECpower server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.errors import ConfigError
from wattwise.providers.powermodel import MachineSpec, PowerModel

__all__ = [
    "ENV_VHOST_RATIO",
    "MachineFacts",
    "ModelInput",
    "described_facts",
    "model_input",
    "read_machine_facts",
]

ENV_VHOST_RATIO = "WATTWISE_VHOST_RATIO"


@dataclass(frozen=True)
class MachineFacts:
    """Raw facts read from the machine; None where a source did not say."""

    cpu_model: str = ""
    vendor: str = ""
    chips: int | None = None
    cores: int | None = None
    threads: int | None = None
    base_ghz: float | None = None
    max_ghz: float | None = None
    memory_gb: float | None = None
    hypervisor: str | None = None  # vendor name, or "yes" when only the cpuinfo flag says so
    sources: dict[str, str] = field(default_factory=dict)  # fact -> where it was read


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    for chunk in text.strip().split("\n\n"):
        entry: dict[str, str] = {}
        for line in chunk.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                entry[key.strip().lower()] = value.strip()
        if "processor" in entry:
            blocks.append(entry)
    return blocks


def _lscpu_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _run_lscpu() -> str:
    binary = shutil.which("lscpu")
    if not binary:
        return ""
    try:
        done = subprocess.run([binary], capture_output=True, text=True, timeout=5, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _topology(blocks: list[dict[str, str]], lscpu: dict[str, str], cpuinfo: str,
              sources: dict[str, str]) -> tuple[int | None, int | None, int | None]:
    threads = len(blocks) or _int(lscpu.get("cpu(s)"))
    if threads:
        sources["threads"] = cpuinfo if blocks else "lscpu"
    chips = _int(lscpu.get("socket(s)"))
    if chips:
        sources["chips"] = "lscpu"
    elif blocks and all("physical id" in b for b in blocks):
        chips = len({b["physical id"] for b in blocks})
        sources["chips"] = cpuinfo
    cores: int | None = None
    per_socket = _int(lscpu.get("core(s) per socket"))
    if per_socket and chips:
        cores = per_socket * chips
        sources["cores"] = "lscpu"
    elif blocks and all("core id" in b and "physical id" in b for b in blocks):
        cores = len({(b["physical id"], b["core id"]) for b in blocks})
        sources["cores"] = cpuinfo
    return chips, cores, threads


def _clocks(model: str, first: dict[str, str], lscpu: dict[str, str], cpuinfo: str,
            sources: dict[str, str]) -> tuple[float | None, float | None]:
    base_ghz: float | None = None
    match = re.search(r"@\s*([\d.]+)\s*GHz", model)
    current_mhz = _float(first.get("cpu mhz"))
    if match:
        base_ghz = float(match.group(1))
        sources["base_ghz"] = "model name"
    elif current_mhz:
        base_ghz = current_mhz / 1000
        sources["base_ghz"] = f"{cpuinfo} (cpu MHz)"
    max_mhz = _float(lscpu.get("cpu max mhz"))
    if max_mhz:
        sources["turbo_ghz"] = "lscpu (CPU max MHz)"
    return base_ghz, max_mhz / 1000 if max_mhz else None


def _memory_gb(proc: Path, sources: dict[str, str]) -> float | None:
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                sources["memory_gb"] = str(proc / "meminfo")
                return int(line.split()[1]) / 1024**2  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def read_machine_facts(proc_root: str | Path = "/proc", lscpu_text: str | None = None) -> MachineFacts:
    proc = Path(proc_root)
    sources: dict[str, str] = {}
    try:
        blocks = _cpuinfo_blocks((proc / "cpuinfo").read_text())
    except OSError:
        blocks = []
    lscpu = _lscpu_fields(_run_lscpu() if lscpu_text is None else lscpu_text)
    first = blocks[0] if blocks else {}
    cpuinfo = str(proc / "cpuinfo")
    model = first.get("model name") or lscpu.get("model name", "")
    if model:
        sources["cpu_model"] = cpuinfo if first.get("model name") else "lscpu"
    vendor = first.get("vendor_id") or lscpu.get("vendor id", "")
    chips, cores, threads = _topology(blocks, lscpu, cpuinfo, sources)
    base_ghz, max_ghz = _clocks(model, first, lscpu, cpuinfo, sources)
    memory_gb = _memory_gb(proc, sources)
    hypervisor = lscpu.get("hypervisor vendor") or ("yes" if "hypervisor" in first.get("flags", "").split() else None)
    if hypervisor:
        sources["hypervisor"] = "lscpu" if lscpu.get("hypervisor vendor") else f"{cpuinfo} (flag)"
    return MachineFacts(model, vendor, chips, cores, threads, base_ghz, max_ghz, memory_gb, hypervisor, sources)


@dataclass(frozen=True)
class ModelInput:
    """What the model is asked about: a machine (or a VM's host) and the share of it that is ours."""

    spec: MachineSpec
    share: float  # 1.0 on bare metal; vCPUs / host threads in a VM
    found: dict[str, str]  # fact -> value (source)
    assumed: dict[str, str]  # fact -> value (why)

    def summary(self) -> str:
        found = ", ".join(f"{k} {v}" for k, v in self.found.items()) or "nothing"
        assumed = ", ".join(f"{k} {v}" for k, v in self.assumed.items()) or "nothing"
        return f"found: {found}; assumed: {assumed}"


def _vhost_ratio(configured: float | None) -> float | None:
    if configured is not None:
        value, where = configured, "--vhost-ratio"
    elif os.environ.get(ENV_VHOST_RATIO):
        where = f"${ENV_VHOST_RATIO}"
        try:
            value = float(os.environ[ENV_VHOST_RATIO])
        except ValueError:
            raise ConfigError(f"{where}={os.environ[ENV_VHOST_RATIO]!r} is not a number (0 < ratio ≤ 1)") from None
    else:
        return None
    if not 0 < value <= 1:
        raise ConfigError(f"{where}={value:g}: the VM's share of its host must be > 0 and ≤ 1")
    return value


def described_facts(cpu: str, *, chips: int | None = None, cores: int | None = None, threads: int | None = None,
                    memory_gb: float | None = None, base_ghz: float | None = None) -> MachineFacts:
    """Facts given on the command line (`wattwise estimate`) rather than read from this machine."""
    for name, value in (("chips", chips), ("cores", cores), ("threads", threads), ("memory-gb", memory_gb),
                        ("base-ghz", base_ghz)):
        if value is not None and not value > 0:
            raise ConfigError(f"--{name} must be positive, got {value:g}")
    if cores and threads and threads < cores:
        raise ConfigError(f"--threads ({threads}) must be at least --cores ({cores})")
    match = re.search(r"@\s*([\d.]+)\s*GHz", cpu)
    if base_ghz is None and match:
        base_ghz = float(match.group(1))
    given = {k: "given" for k, v in (("cpu_model", cpu), ("chips", chips), ("cores", cores), ("threads", threads),
                                     ("memory_gb", memory_gb), ("base_ghz", base_ghz)) if v}
    vendor = "AuthenticAMD" if re.search(r"\b(amd|epyc|opteron|ryzen)\b", cpu, re.IGNORECASE) else ""
    return MachineFacts(cpu, vendor, chips, cores, threads, base_ghz, None, memory_gb, None, given)


def model_input(facts: MachineFacts, model: PowerModel, *, tdp_w: float | None = None, tdp_source: str = "",
                vhost_ratio: float | None = None, host_threads: int | None = None,
                year: int | None = None) -> ModelInput:
    """The model's input for this machine: facts found, the rest assumed (and said so).

    `tdp_w` is per chip (from --tdp or the TDP table; `tdp_source` says which)."""
    host: dict[str, float] = dict(model.defaults.get("host", {}))
    found: dict[str, str] = {}
    assumed: dict[str, str] = {}
    if facts.cpu_model:
        found["cpu"] = f"'{facts.cpu_model}'"
    if tdp_w is not None:
        found["tdp"] = f"{tdp_w:g} W/chip ({tdp_source})"
    if year is None:
        year = int(model.defaults.get("year", 2020))
        assumed["year"] = f"{year} (newest hardware in the model's data)"
    else:
        found["year"] = str(year)
    assumed["psu"] = "1"
    amd = "amd" in facts.vendor.lower() or "amd" in facts.cpu_model.lower()
    ratio = _vhost_ratio(vhost_ratio)
    if facts.hypervisor or ratio is not None or host_threads is not None:
        # a VM: the model describes the host, we get a share of it
        found["virtual machine"] = f"{facts.hypervisor or 'configured'}"
        threads_host = host_threads or int(host["threads"])
        if host_threads is None and ratio is None:
            assumed["host"] = (f"median 2019–2020 2-chip SPECpower server ({int(host['threads'])} threads, "
                               f"{host['memory_gb']:g} GB)")
        vcpus = facts.threads or 1
        share = ratio if ratio is not None else min(1.0, vcpus / threads_host)
        (found if ratio is not None or host_threads is not None else assumed)["vhost_ratio"] = (
            f"{share:.4g}" + ("" if ratio is not None else f" ({vcpus} vCPUs / {threads_host} host threads)"))
        cores_host = max(1, round(host["cores"] * threads_host / host["threads"]))
        if tdp_w is None:
            assumed["tdp"] = f"{host['tdp_w']:g} W/chip (host median; set --tdp)"
        spec = MachineSpec(tdp_w=tdp_w or host["tdp_w"], chips=2, cores=cores_host, threads=threads_host,
                           base_ghz=facts.base_ghz or host["base_ghz"],
                           turbo_ghz=facts.max_ghz or max(host["turbo_ghz"], facts.base_ghz or 0),
                           memory_gb=host["memory_gb"], amd=amd, year=year)
        if facts.base_ghz:
            found["base clock"] = f"{facts.base_ghz:g} GHz"
        return ModelInput(spec, share, found, assumed)

    chips = facts.chips or 1
    threads = facts.threads or int(host["threads"]) // 2
    cores = facts.cores or max(1, threads // 2)
    for name, value, used in (("chips", facts.chips, chips), ("threads", facts.threads, threads),
                              ("cores", facts.cores, cores)):
        (found if value else assumed)[name] = str(used)
    if tdp_w is None:
        per_thread = host["tdp_w"] * host["chips"] / host["threads"]
        tdp_w = min(max(per_thread * threads / chips, 25.0), 250.0)
        assumed["tdp"] = f"{tdp_w:.0f} W/chip ({per_thread:.2f} W per thread as the median host; set --tdp)"
    base = facts.base_ghz or host["base_ghz"]
    (found if facts.base_ghz else assumed)["base clock"] = f"{base:g} GHz"
    turbo = facts.max_ghz or base
    (found if facts.max_ghz else assumed)["turbo clock"] = f"{turbo:g} GHz"
    memory = facts.memory_gb or host["memory_gb"] / 2
    (found if facts.memory_gb else assumed)["memory"] = f"{memory:.1f} GB"
    spec = MachineSpec(tdp_w=tdp_w, chips=chips, cores=min(cores, threads), threads=threads, base_ghz=base,
                       turbo_ghz=turbo, memory_gb=memory, amd=amd, year=year)
    return ModelInput(spec, 1.0, found, assumed)
