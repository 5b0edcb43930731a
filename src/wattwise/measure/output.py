"""Reading what a measured process prints, line by line, while it runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO

MAX_LOG_CHARS = 2_000_000  # per stream and command; the rest is counted, not stored


class StreamCapture(threading.Thread):
    """Reads one pipe to its end: keeps the text (up to MAX_LOG_CHARS) and hands every line on.

    With `echo` (or `echo_prefix`, which echoes to stderr) every line is also written through as it comes."""

    def __init__(
        self,
        stream: IO[bytes],
        on_line: Callable[[str], None] | None = None,
        echo_prefix: str | None = None,
        echo: IO[str] | None = None,
    ) -> None:
        super().__init__(daemon=True, name="wattwise-output")
        self.stream = stream
        self.on_line = on_line
        self.echo_prefix = echo_prefix
        self.echo = echo
        self.chunks: list[str] = []
        self.size = 0
        self.dropped = 0

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace")
            if self.echo_prefix is not None or self.echo is not None:
                target = self.echo or sys.stderr
                try:
                    target.write(f"{self.echo_prefix or ''}{line}")
                    target.flush()
                except (BrokenPipeError, OSError, ValueError):  # the reader went away (`| head`): keep draining
                    self.echo = self.echo_prefix = None
            if self.size < MAX_LOG_CHARS:
                self.chunks.append(line)
                self.size += len(line)
            else:
                self.dropped += len(line)
            if self.on_line is not None:
                self.on_line(line)
        self.stream.close()

    @property
    def text(self) -> str:
        text = "".join(self.chunks)
        if self.dropped:
            text += f"\n[wattwise: {self.dropped} more characters not stored]\n"
        return text
