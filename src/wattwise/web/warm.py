"""Background warming of the caches: a thread that computes the run page's data (summary, phase
statistics, chart buckets) for newly finished runs, so that their first view is as fast as later ones."""

from __future__ import annotations

import logging
import threading

from wattwise.store import Store
from wattwise.store.models import RunStatus

log = logging.getLogger(__name__)


def warm_run(store: Store, run_id: int) -> None:
    from wattwise.analysis.stats import run_stats
    from wattwise.web import api
    from wattwise.web.results import LazySeries, cached
    from wattwise.web.series import chart_series, run_metrics, run_version

    run = store.get_run(run_id)
    version = run_version(run)
    if version is None:
        return
    api.run_summary(store, run)
    lazy = LazySeries(store, run_id)
    cached(store, run, "stats", {}, lambda: [p.to_dict() for p in run_stats(store, run_id, series=lazy())])
    for metric in run_metrics(store, run_id):
        chart_series(store, metric, version, points=10)


class Warmer:
    """Every `interval_s`, warms the newest `newest` finished runs not warmed yet by this process."""

    def __init__(self, store: Store, *, interval_s: float = 10.0, newest: int = 5) -> None:
        self.store = store
        self.interval_s = interval_s
        self.newest = newest
        self.done: set[tuple[int, str]] = set()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="wattwise-cache-warmer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)

    def step(self) -> int:
        warmed = 0
        for run in self.store.list_runs(limit=self.newest * 4):
            if run.status == RunStatus.RUNNING:
                continue
            key = (run.id, str(run.ended_at))
            if key in self.done:
                continue
            try:
                warm_run(self.store, run.id)
            except Exception:  # a broken run must not stop the warmer; the page will show the error
                log.exception("cannot warm the caches of run %s", run.id)
            self.done.add(key)
            warmed += 1
            if warmed >= self.newest or self.stop_event.is_set():
                break
        return warmed

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.step()
            except Exception:
                log.exception("cache warmer")
            self.stop_event.wait(self.interval_s)
