"""simavr's clock as the driver's clock: simulated seconds from the harness's cycle count."""

from __future__ import annotations

import logging
import mmap
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .mcu_process import FirmwareProcess, Incarnation

log = logging.getLogger(__name__)


class SimClock:
    """Simulated seconds, read from the simavr harness's shared cycle count.

    The harness stores its cycle count after every instruction in ``--clock-file``
    (``RPCK``, clock Hz u32, cycles u64). The driver's clock is that count / Hz: exactly
    the MCU's clock, however fast simavr happens to run (``--speed`` only caps it). If
    the count stops moving for ``stall_s`` wall seconds (the process died, is being
    restarted, or is starved of CPU), time goes on at ``speed`` per wall second so that
    the driver's timeouts still expire; when the count moves again (or a new run starts
    from 0) the clock continues from where it was, never backwards.
    """

    MAGIC = b"RPCK"

    def __init__(
        self,
        fw: FirmwareProcess,
        speed: float,
        stall_s: float = 2.0,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fw = fw
        self.speed = speed
        self.stall_s = stall_s
        self.wall = wall
        self._inc: Incarnation | None = None
        self._mm: mmap.mmap | None = None
        self._hz = 16_000_000
        self._cycles = 0  # last count read (of the current run)
        self._moved_wall = wall()  # wall time it last moved
        self._offset = 0.0  # s added to cycles / Hz (earlier runs, stalls)
        self._last = 0.0  # last time handed out
        self._stalled = False
        self.stalls = 0  # times the count stood still for stall_s

    def _map(self) -> mmap.mmap | None:
        inc = self.fw.runs[-1] if self.fw.runs else None
        if inc is not self._inc:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            self._inc = inc
            self._cycles = 0
            self._stalled = True  # a new run: continue from the last time handed out
        if self._mm is None and inc is not None and inc.clock_file is not None:
            try:
                with open(inc.clock_file, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 16, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None  # not written yet
            if mm[:4] != self.MAGIC:
                mm.close()
                return None
            self._hz = struct.unpack_from("<I", mm, 4)[0] or self._hz
            self._mm = mm
        return self._mm

    def _read(self) -> int | None:
        mm = self._map()
        if mm is None:
            return None
        a = struct.unpack_from("<Q", mm, 8)[0]
        b = struct.unpack_from("<Q", mm, 8)[0]
        # the harness stores the count atomically; a second read guards a torn one
        return b if 0 <= b - a < 1 << 31 else struct.unpack_from("<Q", mm, 8)[0]

    def __call__(self) -> float:
        w = self.wall()
        c = self._read()
        if c is not None and c != self._cycles:
            if self._stalled or c < self._cycles:
                self._offset = self._last - c / self._hz  # go on from where we were
                self._stalled = False
            self._cycles = c
            self._moved_wall = w
            t = c / self._hz + self._offset
        else:
            t = self._cycles / self._hz + self._offset
            idle = w - self._moved_wall
            if idle > self.stall_s:
                if not self._stalled:
                    self.stalls += 1
                    log.info("simavr's clock stood still for %.2f s of wall time", idle)
                self._stalled = True
                t = max(t, self._last) + (idle - self.stall_s) * self.speed
                self._moved_wall = w - self.stall_s  # extrapolate from here next time
        self._last = max(self._last, t)
        return self._last

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None

