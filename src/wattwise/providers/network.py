"""Network bytes from /proc/<pid>/net/dev (the network namespace of a process) or /proc/net/dev."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope
from wattwise.providers.files import KernelFile


def read_net_dev(path: str | Path, include_loopback: bool = False, reader: KernelFile | None = None) -> tuple[int, int]:
    """Total (received, transmitted) bytes over the interfaces listed in a net/dev file."""
    path = Path(path)
    try:
        lines = (reader.read_text() if reader is not None else path.read_text()).splitlines()
    except OSError as exc:
        raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
    rx = tx = 0
    for number, line in enumerate(lines[2:], start=3):
        if ":" not in line:
            continue
        interface, data = line.split(":", 1)
        if interface.strip() == "lo" and not include_loopback:
            continue
        fields = data.split()
        if len(fields) < 9:
            raise ProviderError(f"{path}:{number}: expected 16 counters after '{interface.strip()}:'")
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


class NetworkProvider(Provider):
    """Bytes received and sent in one network namespace (a container's, or the machine's)."""

    name = "network"
    description = "Network bytes received/sent per network namespace (/proc/<pid>/net/dev) or machine"
    metric_units = {"network_rx_b": "B", "network_tx_b": "B"}
    # byte counters are differenced at phase boundaries (where the sampler reads every provider), so a fast
    # interval adds cost and no accuracy
    default_interval_s = 1.0

    def __init__(
        self,
        pid: int | None = None,
        label: str = "machine",
        proc_root: str | Path = "/proc",
        include_loopback: bool = False,
    ) -> None:
        self.pid = pid
        self.label = label
        self.proc_root = Path(proc_root)
        self.include_loopback = include_loopback
        self._origin = (0, 0)
        self._last = (0, 0)
        self._path = self.proc_root / (f"{pid}/net/dev" if pid else "net/dev")
        self._file = KernelFile(self._path)

    @property
    def scope(self) -> Scope:  # type: ignore[override]
        return Scope.UNIT if self.pid else Scope.MACHINE

    def availability(self) -> Availability:
        try:
            read_net_dev(self._path)
        except ProviderError as exc:
            return Availability.no(str(exc))
        return Availability.yes(str(self._path))

    def open(self) -> None:
        self._origin = self._last = read_net_dev(self._path, self.include_loopback)

    def specs(self) -> Sequence[MetricSpec]:
        return [
            MetricSpec("network_rx_b", "B", Kind.COUNTER, self.label, description="bytes received"),
            MetricSpec("network_tx_b", "B", Kind.COUNTER, self.label, description="bytes sent"),
        ]

    def read(self) -> Sequence[float | None]:
        try:
            rx, tx = read_net_dev(self._path, self.include_loopback, self._file)
        except ProviderError:
            if self.pid:  # the namespace's process is gone: its counters stay where they were
                rx, tx = self._last
            else:
                raise
        self._last = (rx, tx)
        return [float(rx - self._origin[0]), float(tx - self._origin[1])]

    def close(self) -> None:
        self._file.close()
