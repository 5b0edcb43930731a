"""Analysis results of a run for the API, cached in ``web_result_cache`` once the run has finished.

The cache key is the kind of result plus a fingerprint of everything it depends on: the run's status and
end time, its settings, its phases and the request's parameters. Changing any of them recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete

from wattwise.analysis.phases import Series, load_series
from wattwise.store import Store
from wattwise.store.models import Run
from wattwise.web.models import ResultCache, ensure_cache_tables
from wattwise.web.series import read_samples, run_metrics, run_version


def fingerprint(store: Store, run: Run, params: dict[str, Any]) -> str:
    phases = [(p.name, p.start_us, p.end_us, p.parent, p.hidden) for p in store.phases(run.id)]
    text = json.dumps([run_version(run), run.settings, phases, params], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def cached(store: Store, run: Run, key: str, params: dict[str, Any], compute: Callable[[], Any]) -> Any:
    if run_version(run) is None:
        return json_safe(compute())
    ensure_cache_tables(store)
    mark = fingerprint(store, run, params)
    with store.session() as session:
        row = session.get(ResultCache, (run.id, key))
        if row is not None and row.fingerprint == mark:
            return row.payload
    payload = json_safe(compute())
    with store.session() as session:
        session.execute(delete(ResultCache).where(ResultCache.run_id == run.id, ResultCache.key == key))
        session.add(ResultCache(run_id=run.id, key=key, fingerprint=mark, payload=payload))
    return payload


_recent: OrderedDict[tuple[str, int, str], list[Series]] = OrderedDict()
_recent_lock = threading.Lock()
RECENT_RUNS = 2  # finished runs whose samples stay in memory (the page's requests share them)


class LazySeries:
    """Loads a run's series once, on first use, through the fast sample reader. The series of the last
    few finished runs are kept, so the requests of one page read the samples once."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self._series: list[Series] | None = None

    def __call__(self) -> list[Series]:
        if self._series is not None:
            return self._series
        version = run_version(self.store.get_run(self.run_id))
        key = (self.store.url, self.run_id, version or "")
        if version is not None:
            with _recent_lock:
                if key in _recent:
                    _recent.move_to_end(key)
                    self._series = _recent[key]
                    return self._series
        out = []
        for m in run_metrics(self.store, self.run_id):
            t_us, values = read_samples(self.store, m.id)
            out.append(Series(m.id, m.name, m.unit, m.kind, m.provider, m.detail, m.estimated, t_us, values))
        self._series = out
        if version is not None:
            with _recent_lock:
                _recent[key] = out
                while len(_recent) > RECENT_RUNS:
                    _recent.popitem(last=False)
        return out


__all__ = ["LazySeries", "cached", "fingerprint", "json_safe", "load_series"]
