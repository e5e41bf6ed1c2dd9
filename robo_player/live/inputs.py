"""MIDI inputs for live: ports through mido with python-rtmidi, or a file replayed.

- ``NAME``: an existing input port (``robo-player ports`` lists them);
- ``virtual=True``: a virtual port that DAWs and sequencers can play (not on Windows:
  use a loopback driver such as loopMIDI there and open its port by name);
- ``file:PATH.mid``: the file replayed in real time as if a player sent it
  (:class:`FileInput`; :func:`file_events` gives its messages with their times for
  virtual-time runs).

The traps are named, not met as stack traces: a container without ALSA's sequencer
(``/dev/snd/seq``), python-rtmidi not installed, an unknown port name (the error lists
the ports there are).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MidiFileError, TransportError

__all__ = [
    "DEFAULT_VIRTUAL_NAME",
    "FileInput",
    "MidiPortError",
    "PortInput",
    "file_events",
    "list_inputs",
    "open_input",
]

DEFAULT_VIRTUAL_NAME = "robo-player"
FILE_PREFIX = "file:"
ALSA_SEQ = "/dev/snd/seq"


class MidiPortError(TransportError):
    """A MIDI input that cannot be opened or listed (the message says what to do)."""


def _backend_error(err: BaseException) -> MidiPortError:
    """Turn what rtmidi/mido raise into a message that says what is missing."""
    if isinstance(err, ImportError):
        return MidiPortError(
            "MIDI ports need python-rtmidi: pip install 'robo_player[live]' "
            f"(or pip install python-rtmidi) ({err})"
        )
    if sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQ):
        return MidiPortError(
            f"no ALSA sequencer: {ALSA_SEQ} does not exist (in a container: run it with "
            f"--device /dev/snd, or load the snd-seq module on the host; or replay a file "
            f"with --midi-in file:SONG.mid) ({type(err).__name__}: {err})"
        )
    return MidiPortError(f"MIDI backend failed: {type(err).__name__}: {err}")


def _mido(ports: bool = True) -> Any:
    if ports and sys.platform.startswith("linux") and not os.path.exists(ALSA_SEQ):
        # say it before rtmidi does (ALSA's own message goes to stderr, then a SystemError)
        raise _backend_error(RuntimeError(f"{ALSA_SEQ} is missing"))
    try:
        import mido
    except ImportError as err:  # pragma: no cover - mido is a dependency
        raise _backend_error(err) from err
    return mido


def list_inputs(backend: Any = None) -> list[str]:
    """Names of the MIDI input ports (``backend``: mido or a mido Backend; tests pass
    a fake)."""
    b = backend or _mido()
    try:
        return list(b.get_input_names())
    except Exception as err:  # rtmidi raises its own SystemError/RuntimeError kinds
        raise _backend_error(err) from err


def open_input(
    name: str | None,
    *,
    virtual: bool = False,
    backend: Any = None,
    platform: str = sys.platform,
) -> Any:
    """Open the input ``name`` (an object with ``poll()`` and ``close()``).

    ``file:PATH`` replays a MIDI file in real time. ``virtual``: create a port called
    ``name`` (default ``robo-player``) that other programs can play."""
    if name and name.startswith(FILE_PREFIX):
        return FileInput(name[len(FILE_PREFIX) :])
    b = backend or _mido()
    if virtual:
        if platform.startswith("win"):
            raise MidiPortError(
                "virtual MIDI ports do not exist on Windows: install a loopback driver "
                "(loopMIDI), create a port there, and open it with --midi-in NAME"
            )
        try:
            return PortInput(
                lambda cb: b.open_input(name or DEFAULT_VIRTUAL_NAME, virtual=True, callback=cb)
            )
        except Exception as err:
            raise _backend_error(err) from err
    names = list_inputs(b)
    if not name:
        if not names:
            raise MidiPortError(
                "no MIDI input ports (connect a keyboard, or use --virtual NAME, "
                "or replay a file with --midi-in file:SONG.mid)"
            )
        name = names[0]
    if name not in names:
        # a unique prefix is accepted (rtmidi appends client:port numbers)
        matches = [n for n in names if n.startswith(name)]
        if len(matches) != 1:
            listed = ", ".join(repr(n) for n in names) or "none"
            raise MidiPortError(f"--midi-in {name!r}: no such MIDI input (available: {listed})")
        name = matches[0]
    try:
        return PortInput(lambda cb: b.open_input(name, callback=cb))
    except Exception as err:
        raise _backend_error(err) from err


def file_events(path: str | Path) -> list[tuple[float, Any]]:
    """The channel messages of a MIDI file with their times (s from its start)."""
    mido = _mido(ports=False)
    try:
        mf = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as err:
        raise MidiFileError(f"{path}: not a readable MIDI file ({err})", str(path)) from err
    out: list[tuple[float, Any]] = []
    t = 0.0
    for msg in mf:  # merged tracks, msg.time = seconds since the previous message
        t += msg.time
        if not msg.is_meta:
            out.append((t, msg))
    return out


class FileInput:
    """A MIDI file replayed in real time as if it were a port: :meth:`poll` returns each
    message once its time (from the first poll) has come."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.perf_counter) -> None:
        self.name = f"{FILE_PREFIX}{path}"
        self.events = file_events(path)
        self._clock = clock
        self._t0: float | None = None
        self._i = 0
        self.closed = False
        self.arrived_at: float | None = None  # clock time the last message was due

    @property
    def done(self) -> bool:
        return self._i >= len(self.events)

    def poll(self) -> Any:
        if self._t0 is None:
            self._t0 = self._clock()
        if self._i < len(self.events) and self.events[self._i][0] <= self._clock() - self._t0:
            self.arrived_at = self._t0 + self.events[self._i][0]
            self._i += 1
            return self.events[self._i - 1][1]
        return None

    def wait(self, timeout_s: float) -> None:
        """Sleep until the next message is due, at most ``timeout_s``."""
        if self._t0 is not None and self._i < len(self.events):
            due = self._t0 + self.events[self._i][0] - self._clock()
            timeout_s = min(timeout_s, max(0.0, due))
        if timeout_s > 0:
            time.sleep(timeout_s)

    def close(self) -> None:
        self.closed = True


class PortInput:
    """A MIDI port opened with a callback: each message is stamped as it comes in
    (``time.perf_counter``) and wakes :meth:`wait` at once, so the live loop never
    sleeps through a message (rtmidi's own time stamps are not used)."""

    def __init__(self, open_port: Callable[[Callable[[Any], None]], Any]) -> None:
        self._q: deque[tuple[float, Any]] = deque()
        self._ev = threading.Event()
        self.port = open_port(self._on_message)
        self.name = getattr(self.port, "name", "?")
        self.arrived_at: float | None = None

    def _on_message(self, msg: Any) -> None:  # rtmidi's thread
        self._q.append((time.perf_counter(), msg))
        self._ev.set()

    def poll(self) -> Any:
        if not self._q:
            self._ev.clear()
            if not self._q:  # nothing came between the test and the clear
                if getattr(self.port, "closed", False):
                    raise OSError(f"MIDI input {self.name!r} was closed")
                return None
        self.arrived_at, msg = self._q.popleft()
        return msg

    def wait(self, timeout_s: float) -> bool:
        """Wait until a message comes (True) or ``timeout_s`` passes (False)."""
        return self._ev.wait(timeout_s)

    def close(self) -> None:
        self.port.close()
