"""Where a device's firmware runs, and what listens to its outputs.

A :class:`Backend` starts the firmware (a real board behind a serial port, or a
simulated MCU that :mod:`robo_player.sim` provides), hands the driver a transport, a
reset hook and a clock, and afterwards the firmware's actuation trace where there is
one. An :class:`Instrument` turns what the outputs did into what was heard: a real
instrument has a microphone (none yet); the simulated one is
:class:`robo_player.sim.instrument.SimulatedInstrument`. The driver knows both only
through these interfaces: it never imports the simulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..actuation import OutputColumns
from ..performance import Performance
from .trace import Trace
from .transport import Transport

Now = Callable[[], float]
StartResult = tuple[Transport, Callable[[], None] | None, Now]


class Instrument(Protocol):
    """What an instrument does with its actuators' output changes."""

    def hear(self, outputs: OutputColumns) -> Performance:
        """Play ``outputs`` (performance time, levels in counts) and report what its
        sensor heard, coil temperatures and failures. Each call continues one session
        at the instrument (coils keep their heat)."""
        ...

    def energised(self) -> list[int]: ...

    # Optional: ``hear_so_far(outputs, now_us) -> list[HeardNote]``: while a stream runs,
    # the notes not heard yet that its sensor hears by ``now_us`` from the output changes
    # so far (the device's ``heard_so_far``; the simulated piano has it);
    # ``audio_rate`` and ``audio_so_far(outputs, now_us) -> [(samples, capture µs)] | None``:
    # its microphone's new blocks from the output changes final up to ``now_us`` (the
    # device's ``audio_so_far``; the simulated piano's room).


class Backend:
    """Where the firmware runs: starts it, gives its transport, collects its trace."""

    # the trace says only on/off for direct pins (simavr's AVR build): their levels
    # come from the commands that played
    binary_direct_pins = False
    # live hearing (a trace read while the firmware runs) reads it up to this long
    # before the stream's now: what the firmware was due to do by then has been done
    # and traced (vmcu://: at once; a process's trace file: flushed by its next loop)
    live_margin_us = 20_000

    @property
    def runs(self) -> int:
        """Firmware runs so far (a reset starts another)."""
        return 1

    def start(self) -> StartResult:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the firmware (its outputs go off) so that the trace is complete."""

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        return None

    def live_trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        """The trace while the firmware runs, for live hearing: its changes only grow from
        one call to the next (a backend may hand back the same object, extended);
        default :meth:`trace`."""
        return self.trace(out_map)

    def extra(self) -> dict[str, Any]:
        """Backend-specific report fields (``Performance.extra``)."""
        return {}

    def failure(self) -> str | None:
        """What died, when the firmware's process or port is gone (None: nothing known)."""
        return None

    def cleanup(self) -> None:
        """Remove what start() made."""


class SerialBackend(Backend):
    """Real firmware behind ``serial://``, ``socket://``, ``rfc2217://`` or ``loop://``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> StartResult:
        from .transport import open_transport

        parts = urlsplit(self.url)
        keep = {k: v for k, v in parse_qsl(parts.query) if k == "baud"}
        url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if keep:
            url += "?" + urlencode(keep)
        return open_transport(url), None, time.perf_counter


__all__ = ["Backend", "Instrument", "SerialBackend", "StartResult"]
