"""Power meters for measurement campaigns: anything with ``start()`` and ``stop() -> PowerTrace``.

:class:`SamplerMeter` measures with a wattwise `MeasurementSession` (each recording is a stored run, usable as
``run:ID``); :class:`FunctionMeter` polls a function returning watts (an external meter's API).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wattwise.errors import ConfigError
from wattwise.errors import ExperimentError as ExperimentError

__all__ = ["ExperimentError", "FunctionMeter", "Meter", "PowerTrace", "SamplerMeter"]


@dataclass
class PowerTrace:
    """Samples of a recording: sample i has ``power_w[i]`` from ``times_s[i]`` to the next sample."""

    times_s: np.ndarray
    power_w: np.ndarray
    source: str = ""
    run_id: int | None = None

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        if len(self.times_s) == 0:
            return 0.0
        edges = np.append(self.times_s, self.times_s[-1] + (self.times_s[-1] - self.times_s[-2]
                                                            if len(self.times_s) > 1 else 0.0))
        lo = np.clip(edges[:-1], t0_s, t1_s)
        hi = np.clip(edges[1:], t0_s, t1_s)
        return float(np.sum(self.power_w * (hi - lo)))

    def resample(self, start_s: float, end_s: float) -> np.ndarray:
        """Values on an even grid over [start_s, end_s) with as many points as samples in it (hold)."""
        inside = int(np.count_nonzero((self.times_s >= start_s) & (self.times_s < end_s)))
        n = max(inside, 1)
        grid = start_s + np.arange(n) * ((end_s - start_s) / n)
        index = np.clip(np.searchsorted(self.times_s, grid, side="right") - 1, 0, len(self.power_w) - 1)
        return self.power_w[index]


class Meter(Protocol):
    def start(self) -> None:
        """Begin recording power."""

    def stop(self, error: str | None = None) -> PowerTrace:
        """Stop and return what was recorded since start(); `error` says the recording failed."""


class FunctionMeter:
    """Polls ``read_w()`` every ``interval_s`` on a thread."""

    def __init__(self, read_w: Callable[[], float], interval_s: float = 0.1,
                 source: str = "function") -> None:
        if interval_s <= 0:
            raise ConfigError("meter interval must be above 0")
        self.read_w = read_w
        self.interval_s = interval_s
        self.source = source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._times: list[float] = []
        self._values: list[float] = []
        self._error: Exception | None = None

    def _loop(self) -> None:
        next_t = time.monotonic()
        while True:
            try:
                value = float(self.read_w())
            except Exception as exc:  # reported by stop()
                self._error = exc
                return
            self._times.append(time.time())
            self._values.append(value)
            next_t += self.interval_s
            if self._stop.wait(max(0.0, next_t - time.monotonic())):
                break

    def start(self) -> None:
        self._times, self._values, self._error = [], [], None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="wattwise-meter")
        self._thread.start()

    def stop(self, error: str | None = None) -> PowerTrace:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._error is not None:
            raise ExperimentError(f"the {self.source} meter failed: {self._error}") from self._error
        self._times.append(time.time())
        self._values.append(float(self.read_w()))
        return PowerTrace(np.array(self._times), np.array(self._values), self.source)


class SamplerMeter:
    """wattwise's machine providers (RAPL, IPMI, GPU, or the estimate) sampled into a store run per
    recording; the machine power is rebuilt from the stored series like for `model fit run:ID`."""

    def __init__(self, store: Any, name: str = "experiment", providers: list[str] | None = None,
                 interval_s: float = 0.1) -> None:
        self.store = store
        self.name = name
        self.providers = providers
        self.interval_s = interval_s
        self.run_id: int | None = None
        self._session: Any = None

    def start(self) -> None:
        from wattwise.measure.session import MeasurementSession, SessionOptions

        self._session = MeasurementSession(self.store, SessionOptions(
            name=self.name, kind="command", interval_s=self.interval_s, providers=self.providers,
            settings={"experiment": True},
        ))
        self.run_id = self._session.open()
        self._session.start()

    def stop(self, error: str | None = None) -> PowerTrace:
        """Stop sampling; the store run is marked failed (or interrupted on Ctrl-C) when `error` is given."""
        from wattwise.analysis.phases import load_series
        from wattwise.jobmodel.storerun import choose_power_series, power_on_grid

        assert self._session is not None and self.run_id is not None, "start() first"
        if error is None:
            self._session.finish("finished")
        else:
            self._session.finish("interrupted" if error == "interrupted" else "failed", error=error)
        source, chosen = choose_power_series(load_series(self.store, self.run_id))
        if not chosen:
            raise ExperimentError(f"run:{self.run_id}: the providers gave no power series ({source})")
        edges, power = power_on_grid(chosen)
        return PowerTrace(edges[:-1], power, source, self.run_id)
