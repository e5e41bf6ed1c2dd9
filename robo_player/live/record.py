"""``--record FILE.mid``: what arrived and what was played, each on its own track.

Track ``arrived``: every message as it came in, at the performance time it arrived.
Track ``played``: every note as the robot was told to sound it: a note-on at the
planned sound time (the strike plus its calibrated latency) with the player's velocity,
a note-off at the release, the pedal's level as CC64. Times are performance time at
0.1 ms resolution (tempo 1 s per beat, 10000 ticks per beat).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mido

from ..plan import CC_MAX, Op
from .family import AnyLivePlanner
from .guitar import GuitarLivePlanner
from .planner import LivePlanner
from .session import LiveSession

__all__ = ["TICKS_PER_BEAT", "write_record"]

TICKS_PER_BEAT = 10_000
TEMPO_US = 1_000_000  # one beat per second: one tick per 100 µs


def _track(name: str, timed: list[tuple[int, int, Any]]) -> mido.MidiTrack:
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("track_name", name=name, time=0))
    last = 0
    for t_us, _, msg in sorted(timed, key=lambda x: (x[0], x[1])):
        tick = max(0, round(t_us * TICKS_PER_BEAT / TEMPO_US))
        tr.append(msg.copy(time=max(0, tick - last)))
        last = max(last, tick)
    return tr


def write_record(path: str | Path, session: LiveSession, planner: AnyLivePlanner) -> None:
    """Write the session's two tracks to ``path`` (a type-1 MIDI file)."""
    arrived = [(t, i, m) for i, (t, m) in enumerate(session.inbox) if not m.is_meta]
    if isinstance(planner, GuitarLivePlanner):
        played = _guitar_played(session, planner)
    else:
        played = _piano_played(session, planner)
    mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    tempo = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0)])
    mf.tracks.extend([tempo, _track("arrived", arrived), _track("played", played)])
    mf.save(str(path))


def _guitar_played(session: LiveSession, planner: GuitarLivePlanner) -> list[tuple[int, int, Any]]:
    """A pick sounds its note (pick + latency); a damper ends it."""
    pickers = {st.picker.channel for st in planner.spec.strings}
    dampers = {st.damper.channel for st in planner.spec.strings}
    played: list[tuple[int, int, Any]] = []
    for i, c in enumerate(session.sent):
        p = planner.pitch_of.get(c.note)
        if p is None or c.op is not Op.PULSE_HOLD:
            continue
        if c.actuator in pickers and c.note in planner.played:
            vel, lat = planner.played[c.note]
            played.append((c.t_us + lat, i, mido.Message("note_on", note=p, velocity=vel)))
        elif c.actuator in dampers:
            played.append((c.t_us, i, mido.Message("note_off", note=p)))
    return played


def _piano_played(session: LiveSession, planner: LivePlanner) -> list[tuple[int, int, Any]]:
    """A strike sounds its note (strike + latency), a release ends it; the pedal."""
    spec = planner.spec
    pitch_of = {k.channel: k.pitch for k in spec.keys}
    pedal = spec.pedal.channel if spec.pedal is not None else None
    played: list[tuple[int, int, Any]] = []
    for i, c in enumerate(session.sent):
        if c.actuator in pitch_of:
            p = pitch_of[c.actuator]
            if c.op is Op.PULSE_HOLD and c.note in planner.played:
                vel, lat = planner.played[c.note]
                played.append((c.t_us + lat, i, mido.Message("note_on", note=p, velocity=vel)))
            elif c.op is Op.RELEASE:
                played.append((c.t_us, i, mido.Message("note_off", note=p)))
        elif c.actuator == pedal and c.op in (Op.SET, Op.RELEASE):
            pmax = spec.actuators[c.actuator].pwm_max
            value = round(c.drive * CC_MAX / pmax) if c.op is Op.SET else 0
            played.append((c.t_us, i, mido.Message("control_change", control=64, value=value)))
    return played
