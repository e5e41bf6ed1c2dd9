"""A tiny progress line on stderr for long work (no dependency)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """``Progress("calibrating")(fraction)`` redraws one line on stderr.

    On a terminal it redraws at most 10 times a second; otherwise it prints a line at
    each quarter so logs stay short. ``done()`` prints the final line and elapsed time.
    """

    def __init__(self, label: str, enabled: bool = True, stream=None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_quarter = -1

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and fraction < 1.0:
                return
            self._last_draw = now
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r{self.label:<14} [{bar:<30}] {fraction * 100:5.1f}%")
            self.stream.flush()
        else:
            q = int(fraction * 4)
            if q != self._last_quarter and q < 4:
                self._last_quarter = q
                self.stream.write(f"{self.label}: {fraction * 100:.0f}%\n")

    def done(self, note: str = "") -> None:
        if not self.enabled:
            return
        dt = time.monotonic() - self.start
        end = f" {note}" if note else ""
        if self.tty:
            self.stream.write(f"\r{self.label:<14} [{'#' * 30}] 100.0%  {dt:.1f}s{end}\n")
        else:
            self.stream.write(f"{self.label}: done in {dt:.1f}s{end}\n")
        self.stream.flush()


def null_progress(_: float) -> None:
    return None


ProgressFn = Callable[[float], None]
