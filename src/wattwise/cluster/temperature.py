"""The temperature gate before each job: a measurement starts only near the machine's base temperature.

Each try reads the temperature once (hwmon or ``sensors -j``, chip and feature patterns from the
configuration, the hottest matching sensor counts):

- above the base temperature: cool down (wait ``cooldown_wait_s``) and try again;
- more than ``warmup_margin_c`` below it: warm up (``warmup_command``, or a busy loop on every CPU for
  ``warmup_s``) and try again;
- otherwise the gate opens.

After ``max_tries`` tries the gate gives up; the client then leaves the jobs queued, records why and tries
again on its next round.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from wattwise.cluster.config import TemperatureSettings
from wattwise.providers.base import ProviderError
from wattwise.providers.temperature import read_temperature_c

#: (status "cooldown" | "warmup" | "ok", temperature_c, message)
Report = Callable[[str, float | None, str], None]

_BUSY_LOOP = (
    "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
)


@dataclass
class GateResult:
    ok: bool
    temperature_c: float | None
    tries: int
    message: str


def read_gate_temperature(settings: TemperatureSettings) -> float:
    return read_temperature_c(
        settings.chip,
        settings.feature,
        source=settings.source,
        hwmon_root=settings.hwmon_root,
        sensors_command=settings.sensors_command,
    )


def busy_warmup(seconds: float, command: list[str] | None = None) -> None:
    """Warm the machine: the configured command, or one busy-looping process per CPU."""
    if seconds <= 0 and command is None:
        return
    if command is not None:
        subprocess.run(command, check=False, timeout=max(seconds, 1) * 10 + 60)
        return
    processes = [
        subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(seconds)]) for _ in range(os.cpu_count() or 1)
    ]
    for process in processes:
        process.wait()


class TemperatureGate:
    def __init__(
        self,
        settings: TemperatureSettings,
        *,
        read: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        warm: Callable[[float], None] | None = None,
        report: Report | None = None,
    ) -> None:
        self.settings = settings
        self.read = read or (lambda: read_gate_temperature(settings))
        self.sleep = sleep
        self.warm = warm or (lambda s: busy_warmup(s, settings.warmup_command))
        self.report = report or (lambda status, temperature, message: None)

    def check(self, base_c: float) -> GateResult:
        settings = self.settings
        low_c = base_c - settings.warmup_margin_c
        temperature: float | None = None
        last = ""
        for attempt in range(1, settings.max_tries + 1):
            try:
                temperature = self.read()
            except ProviderError as exc:
                return GateResult(False, None, attempt, f"cannot read the temperature: {exc}")
            if temperature > base_c:
                last = (
                    f"{temperature:.1f}°C is above the base temperature {base_c:.1f}°C: cooling down "
                    f"{settings.cooldown_wait_s:g}s (try {attempt}/{settings.max_tries})"
                )
                self.report("cooldown", temperature, last)
                if attempt < settings.max_tries:
                    self.sleep(settings.cooldown_wait_s)
                continue
            if temperature < low_c:
                last = (
                    f"{temperature:.1f}°C is more than {settings.warmup_margin_c:g}°C below the base "
                    f"temperature {base_c:.1f}°C: warming up {settings.warmup_s:g}s "
                    f"(try {attempt}/{settings.max_tries})"
                )
                self.report("warmup", temperature, last)
                if attempt < settings.max_tries:
                    self.warm(settings.warmup_s)
                continue
            message = f"{temperature:.1f}°C is within [{low_c:.1f}, {base_c:.1f}]°C"
            self.report("ok", temperature, message)
            return GateResult(True, temperature, attempt, message)
        where = "above" if temperature is not None and temperature > base_c else "below"
        return GateResult(
            False,
            temperature,
            settings.max_tries,
            f"gave up after {settings.max_tries} tries: {temperature:.1f}°C still {where} the range "
            f"[{low_c:.1f}, {base_c:.1f}]°C",
        )
