"""The process provider on a fixture /proc tree (a command name with spaces and parentheses) and on itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wattwise.providers.base import ProviderError
from wattwise.providers.process import PAGE_SIZE, USER_HZ, ProcessProvider, read_process_cpu_s


def _stat_line(pid: int, utime: int, stime: int, cutime: int, cstime: int) -> str:
    # fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    return f"{pid} (my (odd) name) S 1 {pid} {pid} 0 -1 4194304 100 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 1 0"


def test_reads_cpu_ticks_and_memory_from_a_fixture_tree(tmp_path: Path) -> None:
    proc = tmp_path / "proc" / "4242"
    proc.mkdir(parents=True)
    (proc / "stat").write_text(_stat_line(4242, 100, 50, 10, 5))
    (proc / "statm").write_text("1000 250 100 10 0 200 0\n")
    provider = ProcessProvider(4242, label="job", proc_root=tmp_path / "proc")
    assert provider.availability().available
    provider.open()
    assert [s.name for s in provider.specs()] == ["process_cpu_time_s", "process_memory_b"]
    assert provider.read() == (0.0, 250 * PAGE_SIZE)
    (proc / "stat").write_text(_stat_line(4242, 100 + USER_HZ, 50 + USER_HZ, 10, 5 + USER_HZ))
    cpu_s, _ = provider.read()
    assert cpu_s == pytest.approx(3.0)  # one second each of user, system and waited-for children's system time


def test_malformed_or_missing_files_are_provider_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="malformed"):
        read_process_cpu_s("4242 (x) S 1 2")
    provider = ProcessProvider(99999999, proc_root=tmp_path)
    assert not provider.availability().available
    with pytest.raises(ProviderError, match="cannot read"):
        provider.open()


def test_own_process_cpu_time_grows_with_work() -> None:
    provider = ProcessProvider(os.getpid())
    provider.open()
    before, memory = provider.read()
    total = 0
    for i in range(300_000):
        total += i * i
    after, _ = provider.read()
    assert before is not None and after is not None and memory is not None and memory > 0
    assert after > before  # nanosecond clock: even a few milliseconds of work shows
