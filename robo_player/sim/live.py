"""Hearing while the stream runs: the simulated side of the device's ``heard_so_far``.

A real microphone hears a note only after it sounds, and its detector decides a note
only once it has heard some audio after the onset (docs/hearing.md: the owner test's
window after an onset is 4096 samples, 85 ms at 48 kHz). So while a ``sim://`` stream
runs, a note is *heard* when the stream's performance time has passed its onset plus
the sensor's delay (``heard_delay_ms``, default 100 ms).

What it hears is what the piano did: the physics plays the output changes up to *now*
(what the device has been told to do by then, nothing later) on a fork of its state,
so a note heard live is the note the whole stream gives at its drain — the tests hold
the two equal. ``sim://`` passes the commands as its firmware limits play them
(:class:`~.limits.LiveLimits`: a refused strike left out, a cut coil released at its
cut), as its drain does. A strike's onset and loudness depend on what its coil did
during its pulse and on the supply during it (at most ``quiet_us`` after the strike),
which is why the delay must be at least that long: a note is then heard only once
everything that decides it has happened.

Replaying the whole stream at every question would cost O(n²); the ear keeps a
*checkpoint*: the physics' state after every output change up to a time ``T`` where no
strike's pulse is still running (no strike in ``(T - quiet_us, T]``), and the exact
notes of the strikes before ``T``. Each question replays only the changes after the
checkpoint, on a fork of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..actuation import OutputColumns, expand_commands
from ..performance import HeardNote
from ..plan import Command, Op
from .audio import MAX_RING_S, render_audio
from .physics import MAX_LATENCY_US, EventColumns, PianoPhysics, SoundedNotes
from .room import LiveTake, Renderer, Room

# Two heard onsets of one key closer than this are one note (two replays of the same
# strike may round its onset differently by a µs). Not 1 ms: a re-strike of a partly
# returned key can sound 1 ms after the note before it (hypothesis found 999 µs in
# tests/test_closed_loop.py's random streams, after session 14's fast repetition)
_SAME_NOTE_US = 50
# The room's live take (:meth:`LiveEar.audio_notes`) replays from a checkpoint this far
# before the audio it renders: a strike before it sounded by its latency after it and has
# rung out (the synthesis renders a note at most MAX_RING_S) before that audio begins.
AUDIO_REACH_US = int(MAX_RING_S * 1e6) + int(MAX_LATENCY_US) + 100_000


class LiveEar:
    """The notes a stream has sounded so far, from its commands (see the module doc).

    ``physics``: the instrument's physics at the stream's start (the ear forks it and
    never changes it); ``quiet_us``: the longest a strike's outcome takes to settle
    after its start (its pulse, the supply during it)."""

    def __init__(self, physics: PianoPhysics, pwm_max: Mapping[int, int] | None, quiet_us: int) -> None:
        self._ck = physics.fork()
        self._origin = physics.clock_us  # the stream's t_us = 0, absolute
        self._pwm_max = pwm_max or {}  # for :meth:`sounded` (commands to expand)
        self._quiet_us = int(quiet_us)
        self._ck_t = -1  # every output change at t_us <= this is in the checkpoint
        self._ck_i = 0  # ... and so are the stream's first _ck_i commands
        self._pending: list[tuple[int, int, float]] = []  # exact (t_us, pitch, velocity) not yet heard
        self._heard: dict[int, list[int]] = {}  # pitch -> onsets already heard (recent)
        self.replayed = 0  # output changes replayed (the cost, for the bench)
        # the checkpoints of the last AUDIO_REACH_US and more: (t, state, commands in it),
        # for the room's live take (:meth:`audio_notes`); kept only once a recording
        # asks for them (``recording``: a LiveRecording sets it), else the stream's start only
        self._history: list[tuple[int, PianoPhysics, int]] = [(self._ck_t, self._ck, 0)]
        self.recording = False

    def _run_out(self, physics: PianoPhysics, out: OutputColumns) -> tuple[SoundedNotes, bool]:
        """Play the output changes ``out`` on ``physics`` (in place) from the stream's
        origin; whether no coil failed after the last change (a fork's end is not the
        stream's)."""
        notes, ok, _ = self._run_full(physics, out)
        return notes, ok

    def _run_full(self, physics: PianoPhysics, out: OutputColumns) -> tuple[SoundedNotes, bool, list[tuple[int, int]]]:
        """:meth:`_run_out`, and the sensed pedal of the run (stream time)."""
        if not len(out):
            return SoundedNotes.empty(), True, []
        self.replayed += len(out)
        perf, notes = physics.run_columns(EventColumns.from_outputs(out))
        physics._origin_us = self._origin  # the run moved the clock on: put it back
        t_last = int(out.t_us[-1])
        ok = all(int(f["t_us"]) <= t_last for f in perf.coil_failures)  # type: ignore[call-overload]
        return notes, ok, list(perf.pedal)

    def _run(self, physics: PianoPhysics, cmds: Sequence[Command]) -> tuple[SoundedNotes, bool]:
        """:meth:`_run_out` on the expansion of ``cmds``."""
        if not cmds:
            return SoundedNotes.empty(), True
        return self._run_out(physics, expand_commands(cmds, self._pwm_max, checked=True))

    def _settled_time(self, starts: Sequence[int], settles: Sequence[int], now_us: int) -> int:
        """The latest ``T <= now_us`` after the checkpoint by which every strike that
        starts by ``T`` (``starts``, sorted, after the checkpoint) has settled
        (``settles``: running max of each one's settle time); -1 if none."""
        if not starts or settles[-1] <= now_us:
            return now_us
        for k in range(len(starts) - 1, 0, -1):
            if settles[k - 1] < starts[k]:
                return starts[k] - 1
        return starts[0] - 1 if self._ck_t < starts[0] - 1 else -1

    def _checkpoint_time(self, cmds: Sequence[Command], lo: int, hi: int, now_us: int) -> int:
        """The latest ``T <= now_us`` after the checkpoint by which every strike among
        ``cmds[lo:hi]`` (the commands after the checkpoint, up to now) that starts by ``T``
        has settled and has no output change left after ``T``; -1 if none."""
        starts: list[int] = []
        settles: list[int] = []
        for c in cmds[lo:hi]:
            if c.op is Op.PULSE_HOLD:
                starts.append(c.t_us)
                end = c.t_us + max(self._quiet_us, c.pulse_us)
                settles.append(max(end, settles[-1]) if settles else end)
        return self._settled_time(starts, settles, now_us)

    def _commit(self, fork: PianoPhysics, t_ck: int, notes: SoundedNotes) -> None:
        """``fork`` (played up to ``t_ck``) is the new checkpoint; ``notes``: its strikes'."""
        # onsets heard before the old checkpoint cannot come again (every note still
        # to come was struck after it)
        for seen in self._heard.values():
            seen[:] = [s for s in seen if s >= self._ck_t]
        self._ck, self._ck_t = fork, t_ck
        self._pending += zip(notes.t_us.tolist(), notes.pitch.tolist(), notes.velocity.tolist(), strict=True)

    def _advance(self, cmds: Sequence[Command], hi: int, now_us: int) -> None:
        """Move the checkpoint on as far as ``cmds[:hi]`` (played up to ``now_us``) allow."""
        t_ck = self._checkpoint_time(cmds, self._ck_i, hi, now_us)
        if t_ck > self._ck_t:
            j = bisect.bisect_right(cmds, t_ck, key=lambda c: c.t_us)
            fork = self._ck.fork()
            notes, ok = self._run(fork, cmds[self._ck_i : j])
            if ok:  # exact: every strike before t_ck has settled by then
                self._commit(fork, t_ck, notes)
                self._ck_i = j
                if self.recording:
                    self._history.append((t_ck, fork, j))

    def sounded(self, cmds: Sequence[Command], now_us: int, cut_us: int) -> SoundedNotes:
        """The notes not yet heard whose onset is at or before ``cut_us``, with the stream's
        commands ``cmds`` (sorted by time) played up to ``now_us`` (>= ``cut_us`` + quiet)."""
        hi = bisect.bisect_right(cmds, now_us, key=lambda c: c.t_us)
        self._advance(cmds, hi, now_us)
        # the strikes after the checkpoint: a throw-away replay, kept where settled
        notes, _ = self._run(self._ck.fork(), cmds[self._ck_i : hi])
        return self._collect(notes, cut_us)

    def audio_notes(
        self, cmds: Sequence[Command], now_us: int, from_us: int, cut_us: int,
    ) -> tuple[list[HeardNote], list[tuple[int, int]], list[int]]:
        """What the room needs to render the stream's sound from ``from_us`` to ``cut_us``
        (<= ``now_us`` - quiet), with ``cmds`` (sorted) played up to ``now_us``: the exact
        notes struck since a checkpoint at least :data:`AUDIO_REACH_US` before ``from_us``
        with onsets up to ``cut_us`` (each note's end where it is at or before
        ``cut_us``, else None: not damped yet), the sensed pedal and the clicks since then
        (stream time). The notes are the drain's: the same strikes played from the same
        state (the tests hold the live take equal to the drain's)."""
        hi = bisect.bisect_right(cmds, now_us, key=lambda c: c.t_us)
        self._advance(cmds, hi, now_us)
        state, i = self._audio_checkpoint(from_us)
        out = expand_commands(cmds[i:hi], self._pwm_max, checked=True) if i < hi else None
        return self._audio_replay(state, out, cut_us)

    def audio_notes_outputs(
        self, out: OutputColumns, now_us: int, from_us: int, cut_us: int,
    ) -> tuple[list[HeardNote], list[tuple[int, int]], list[int]]:
        """:meth:`audio_notes` from what the outputs did (a firmware's trace, performance
        time, sorted; changes after ``now_us`` are not looked at)."""
        hi = self._advance_outputs(out, now_us)
        state, i = self._audio_checkpoint(from_us)
        return self._audio_replay(state, _part(out, i, hi) if i < hi else None, cut_us)

    def _audio_checkpoint(self, from_us: int) -> tuple[PianoPhysics, int]:
        """The latest checkpoint at least :data:`AUDIO_REACH_US` before ``from_us``: its
        state and how many of the stream's commands (or output changes) it has played."""
        k = max(0, bisect.bisect_right(self._history, from_us - AUDIO_REACH_US, key=lambda h: h[0]) - 1)
        del self._history[:k]  # older checkpoints are never needed again (from_us only grows)
        _, state, i = self._history[0]
        return state, i

    def _audio_replay(
        self, state: PianoPhysics, out: OutputColumns | None, cut_us: int,
    ) -> tuple[list[HeardNote], list[tuple[int, int]], list[int]]:
        """Play ``out`` (the changes after the checkpoint ``state``) on a fork of it: the
        notes with onsets up to ``cut_us``, the pedal and the clicks (:meth:`audio_notes`)."""
        notes, pedal, clicks = SoundedNotes.empty(), [], []
        if out is not None:
            fork = state.fork()
            notes, _, pedal = self._run_full(fork, out)
            clicks = fork.clicks_us
        keep = notes.t_us <= cut_us
        end = np.where(notes.end_us <= cut_us, notes.end_us, np.inf)
        heard = SoundedNotes(notes.t_us[keep], notes.pitch[keep], notes.velocity[keep], end[keep]).to_heard()
        return heard, [p for p in pedal if p[0] <= cut_us], [c for c in clicks if c <= cut_us]

    def _advance_outputs(self, out: OutputColumns, now_us: int) -> int:
        """Move the checkpoint on as far as the output changes ``out`` up to ``now_us``
        allow; the number of changes up to ``now_us``."""
        t = out.t_us
        lo = int(np.searchsorted(t, self._ck_t, side="right"))
        hi = int(np.searchsorted(t, now_us, side="right"))
        # a change to a level > 0 may start a strike (conservative: holds and the pedal too)
        starts = t[lo:hi][out.level[lo:hi] > 0].tolist()
        settles = np.maximum.accumulate(np.asarray(starts, dtype=np.int64) + self._quiet_us).tolist() if starts else []
        t_ck = self._settled_time(starts, settles, now_us)
        if t_ck > self._ck_t:
            j = int(np.searchsorted(t, t_ck, side="right"))
            fork = self._ck.fork()
            notes, ok = self._run_out(fork, _part(out, lo, j))
            if ok:
                self._commit(fork, t_ck, notes)
                if self.recording:
                    self._history.append((t_ck, fork, j))
        return hi

    def sounded_outputs(self, out: OutputColumns, now_us: int, cut_us: int) -> SoundedNotes:
        """:meth:`sounded` from what the outputs did (a firmware's trace, performance
        time, sorted; changes after ``now_us`` are not looked at): the notes not yet heard
        whose onset is at or before ``cut_us`` (<= ``now_us`` - quiet)."""
        hi = self._advance_outputs(out, now_us)
        lo = int(np.searchsorted(out.t_us, self._ck_t, side="right"))
        notes, _ = self._run_out(self._ck.fork(), _part(out, lo, hi))
        return self._collect(notes, cut_us)

    def _collect(self, notes: SoundedNotes, cut_us: int) -> SoundedNotes:
        """The notes to hear now: the checkpoint's pending ones and ``notes`` (the
        throw-away replay's) with onsets up to ``cut_us``, each once."""
        cand = self._pending + [
            (t, p, v)
            for t, p, v in zip(notes.t_us.tolist(), notes.pitch.tolist(), notes.velocity.tolist(), strict=True)
            if t <= cut_us
        ]
        self._pending = [x for x in self._pending if x[0] > cut_us]
        new: list[tuple[int, int, float]] = []
        for t, p, v in sorted(cand):
            if t > cut_us:
                continue
            seen = self._heard.setdefault(p, [])
            if any(abs(t - s) < _SAME_NOTE_US for s in seen):
                continue
            seen.append(t)
            new.append((t, p, v))
        return SoundedNotes(
            t_us=np.array([x[0] for x in new], dtype=np.int64),
            pitch=np.array([x[1] for x in new], dtype=np.int64),
            velocity=np.array([x[2] for x in new], dtype=np.float64),
            end_us=np.full(len(new), np.inf),  # damping: not heard yet
        )


class LiveRecording:
    """One stream's recording by the room's microphone while it runs, as a sound card
    hands it over (the ``audio_so_far`` of ``sim://`` and of the simulated MCUs): the
    blocks of :class:`~.room.LiveTake` (take number ``take``: the one the drain renders)
    rendered from what ``ear`` says sounded, once every note sounding in them is decided
    (the stream's time past them by ``quiet_us``, the longest strike)."""

    def __init__(self, ear: LiveEar, room: Room, take: int, quiet_us: int, render: Renderer = render_audio) -> None:
        """``render``: the piano's voice the drain's take renders (sim/audio.py)."""
        self.ear = ear
        ear.recording = True  # its checkpoints from now on are kept for the replays
        self.take = LiveTake(room, take, render)
        self._quiet_us = int(quiet_us)

    def blocks(self, played: Sequence[Command] | OutputColumns, now_us: int) -> list[tuple[Any, float]]:
        """The new blocks, with the stream played up to ``now_us``: ``played`` its
        commands as its firmware's limits run them (sorted; ``sim://``) or the output
        changes its firmware made (a trace in performance time, sorted; ``vmcu://``, ...)."""
        cut = now_us - self._quiet_us
        from_us = int(self.take.t_us_of(self.take.samples_out)) - 1
        if isinstance(played, OutputColumns):
            notes, pedal, clicks = self.ear.audio_notes_outputs(played, now_us, from_us, cut)
        else:
            notes, pedal, clicks = self.ear.audio_notes(played, now_us, from_us, cut)
        return self.take.blocks(notes, pedal, clicks, cut)


def _part(out: OutputColumns, lo: int, hi: int) -> OutputColumns:
    return OutputColumns(out.t_us[lo:hi], out.actuator[lo:hi], out.level[lo:hi], out.pwm_max[lo:hi])


__all__ = ["LiveEar", "LiveRecording"]
