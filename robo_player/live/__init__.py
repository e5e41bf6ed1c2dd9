"""Live: the robot as a MIDI instrument (``robo-player live``, ``docs/live.md``).

:mod:`.planner` plans each note as it arrives (fixed or lowest latency);
:mod:`.session` runs a stream of timed MIDI messages through it into a device
(``driver.ports``), in virtual time or in real time; :mod:`.inputs` opens MIDI inputs
(mido with python-rtmidi, or a MIDI file replayed as if a player sent it).
"""

from .planner import LatencyMode, LiveOptions, LivePlanner, LiveStats

__all__ = ["LatencyMode", "LiveOptions", "LivePlanner", "LiveStats"]
