"""GPU → compute unit attribution.

At each attribution point the exporter knows each GPU's power over the interval (P_g, from its energy
counter or its power reading) and which units use it:

1. **processes**: every compute process the GPU source lists (NVML's running processes, ``nvidia-smi
   --query-compute-apps``, ``amd-smi process``, ``rocm-smi --showpidgpus``) is placed in its unit through
   ``/proc/<pid>/cgroup`` (the deepest cgroup path, v2 line first, whose prefix is a unit directory);
2. **Slurm environment**, for a Slurm job none of whose processes the source lists (e.g. a job between two
   kernels, or a source that cannot see other users' processes): ``SLURM_JOB_GPUS`` (global indices), else
   ``SLURM_STEP_GPUS``, else ``CUDA_VISIBLE_DEVICES`` / ``ROCR_VISIBLE_DEVICES`` (indices or UUIDs) in
   ``/proc/<pid>/environ`` of a process of the job. Read once per job (an allocation does not change).

A GPU used by one unit is charged to it whole (``split="exclusive"``). A GPU shared by several units is
split by their utilisation weights when the source gives one for every sharing unit with a positive sum
(``split="utilization"``: NVML's per-process SM utilisation, amd-smi's gfx engine time), else evenly
(``split="even"``). A GPU no unit uses stays unattributed. A unit's GPU power is PUE · share · P_g and is
part of its total power, energy and emissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from wattwise.monitor.discovery import classify, read_bytes
from wattwise.providers.gpu_tools import GpuDevice, GpuProcess

UnitKey = tuple[str, str]
GPU_ENV_KEYS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


@dataclass(frozen=True)
class GpuShare:
    unit: UnitKey
    gpu: str
    power_w: float  # before PUE
    split: str  # exclusive | utilization | even


def unit_of_cgroup_path(path: str) -> UnitKey | None:
    """The unit whose directory is `path` or one of its ancestors (a path as in /proc/<pid>/cgroup)."""
    parts = [p for p in path.split("/") if p]
    for end in range(len(parts), 0, -1):
        match = classify("/".join(parts[:end]))
        if match is not None:
            return (match.manager, match.unit_id)
    return None


def unit_of_pid(proc_root: str, pid: int) -> UnitKey | None:
    """The unit a process is in, from /proc/<pid>/cgroup (v2 ``0::`` line first, then the v1 lines)."""
    data = read_bytes(f"{proc_root}/{pid}/cgroup")
    if not data:
        return None
    lines = data.decode(errors="replace").splitlines()
    lines.sort(key=lambda line: not line.startswith("0::"))
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) == 3:
            found = unit_of_cgroup_path(fields[2])
            if found is not None:
                return found
    return None


def gpus_from_environment(environ: Mapping[str, str], devices: Sequence[GpuDevice]) -> list[str] | None:
    """Labels of the GPUs a job's environment names, or None when it names none (see the module doc)."""
    for key in GPU_ENV_KEYS:
        value = environ.get(key, "").strip()
        if not value or value.lower() in ("none", "nodevfiles", "void"):
            continue
        labels: list[str] = []
        for token in re.split(r"[,\s]+", value):
            if not token:
                continue
            if token.isdigit():
                labels += [d.label for d in devices if d.index == int(token)]
            else:
                labels += [d.label for d in devices if d.uuid and (d.uuid == token or d.uuid.startswith(token))]
        return list(dict.fromkeys(labels))
    return None


def share_gpus(gpu_power_w: Mapping[str, float],
               users: Mapping[str, Mapping[UnitKey, float | None]]) -> list[GpuShare]:
    """Each GPU's power shared among the units using it. `users`: gpu → {unit: utilisation weight or None}."""
    shares: list[GpuShare] = []
    for gpu, units in sorted(users.items()):
        power = gpu_power_w.get(gpu)
        if power is None or not units:
            continue
        keys = sorted(units)
        if len(keys) == 1:
            shares.append(GpuShare(keys[0], gpu, power, "exclusive"))
            continue
        weights = [units[k] for k in keys]
        if all(w is not None for w in weights) and sum(w for w in weights if w is not None) > 0:
            total = sum(w for w in weights if w is not None)
            shares.extend(GpuShare(k, gpu, power * (w or 0.0) / total, "utilization")
                          for k, w in zip(keys, weights, strict=True))
        else:
            shares.extend(GpuShare(k, gpu, power / len(keys), "even") for k in keys)
    return shares


def gpu_users(processes: Iterable[GpuProcess], proc_root: str, alive: set[UnitKey],
              env_claims: Mapping[UnitKey, Sequence[str]]) -> dict[str, dict[UnitKey, float | None]]:
    """gpu → {unit: weight}: processes placed in live units, then environment claims of units without any
    listed process. A unit's weight on a GPU is the sum of its processes' weights (None if any is unknown)."""
    users: dict[str, dict[UnitKey, float | None]] = {}
    with_process: set[UnitKey] = set()
    for process in processes:
        unit = unit_of_pid(proc_root, process.pid)
        if unit is None or unit not in alive:
            continue
        with_process.add(unit)
        on_gpu = users.setdefault(process.gpu, {})
        if unit in on_gpu:
            before = on_gpu[unit]
            on_gpu[unit] = None if before is None or process.weight is None else before + process.weight
        else:
            on_gpu[unit] = process.weight
    for unit, gpus in env_claims.items():
        if unit in with_process or unit not in alive:
            continue
        for gpu in gpus:
            users.setdefault(gpu, {})[unit] = None
    return users


def unit_pids(directories: Iterable[str], limit: int = 256) -> list[int]:
    """Pids listed in the cgroup.procs files of the directories and their subtrees (at most `limit`)."""
    import os

    pids: list[int] = []
    stack = list(directories)
    while stack and len(pids) < limit:
        current = stack.pop()
        data = read_bytes(current + "/cgroup.procs")
        if data:
            pids.extend(int(p) for p in data.split() if p.isdigit())
        try:
            with os.scandir(current) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return list(dict.fromkeys(pids))[:limit]
