"""Keep-alives from a thread that nothing else blocks.

The firmware goes all-off when no valid frame arrives for ``watchdog_ms``. The stream
loop feeds it as it goes, but anything that holds the loop up (the next chunk being
planned, a slow progress callback, a report being built between streams, the garbage
collector) would let the watchdog end a performance that was fine. :class:`KeepAlive`
sends the 6-byte keep-alive frame from its own thread whenever nothing has gone out for
``keepalive_s``; it takes the session's transmit lock for each frame only, and never
waits on the stream loop.

Safety is unchanged: a process that is gone takes the thread with it (the firmware's
watchdog fires ``watchdog_ms`` later, plays out what is queued for at most
``watchdog_drain_ms`` and goes all-off), and the firmware's max on-time cuts any coil
the queue left on, whatever the host does.

Only for devices on real time (a real port, the host build): a device on virtual time
(``vmcu://``) advances only when the stream loop reads, so a thread has nothing to do.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..errors import TransportError

if TYPE_CHECKING:
    from .stream import Session

log = logging.getLogger(__name__)


class KeepAlive:
    """Feeds ``session``'s device watchdog from a daemon thread until :meth:`stop`."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.period_s = session.cfg.keepalive_s
        self._stop = threading.Event()
        self.sent = 0  # keep-alives this thread sent
        self.max_gap_s = 0.0  # longest the line was quiet while the thread watched it
        self._thread = threading.Thread(target=self._run, name="robo-keepalive", daemon=True)

    def start(self) -> KeepAlive:
        self._thread.start()
        return self

    def _run(self) -> None:
        s = self.s
        while not self._stop.wait(self.period_s / 2):
            try:
                # look without the lock (the stream loop is the usual writer: it must
                # never wait on this thread), take it only to send
                if not (s.link.synced and s._last_tx >= 0):
                    continue
                quiet = s.now() - s._last_tx
                self.max_gap_s = max(self.max_gap_s, quiet)
                if quiet < self.period_s - 1e-6:
                    continue
                with s.tx_lock:
                    now = s.now()
                    if s.tr.is_open and now - s._last_tx >= self.period_s - 1e-6:
                        s.tr.write(s.link.keepalive(now))
                        s._last_tx = now
                        self.sent += 1
            except (TransportError, OSError) as err:
                log.debug("keep-alive thread stops: %s", err)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)





# The watchdog window when the spec names none (thermal.watchdog_ms; the shipped piano
# specs say the same): chosen from the host pauses bench/bench_watchdog.py measured
# beside a process keeping both cores busy (docs/driver.md, "Watchdog window"): the line
# to the device went quiet for up to 262 ms even with the keep-alive thread (the whole
# host process descheduled), and 90 ms tripped the watchdog in 3 plays of 3; 300 ms
# tripped it in none. A longer window costs safety only when the host is really gone:
# every output is off at most this long after that (and the firmware's max on-time
# cuts any coil regardless).
DEFAULT_WATCHDOG_MS = 300

# After the watchdog fires, the queue already on the MCU plays out for at most this long
# (thermal.watchdog_drain_ms; docs/protocol.md "Watchdog"), then all off: with the
# driver's default lead (1 s of music queued ahead at most) and the 300 ms window, what
# a host that died had sent still plays, and every output is off at most
# 300 + 700 = 1000 ms after its last frame.
DEFAULT_WATCHDOG_DRAIN_MS = 700


def _thermal_int(spec: object, name: str) -> int | None:
    v = getattr(getattr(spec, "thermal", None), name, None)
    return None if v is None else int(v)


def watchdog_ms_for(spec: object) -> int:
    """The watchdog window for ``spec``: its ``thermal.watchdog_ms``, else the default."""
    return _thermal_int(spec, "watchdog_ms") or DEFAULT_WATCHDOG_MS


def watchdog_drain_ms_for(spec: object) -> int:
    """The watchdog's drain for ``spec``: its ``thermal.watchdog_drain_ms`` (0 allowed),
    else the default."""
    v = _thermal_int(spec, "watchdog_drain_ms")
    return DEFAULT_WATCHDOG_DRAIN_MS if v is None else v


__all__ = [
    "DEFAULT_WATCHDOG_DRAIN_MS",
    "DEFAULT_WATCHDOG_MS",
    "KeepAlive",
    "watchdog_drain_ms_for",
    "watchdog_ms_for",
]
