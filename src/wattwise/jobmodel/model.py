"""The job power model: a job is a sequence of startup phases then work phases, each at constant power.

A resume (after a stop, e.g. at a checkpoint) repeats the startup phases, so a job that is suspended and
resumed k times costs ``k * resume_cost_j`` more energy and ``k * resume_cost_s`` more time than one run.

Model files are JSON or YAML::

    {"startup": [{"name": "start", "duration_s": 20, "power_w": 30}],
     "work": [{"name": "train", "duration_s": 300, "power_w": 90},
              {"name": "save", "duration_s": 5, "power_w": 40, "is_checkpoint": true}]}

The spellings ``duration`` and ``power`` (as in the Carbs scheduler's job files) are accepted on input;
files are always written with ``duration_s`` and ``power_w``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.errors import ModelError as ModelError

PHASE_KEYS = ("name", "duration_s", "power_w", "is_checkpoint")
_ALIASES = {"duration": "duration_s", "power": "power_w"}
#: top-level keys besides startup/work that are accepted on input and ignored
_IGNORED_TOP_KEYS = ("$schema", "description", "meta")

#: JSON Schema (draft 2020-12) of a model file, as written by `save_model`; printed by `wattwise model schema`
MODEL_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "wattwise job power model",
    "type": "object",
    "required": ["work"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "description": {"type": "string"},
        "meta": {"type": "object"},
        "startup": {"type": "array", "items": {"$ref": "#/$defs/phase"},
                    "description": "phases run once at start and again at every resume"},
        "work": {"type": "array", "items": {"$ref": "#/$defs/phase"},
                 "description": "phases of the useful work, in order"},
    },
    "$defs": {
        "phase": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "duration_s": {"type": "number", "minimum": 0},
                "duration": {"type": "number", "minimum": 0, "description": "Carbs spelling of duration_s"},
                "power_w": {"type": "number", "minimum": 0},
                "power": {"type": "number", "minimum": 0, "description": "Carbs spelling of power_w"},
                "is_checkpoint": {"type": "boolean", "default": False},
            },
            "allOf": [
                {"oneOf": [{"required": ["duration_s"]}, {"required": ["duration"]}]},
                {"oneOf": [{"required": ["power_w"]}, {"required": ["power"]}]},
            ],
        }
    },
}


def _check_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(f"{where}: must be a number ≥ 0, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ModelError(f"{where}: must be a finite number ≥ 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Phase:
    """A stretch of a job at constant power."""

    name: str
    duration_s: float
    power_w: float
    is_checkpoint: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ModelError(f"phase name must be a non-empty string, got {self.name!r}")
        where = f"phase {self.name!r}"
        object.__setattr__(self, "duration_s", _check_number(self.duration_s, f"{where} duration_s"))
        object.__setattr__(self, "power_w", _check_number(self.power_w, f"{where} power_w"))
        if not isinstance(self.is_checkpoint, bool):
            raise ModelError(f"{where} is_checkpoint: must be true or false, got {self.is_checkpoint!r}")

    @property
    def energy_j(self) -> float:
        return self.duration_s * self.power_w

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "duration_s": self.duration_s, "power_w": self.power_w,
                "is_checkpoint": self.is_checkpoint}


@dataclass(frozen=True)
class JobModel:
    """A job: ``startup`` phases (repeated at every resume) then ``work`` phases. Time 0 = job launch."""

    startup: tuple[Phase, ...] = ()
    work: tuple[Phase, ...] = ()
    _ends: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "startup", tuple(self.startup))
        object.__setattr__(self, "work", tuple(self.work))
        for section in ("startup", "work"):
            for i, phase in enumerate(getattr(self, section)):
                if not isinstance(phase, Phase):
                    raise ModelError(f"{section}[{i}]: must be a Phase, got {type(phase).__name__}")
        ends: list[float] = []
        t = 0.0
        for phase in self.phases:
            t += phase.duration_s
            ends.append(t)
        object.__setattr__(self, "_ends", tuple(ends))

    # -- sizes -------------------------------------------------------------------------------------
    @property
    def phases(self) -> tuple[Phase, ...]:
        """Startup then work phases."""
        return self.startup + self.work

    @property
    def startup_s(self) -> float:
        return math.fsum(p.duration_s for p in self.startup)

    @property
    def work_s(self) -> float:
        return math.fsum(p.duration_s for p in self.work)

    @property
    def duration_s(self) -> float:
        return self.startup_s + self.work_s

    @property
    def startup_energy_j(self) -> float:
        return math.fsum(p.energy_j for p in self.startup)

    @property
    def work_energy_j(self) -> float:
        return math.fsum(p.energy_j for p in self.work)

    @property
    def energy_j(self) -> float:
        return self.startup_energy_j + self.work_energy_j

    @property
    def mean_power_w(self) -> float:
        duration = self.duration_s
        return self.energy_j / duration if duration > 0 else 0.0

    @property
    def resume_cost_j(self) -> float:
        """Energy a resume costs on top of the remaining work: the startup again."""
        return self.startup_energy_j

    @property
    def resume_cost_s(self) -> float:
        """Time a resume costs on top of the remaining work: the startup again."""
        return self.startup_s

    @property
    def checkpoint_ends_s(self) -> list[float]:
        """Job times (s) at which a checkpoint phase ends: the points where stopping loses no work."""
        out = []
        for phase, end in zip(self.phases, self._ends, strict=True):
            if phase.is_checkpoint:
                out.append(end)
        return out

    # -- shape -------------------------------------------------------------------------------------
    def power_at(self, t_s: float) -> float:
        """Power (W) at job time ``t_s``; 0 outside [0, duration_s)."""
        if t_s < 0 or not self._ends or t_s >= self._ends[-1]:
            return 0.0
        return self.phases[bisect.bisect_right(self._ends, t_s)].power_w

    def power_series(self, times_s: Any) -> Any:
        """`power_at` for a numpy array of job times (vectorised)."""
        import numpy as np

        times = np.asarray(times_s, dtype=float)
        if not self._ends:
            return np.zeros_like(times)
        powers = np.array([p.power_w for p in self.phases] + [0.0])
        index = np.searchsorted(np.asarray(self._ends), times, side="right")
        out = powers[index]
        out[times < 0] = 0.0
        return out

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        """Energy (J) the job draws between job times t0 and t1 (clipped to the job)."""
        total = 0.0
        for start, end, power in self.segments():
            lo, hi = max(start, t0_s), min(end, t1_s)
            if hi > lo:
                total += (hi - lo) * power
        return total

    def segments(self) -> list[tuple[float, float, float]]:
        """Piecewise-constant power as (start_s, end_s, power_w), startup then work; zero-length phases
        are left out."""
        out: list[tuple[float, float, float]] = []
        start = 0.0
        for phase, end in zip(self.phases, self._ends, strict=True):
            if end > start:
                out.append((start, end, phase.power_w))
            start = end
        return out

    def tiled(self, work_s: float) -> JobModel:
        """The same startup, with the work phases repeated cyclically (the last one cut) to last
        ``work_s`` seconds."""
        work_s = _check_number(work_s, "work_s")
        if work_s == 0:
            return JobModel(self.startup, ())
        if self.work_s <= 0:
            raise ModelError("cannot tile a model whose work phases last 0 s")
        out: list[Phase] = []
        remaining = work_s
        while remaining > 1e-12:
            for phase in self.work:
                if phase.duration_s <= 0:
                    continue
                if phase.duration_s >= remaining:
                    cut = phase.duration_s > remaining
                    out.append(Phase(phase.name, remaining, phase.power_w, phase.is_checkpoint and not cut))
                    remaining = 0.0
                    break
                out.append(phase)
                remaining -= phase.duration_s
        return JobModel(self.startup, tuple(out))

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"startup": [p.to_dict() for p in self.startup], "work": [p.to_dict() for p in self.work]}

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> JobModel:
        """Build a model from parsed JSON/YAML; errors name ``source`` and the key path."""
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: a model must be a mapping with keys 'startup' and 'work', "
                             f"got {type(data).__name__}")
        allowed = ("startup", "work", *_IGNORED_TOP_KEYS)
        for key in data:
            if key not in allowed:
                raise ModelError(f"{source}: unknown key {key!r} at the top level; allowed: "
                                 f"{', '.join(allowed)}")
        if "work" not in data and "startup" not in data:
            raise ModelError(f"{source}: missing key 'work' (a list of phases); 'startup' is optional")
        sections: dict[str, tuple[Phase, ...]] = {}
        for section in ("startup", "work"):
            items = data.get(section, [])
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ModelError(f"{source}: {section}: must be a list of phases, got {type(items).__name__}")
            sections[section] = tuple(_phase_from_dict(item, f"{source}: {section}[{i}]", f"{section}{i}")
                                      for i, item in enumerate(items))
        return cls(sections["startup"], sections["work"])


def _phase_from_dict(item: Any, where: str, default_name: str) -> Phase:
    if not isinstance(item, Mapping):
        raise ModelError(f"{where}: a phase must be a mapping with keys name, duration_s, power_w "
                         f"[, is_checkpoint], got {type(item).__name__}")
    values: dict[str, Any] = {}
    for key, value in item.items():
        canonical = _ALIASES.get(key, key)
        if canonical not in PHASE_KEYS:
            raise ModelError(f"{where}: unknown key {key!r}; allowed: name, duration_s (or duration), "
                             f"power_w (or power), is_checkpoint")
        if canonical in values:
            raise ModelError(f"{where}: both {canonical!r} and its alias are given; use one")
        values[canonical] = (key, value)
    name = values.get("name", ("name", default_name))[1]
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"{where}.name: must be a non-empty string, got {name!r}")
    numbers = {}
    for key in ("duration_s", "power_w"):
        if key not in values:
            alias = "duration" if key == "duration_s" else "power"
            unit = "s" if key == "duration_s" else "W"
            raise ModelError(f"{where}: missing key {key!r} (or {alias!r}), a number ≥ 0 in {unit}")
        spelled, value = values[key]
        numbers[key] = _check_number(value, f"{where}.{spelled}")
    checkpoint = values.get("is_checkpoint", ("is_checkpoint", False))[1]
    if not isinstance(checkpoint, bool):
        raise ModelError(f"{where}.is_checkpoint: must be true or false, got {checkpoint!r}")
    return Phase(name.strip(), numbers["duration_s"], numbers["power_w"], checkpoint)


# -- helpers -----------------------------------------------------------------------------------------
def constant(duration_s: float, power_w: float, name: str = "work") -> JobModel:
    """A job at constant power with no startup: what carbon-aware schedulers have usually assumed."""
    return JobModel((), (Phase(name, duration_s, power_w),))


def ml(*, epochs: int, start_s: float, start_w: float, train_s: float, train_w: float,
       evaluate_s: float, evaluate_w: float, save_s: float, save_w: float,
       load_s: float = 0.0, load_w: float = 0.0) -> JobModel:
    """An ML training job: startup = start (+ load data when ``load_s`` > 0); work = ``epochs`` ×
    (train, evaluate, save), where save is a checkpoint."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ModelError(f"epochs: must be an integer ≥ 1, got {epochs!r}")
    startup = [Phase("start", start_s, start_w)]
    if load_s > 0:
        startup.append(Phase("load", load_s, load_w))
    epoch = (Phase("train", train_s, train_w), Phase("evaluate", evaluate_s, evaluate_w),
             Phase("save", save_s, save_w, is_checkpoint=True))
    return JobModel(tuple(startup), epoch * epochs)


def constant_from_phases(model: JobModel, name: str = "work") -> JobModel:
    """A constant-power job with the same length and energy as ``model`` and a free restart (no startup)."""
    duration = model.duration_s
    return constant(duration, model.energy_j / duration if duration > 0 else 0.0, name)


def load_model(path: str | Path) -> JobModel:
    """Read a model file (.json, .yml, .yaml)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yml", ".yaml"):
        raise ModelError(f"{path}: unknown model file type {suffix or '(none)'!r}; use .json, .yml or .yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read model file: {exc}") from None
    if not text.strip():
        raise ModelError(f"{path}: model file is empty")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            place = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ModelError(f"{path}: invalid YAML{place}: {problem}") from None
    return JobModel.from_dict(data, source=str(path))


def save_model(model: JobModel, path: str | Path) -> None:
    """Write a model file; YAML for .yml/.yaml, JSON otherwise."""
    path = Path(path)
    data = model.to_dict()
    if path.suffix.lower() in (".yml", ".yaml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot write model file: {exc}") from None
