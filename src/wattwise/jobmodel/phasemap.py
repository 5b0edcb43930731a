"""Phase maps: which logged event starts which phase of a job model (YAML, see default_phasemap.yml)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wattwise.errors import PhaseMapError as PhaseMapError
from wattwise.jobmodel.pinpoint import Event, PowerRun, RunError

SECTIONS = ("startup", "work")
_TOP_KEYS = ("version", "launch", "phases", "ignore", "case_sensitive", "description")
_RULE_KEYS = ("match", "phase", "section", "checkpoint")


@dataclass(frozen=True)
class PhaseRule:
    pattern: re.Pattern[str]
    phase: str
    section: str = "work"
    checkpoint: bool = False


@dataclass(frozen=True)
class PhaseMap:
    rules: tuple[PhaseRule, ...]
    ignore: tuple[re.Pattern[str], ...] = ()
    launch: str | None = None
    source: str = "<phase map>"

    def match(self, label: str) -> PhaseRule | None:
        for rule in self.rules:
            if rule.pattern.search(label):
                return rule
        return None

    def ignored(self, label: str) -> bool:
        return any(p.search(label) for p in self.ignore)

    def launch_phase(self) -> tuple[str, str, bool]:
        """(name, section, checkpoint) of the phase that starts at the program's launch."""
        name = self.launch or "launch"
        for rule in self.rules:
            if rule.phase == name:
                return rule.phase, rule.section, rule.checkpoint
        return name, "startup", False


@dataclass(frozen=True)
class PhaseSpan:
    """One phase of one measured run, in Unix times."""

    name: str
    section: str
    is_checkpoint: bool
    start_s: float
    end_s: float
    event: Event | None = None  # the event that started it (None: the program's launch)

    @property
    def key(self) -> tuple[str, str, bool]:
        return (self.name, self.section, self.is_checkpoint)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


DEFAULT_PHASEMAP_NAME = "default_phasemap.yml"


def default_phasemap_text() -> str:
    return resources.files("wattwise.jobmodel").joinpath(DEFAULT_PHASEMAP_NAME).read_text(encoding="utf-8")


def default_phasemap() -> PhaseMap:
    import yaml

    return phasemap_from_dict(yaml.safe_load(default_phasemap_text()), "<default phase map>")


def load_phasemap(path: str | Path | None) -> PhaseMap:
    """Read a phase map YAML file; ``None`` gives the shipped default."""
    if path is None:
        return default_phasemap()
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PhaseMapError(f"{path}: phase map file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PhaseMapError(f"{path}: cannot read phase map: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise PhaseMapError(f"{path}: invalid YAML{place}: {getattr(exc, 'problem', None) or exc}") from None
    return phasemap_from_dict(data, str(path))


def _compile(pattern: Any, where: str, flags: int) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise PhaseMapError(f"{where}: must be a non-empty regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise PhaseMapError(f"{where}: invalid regular expression {pattern!r}: {exc}") from None


def _settings(data: Any, source: str) -> int:
    """Check the top-level keys, version and case_sensitive; the regular-expression flags they imply."""
    if not isinstance(data, dict):
        raise PhaseMapError(f"{source}: a phase map must be a mapping with a 'phases' list, "
                            f"got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise PhaseMapError(f"{source}: unknown key {key!r}; allowed: {', '.join(_TOP_KEYS)}")
    version = data.get("version", 1)
    if version != 1:
        raise PhaseMapError(f"{source}: version: only 1 is known, got {version!r}")
    case_sensitive = data.get("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise PhaseMapError(f"{source}: case_sensitive: must be true or false, got {case_sensitive!r}")
    return 0 if case_sensitive else re.IGNORECASE


def _rule(item: Any, where: str, flags: int) -> PhaseRule:
    """One entry of `phases`, checked key by key."""
    if not isinstance(item, dict):
        raise PhaseMapError(f"{where}: a rule must be a mapping with keys {', '.join(_RULE_KEYS)}")
    for key in item:
        if key not in _RULE_KEYS:
            raise PhaseMapError(f"{where}: unknown key {key!r}; allowed: {', '.join(_RULE_KEYS)}")
    for key in ("match", "phase"):
        if key not in item:
            raise PhaseMapError(f"{where}: missing key {key!r}")
    pattern = _compile(item["match"], f"{where}.match", flags)
    phase = item["phase"]
    if not isinstance(phase, str) or not phase.strip():
        raise PhaseMapError(f"{where}.phase: must be a non-empty phase name, got {phase!r}")
    section = item.get("section", "work")
    if section not in SECTIONS:
        raise PhaseMapError(f"{where}.section: must be one of {', '.join(SECTIONS)}, got {section!r}")
    checkpoint = item.get("checkpoint", False)
    if not isinstance(checkpoint, bool):
        raise PhaseMapError(f"{where}.checkpoint: must be true or false, got {checkpoint!r}")
    return PhaseRule(pattern, phase.strip(), section, checkpoint)


def phasemap_from_dict(data: Any, source: str = "<phase map>") -> PhaseMap:
    flags = _settings(data, source)
    items = data.get("phases")
    if not isinstance(items, list) or not items:
        raise PhaseMapError(f"{source}: phases: must be a non-empty list of rules "
                            f"(match, phase, section, checkpoint)")
    rules: list[PhaseRule] = []
    seen: dict[str, tuple[str, bool, str]] = {}
    for i, item in enumerate(items):
        where = f"{source}: phases[{i}]"
        rule = _rule(item, where, flags)
        phase, section, checkpoint = rule.phase, rule.section, rule.checkpoint
        if phase in seen and seen[phase][:2] != (section, checkpoint):
            raise PhaseMapError(
                f"{where}: phase {phase!r} is {section}/checkpoint={checkpoint} here but "
                f"{seen[phase][0]}/checkpoint={seen[phase][1]} in {seen[phase][2]}; one phase, one kind"
            )
        seen.setdefault(phase, (section, checkpoint, f"phases[{i}]"))
        rules.append(rule)
    ignore_items = data.get("ignore") or []
    if not isinstance(ignore_items, list):
        raise PhaseMapError(f"{source}: ignore: must be a list of regular expressions")
    ignore = tuple(_compile(p, f"{source}: ignore[{i}]", flags) for i, p in enumerate(ignore_items))
    launch = data.get("launch")
    if launch is not None and (not isinstance(launch, str) or not launch.strip()):
        raise PhaseMapError(f"{source}: launch: must be a phase name, got {launch!r}")
    return PhaseMap(tuple(rules), ignore, launch.strip() if launch else None, source)


_Boundary = tuple[float, tuple[str, str, bool], Event | None]


def _boundaries(run: PowerRun, phasemap: PhaseMap, where: str, ignore_unknown: bool) -> list[_Boundary]:
    """(time, (phase, section, checkpoint), starting event) of every phase start, repeated phases merged."""
    boundaries: list[_Boundary] = []
    if run.launch_s is not None:
        boundaries.append((run.launch_s, phasemap.launch_phase(), None))
    unknown: list[Event] = []
    for event in run.events:
        rule = phasemap.match(event.label)
        if rule is None:
            if not (ignore_unknown or phasemap.ignored(event.label)):
                unknown.append(event)
            continue
        boundaries.append((event.time_s, (rule.phase, rule.section, rule.checkpoint), event))
    if unknown:
        shown = "; ".join(f"line {e.line}: {e.label!r}" for e in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise RunError(
            f"{where}: {len(unknown)} event label(s) match no rule of {phasemap.source}: {shown}{more}. "
            f"Add rules (or 'ignore' entries) to a phase map (start from `wattwise model phasemap`) "
            f"and pass it with --phase-map, or pass --ignore-unknown"
        )
    if not boundaries or (run.launch_s is not None and len(boundaries) == 1):
        labels = ", ".join(repr(e.label) for e in run.events[:5])
        raise RunError(f"{where}: no event matches a rule of {phasemap.source} (labels: {labels or 'none'})")
    merged: list[_Boundary] = []
    for boundary in boundaries:
        if merged and merged[-1][1] == boundary[1]:
            continue
        merged.append(boundary)
    return merged


def phase_spans(run: PowerRun, phasemap: PhaseMap, *, ignore_unknown: bool = False) -> list[PhaseSpan]:
    """Cut a run into phases: each mapped event starts a phase that lasts until the next one starts.

    The job starts at the program's launch when known (the phase map's ``launch`` phase), else at the
    first mapped event; it ends at the program's end when known, else at the last event.
    """
    where = run.events_source or run.source
    merged = _boundaries(run, phasemap, where, ignore_unknown)
    job_end = run.job_end_s
    spans: list[PhaseSpan] = []
    seen_work: PhaseSpan | None = None
    for i, (start, (name, section, checkpoint), started_by) in enumerate(merged):
        end = merged[i + 1][0] if i + 1 < len(merged) else max(job_end, start)
        span = PhaseSpan(name, section, checkpoint, start, end, started_by)
        if section == "work":
            seen_work = seen_work or span
        elif seen_work is not None:
            line = f":{started_by.line}" if started_by else ""
            raise RunError(
                f"{where}{line}: startup phase {name!r} starts after work phase {seen_work.name!r} began; "
                f"a run to fit must be one uninterrupted job (startup phases first)"
            )
        spans.append(span)
    if seen_work is None:
        raise RunError(
            f"{where}: no event starts a work phase (phases found: {', '.join(s.name for s in spans)}); "
            f"is the event that starts training (e.g. 'Start training') missing?"
        )
    return spans
