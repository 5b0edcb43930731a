"""Network bytes from /proc/<pid>/net/dev (the network namespace of a process) or /proc/net/dev."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wattwise.providers.base import Availability, Kind, MetricSpec, Provider, ProviderError, Scope
from wattwise.providers.files import KernelFile


def read_net_dev(path: str | Path, include_loopback: bool = False, reader: KernelFile | None = None) -> tuple[int, int]:
    """Total (received, transmitted) bytes over the interfaces listed in a net/dev file."""
    by_interface = read_net_dev_by_interface(path, include_loopback, reader)
    return sum(rx for rx, _ in by_interface.values()), sum(tx for _, tx in by_interface.values())


def read_net_dev_by_interface(
    path: str | Path, include_loopback: bool = False, reader: KernelFile | None = None
) -> dict[str, tuple[int, int]]:
    """(received, transmitted) bytes per interface listed in a net/dev file."""
    path = Path(path)
    try:
        lines = (reader.read_text() if reader is not None else path.read_text()).splitlines()
    except OSError as exc:
        raise ProviderError(f"cannot read {path}: {exc.strerror}") from exc
    out: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        if ":" not in line:
            continue
        interface, data = line.split(":", 1)
        interface = interface.strip()
        if interface == "lo" and not include_loopback:
            continue
        fields = data.split()
        if len(fields) < 9:
            raise ProviderError(f"{path}:{number}: expected 16 counters after '{interface}:'")
        out[interface] = (int(fields[0]), int(fields[8]))
    return out


class NetworkProvider(Provider):
    """Bytes received and sent in one network namespace (a container's, or the machine's).

    Counted per interface and summed as increases, so the totals never go down: an interface that disappears
    (a container's network removed) keeps what it counted, one whose counters restart (removed and made again)
    counts from its new origin, and one that appears counts from zero."""

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
        self._last: dict[str, tuple[int, int]] = {}
        self._total = (0, 0)
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
        self._last = read_net_dev_by_interface(self._path, self.include_loopback)
        self._total = (0, 0)

    def specs(self) -> Sequence[MetricSpec]:
        return [
            MetricSpec("network_rx_b", "B", Kind.COUNTER, self.label, description="bytes received"),
            MetricSpec("network_tx_b", "B", Kind.COUNTER, self.label, description="bytes sent"),
        ]

    def read(self) -> Sequence[float | None]:
        try:
            now = read_net_dev_by_interface(self._path, self.include_loopback, self._file)
        except ProviderError:
            if self.pid:  # the namespace's process is gone: its counters stay where they were
                return [float(self._total[0]), float(self._total[1])]
            raise
        rx_total, tx_total = self._total
        for interface, (rx, tx) in now.items():
            last_rx, last_tx = self._last.get(interface, (0, 0))
            rx_total += rx - last_rx if rx >= last_rx else rx  # below the last value: restarted from 0
            tx_total += tx - last_tx if tx >= last_tx else tx
        self._last = now
        self._total = (rx_total, tx_total)
        return [float(rx_total), float(tx_total)]

    def close(self) -> None:
        self._file.close()
