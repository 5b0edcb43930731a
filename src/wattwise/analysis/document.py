"""A whole run as one JSON-ready document: its summary, settings, notes, logs and every sample.

`wattwise runs export --format json` writes it and `wattwise runs import` (`wattwise.store.transfer`) reads it
back, so a run measured where no shared database is reachable (a CI runner) can be stored elsewhere later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wattwise.analysis.phases import Series, load_series, summarize_run

if TYPE_CHECKING:
    from wattwise.store import Store

__all__ = ["DOCUMENT_FORMAT", "run_document"]

#: written into every document, so that an importer can tell what it reads
DOCUMENT_FORMAT = "wattwise-run/1"


def run_document(store: Store, run_id: int, *, series: list[Series] | None = None) -> dict[str, Any]:
    run = store.get_run(run_id)
    series = series if series is not None else load_series(store, run_id)
    document = summarize_run(store, run_id, series=series)
    document.update(
        {
            "format": DOCUMENT_FORMAT,
            "kind": run.kind,
            "command": run.command,
            "machine": run.machine,
            "exit_code": run.exit_code,
            "error": run.error,
            "settings": run.settings,
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "notes": [{"t_us": n.t_us, "source": n.source, "text": n.text} for n in store.notes(run_id)],
            "logs": [{"source": e.source, "stream": e.stream, "text": e.text} for e in store.logs(run_id)],
            "stored_phases": [
                {"name": p.name, "start_us": p.start_us, "end_us": p.end_us, "parent": p.parent, "hidden": p.hidden}
                for p in store.phases(run_id)
            ],
            "metrics": [
                {
                    "name": s.name,
                    "unit": s.unit,
                    "kind": s.kind,
                    "provider": s.provider,
                    "detail": s.detail,
                    "estimated": s.estimated,
                    "t_us": s.t_us.tolist(),
                    "values": s.values.tolist(),
                }
                for s in series
            ],
        }
    )
    return document
