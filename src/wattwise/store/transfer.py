"""Store a run from a run document (`wattwise runs export --format json`, `wattwise ci end`): `wattwise runs import`.

The document is checked before anything is written, and the whole import is one run created, filled and closed:
a document that cannot be read leaves nothing behind, and a run that was `running` when exported is stored as
`incomplete` (its owner is elsewhere and will never close it here).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from wattwise.errors import WattwiseError
from wattwise.providers.base import Kind, MetricSpec

if TYPE_CHECKING:
    from wattwise.store.store import Store

__all__ = ["import_run_document"]

_KINDS = {str(k) for k in Kind}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_metric(metric: Any, where: str) -> None:
    if not isinstance(metric, dict) or not {"name", "unit", "kind", "t_us", "values"} <= metric.keys():
        raise WattwiseError(f"{where}: needs name, unit, kind, t_us and values")
    if str(metric["kind"]) not in _KINDS:
        raise WattwiseError(f"{where}: kind {metric['kind']!r} is not one of {', '.join(sorted(_KINDS))}")
    if not isinstance(metric["t_us"], list) or not isinstance(metric["values"], list):
        raise WattwiseError(f"{where}: t_us and values must be lists")
    if len(metric["t_us"]) != len(metric["values"]):
        raise WattwiseError(f"{where}: {len(metric['t_us'])} times but {len(metric['values'])} values")
    if not all(_whole(t) for t in metric["t_us"]):
        raise WattwiseError(f"{where}: t_us must be whole microseconds")
    if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
               for v in metric["values"]):
        raise WattwiseError(f"{where}: values must be finite numbers")


def _check_phase(phase: Any, where: str) -> None:
    if not isinstance(phase, dict) or not {"name", "start_us", "end_us"} <= phase.keys():
        raise WattwiseError(f"{where} needs name, start_us and end_us")
    if not all(_whole(phase[k]) for k in ("start_us", "end_us")):
        raise WattwiseError(f"{where}: start_us and end_us must be whole microseconds")
    if phase["end_us"] < phase["start_us"]:
        raise WattwiseError(f"{where}: phase {phase['name']!r} ends before it starts")


def _check_items(document: dict[str, Any], source: str) -> None:
    for what, required in (("notes", ("t_us", "text")), ("logs", ("text",))):
        items = document.get(what) or []
        if not isinstance(items, list):
            raise WattwiseError(f"{source}: {what} must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or any(k not in item for k in required):
                raise WattwiseError(f"{source}: {what}[{i}] needs {' and '.join(required)}")
            if what == "notes" and not _whole(item["t_us"]):
                raise WattwiseError(f"{source}: notes[{i}].t_us must be whole microseconds")


def _phases_of(document: dict[str, Any]) -> list[Any]:
    """The phases as stored (a document from `runs export` has them), else the summary's own phases."""
    stored = document.get("stored_phases")
    if stored:
        return list(stored)
    return [p for p in document["phases"] if not (isinstance(p, dict) and p.get("rebuilt_from"))]


def _check(document: Any, source: str) -> None:
    if not isinstance(document, dict):
        raise WattwiseError(f"{source}: not a wattwise run document (expected a JSON object)")
    missing = [k for k in ("name", "status", "metrics", "phases") if k not in document]
    if missing:
        raise WattwiseError(f"{source}: not a wattwise run document (missing {', '.join(missing)}); write one "
                            "with `wattwise runs export ID --format json` or `wattwise ci end`")
    if not isinstance(document["metrics"], list) or not isinstance(document["phases"], list):
        raise WattwiseError(f"{source}: metrics and phases must be lists")
    for i, metric in enumerate(document["metrics"]):
        _check_metric(metric, f"{source}: metrics[{i}]")
    for i, phase in enumerate(_phases_of(document)):
        _check_phase(phase, f"{source}: phases[{i}]")
    _check_items(document, source)


def import_run_document(store: Store, document: Any, *, source: str = "document") -> int:
    """Store the run described by `document`; returns the new run id."""
    from wattwise.store.models import RunStatus

    _check(document, source)
    status = document["status"] if document["status"] in RunStatus.ALL else RunStatus.INCOMPLETE
    warnings = list(document.get("warnings") or [])
    error = document.get("error")
    if status == RunStatus.RUNNING:
        status = RunStatus.INCOMPLETE
        error = error or "exported while still running; imported as it was then"
    settings = dict(document.get("settings") or {})
    settings["imported_from"] = {"run_id": document.get("run_id"), "machine": document.get("machine"),
                                 "created_at": document.get("created_at")}
    run_id = store.create_run(
        str(document["name"])[:200],
        str(document.get("kind") or "imported"),
        command=document.get("command"),
        machine=str(document.get("machine") or ""),
        settings=settings,
        estimated=bool(document.get("estimated")),
        scenario=document.get("scenario"),
    )
    try:
        for metric in document["metrics"]:
            spec = MetricSpec(str(metric["name"]), str(metric["unit"]), Kind(str(metric["kind"])),
                              str(metric.get("detail") or ""), bool(metric.get("estimated")))
            metric_id = store.add_metric(run_id, spec, str(metric.get("provider") or "imported"))
            store.add_samples([(metric_id, int(t), float(v)) for t, v in zip(metric["t_us"], metric["values"],
                                                                              strict=True) if v is not None])
        for phase in _phases_of(document):
            store.add_phase(run_id, str(phase["name"]), int(phase["start_us"]), int(phase["end_us"]),
                            hidden=bool(phase.get("hidden")), parent=phase.get("parent"))
        store.add_notes(run_id, [(int(n["t_us"]), str(n.get("source") or ""), str(n["text"]))
                                 for n in document.get("notes") or []])
        for entry in document.get("logs") or []:
            store.add_log(run_id, str(entry.get("source") or ""), str(entry.get("stream") or "stdout"),
                          str(entry.get("text") or ""))
    except BaseException:
        store.delete_run(run_id)
        raise
    store.finish_run(run_id, status, error=error, exit_code=document.get("exit_code"), warnings=warnings)
    return run_id
