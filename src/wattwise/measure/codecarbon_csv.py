"""CodeCarbon's `emissions.csv`, written from a tracker's result, so that users of its dashboards keep them.

The columns and units are CodeCarbon's (EmissionsData, as of codecarbon 3.x): duration in s, energy in kWh,
emissions in kg CO2e, emissions_rate in kg/s, power in W, RAM in GB. wattwise writes the energy it attributes to
the tracked process (`tracking_mode` = `process`; CodeCarbon's own default is the whole machine) as CPU energy,
since it does not split CPU from RAM energy. A file whose header differs (another CodeCarbon version) is kept
under the first free name of `emissions.csv.bak`, `emissions.csv.1.bak`, … and a new one is started.
`cpu_utilization_percent` is left at 0: wattwise's share of the machine's busy CPU time is not a utilisation.
"""

from __future__ import annotations

import csv
import os
import platform
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from wattwise.units import J_PER_KWH

if TYPE_CHECKING:
    from wattwise.measure.tracker import TrackResult

__all__ = ["CODECARBON_COLUMNS", "append_emissions_row"]

CODECARBON_COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def _ram_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def emissions_row(result: TrackResult, *, project_name: str) -> dict[str, object]:
    total = result.total
    process = total.process_energy_j is not None
    energy_j = (total.process_energy_j if process else total.energy_j) or 0.0
    carbon_g = (total.process_carbon_g if process else total.carbon_g) or 0.0
    duration = total.duration_s
    emissions_kg = carbon_g / 1000
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "project_name": project_name,
        "run_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wattwise:{socket.gethostname()}:{result.run_id}")),
        "experiment_id": "",
        "duration": duration,
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / duration if duration > 0 else 0.0,
        "cpu_power": energy_j / duration if duration > 0 else 0.0,
        "gpu_power": 0.0,
        "ram_power": 0.0,
        "cpu_energy": energy_j / J_PER_KWH,
        "gpu_energy": 0.0,
        "ram_energy": 0.0,
        "energy_consumed": energy_j / J_PER_KWH,
        "water_consumed": 0.0,
        "country_name": "",
        "country_iso_code": "",
        "region": "",
        "cloud_provider": "",
        "cloud_region": "",
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": "",
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": _cpu_model(),
        "gpu_count": 0,
        "gpu_model": "",
        "longitude": "",
        "latitude": "",
        "ram_total_size": _ram_total_gb(),
        "tracking_mode": "process" if process else "machine",
        "cpu_utilization_percent": 0.0,
        "gpu_utilization_percent": 0.0,
        "ram_utilization_percent": 0.0,
        "ram_used_gb": 0.0,
        "on_cloud": "N",
        "pue": result.pue,
        "wue": 0.0,
    }


def _free_backup_name(path: Path) -> Path:
    """emissions.csv.bak, else emissions.csv.1.bak, .2.bak, …: an older backup is never overwritten."""
    candidate = path.with_name(path.name + ".bak")
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}.bak")
    return candidate


def append_emissions_row(path: Path, result: TrackResult, *, project_name: str = "wattwise") -> None:
    """Append one row for `result` to CodeCarbon's emissions.csv at `path` (header written when new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > 0:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != CODECARBON_COLUMNS:
            path.replace(_free_backup_name(path))
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CODECARBON_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(emissions_row(result, project_name=project_name))
