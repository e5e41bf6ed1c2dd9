"""All project errors derive from :class:`RoboPlayerError`, split by phase.

Messages say what, where, the value and the allowed range, e.g.
``hardware_specs/piano.yaml: keys[12].channel: 70 is already used by keys[3]``.
"""

from __future__ import annotations


class RoboPlayerError(Exception):
    """Base of every error robo_player raises on purpose."""


class UsageError(RoboPlayerError, ValueError):
    """Bad command-line usage or option values (exit code 2)."""


class SpecError(RoboPlayerError, ValueError):
    """A hardware spec that does not load or does not validate."""


class CalibrationError(RoboPlayerError, ValueError):
    """A calibration file that is malformed or made for another spec."""


class HearingError(RoboPlayerError, ValueError):
    """A recording the detector cannot use (silent, clipped, another piece, an unsupported
    sample rate), or a sound card that is missing."""


class MidiFileError(RoboPlayerError, ValueError):
    """A MIDI file that is malformed, truncated or empty.

    ``path`` and ``offset`` (byte offset in the file, when known) locate the fault.
    """

    def __init__(self, message: str, path: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.path = path
        self.offset = offset


class PlanError(RoboPlayerError, ValueError):
    """A plan that cannot be made or read (e.g. a malformed plan.jsonl)."""


class TransportError(RoboPlayerError, OSError):
    """A port that cannot be opened or a link that fails."""


class DeviceTimeout(TransportError, TimeoutError):  # noqa: N818 - house name
    """The device stopped answering."""


class ProtocolError(RoboPlayerError):
    """A frame or message that breaks the wire protocol."""


class DeviceShutdown(RoboPlayerError):  # noqa: N818 - house name
    """The firmware shut down; ``reason`` carries its reason code."""

    def __init__(self, message: str, reason: int = 0):
        super().__init__(message)
        self.reason = reason


class ModelError(RoboPlayerError, ValueError):
    """A missing, corrupt or incompatible model checkpoint, or an impossible request."""


class OutputPathError(UsageError):
    """An output path that cannot be written as a file: a directory, a socket, `-` where
    standard output is not allowed."""


class OutputWriteError(RoboPlayerError, OSError):
    """An output that could not be written (a full disk, ``/dev/full``, no permission):
    the message names the path (exit code 1); ``errno`` and ``strerror`` are the
    operating system's."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
