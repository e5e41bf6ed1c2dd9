"""What the live planners share (:class:`StreamPlanner`): the queue of timed commands
that later messages may still change, the note rate limit and every note's outcome.

The piano's (:class:`~robo_player.live.planner.LivePlanner`) and the guitar's
(:class:`~robo_player.live.guitar.GuitarLivePlanner`) planners plan each message as it
arrives into this queue; :class:`~robo_player.live.session.LiveSession` hands the
device what is due (:meth:`StreamPlanner.due`) ``lead_us`` before its time, in time
order. A command still waiting can be cancelled (a panic, a note-off, an answer
stopped); one handed out is the device's.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any

from ..plan import Command, Op
from ..spec.schema import pitch_to_note
from .options import LiveOptions, LiveStats

__all__ = ["ORD", "StreamPlanner", "WaitingCommand"]

log = logging.getLogger(__name__)

INF_US = 1 << 62
# same-time order: releases first, then levels and moves, then strikes (Plan.sort's order)
ORD = {Op.RELEASE: 0, Op.SET: 1, Op.MOVE: 1, Op.PULSE_HOLD: 2}


class WaitingCommand:
    """A command in the queue (``state``: 0 waiting, 1 sent, -1 cancelled); ``strike``:
    it is the command that sounds note ``cmd.note`` (cancelling it cancels the note)."""

    __slots__ = ("cmd", "state", "strike")

    def __init__(self, cmd: Command, strike: bool = False) -> None:
        self.cmd = cmd
        self.state = 0
        self.strike = strike


class StreamPlanner:
    """The queue, the rate limit and the accounting of a live planner (see the module
    doc). Subclasses plan ``note_on``/``note_off``/``control`` into :meth:`_push`."""

    spec: Any
    _sounding: dict[int, Any]  # MIDI pitch -> the voice (a struck key, a picked note) it holds

    def __init__(self, options: LiveOptions) -> None:
        o = self.options = options
        self.stats = LiveStats()
        self._queue: list[tuple[int, int, int, int, WaitingCommand]] = []
        self._seq = itertools.count()
        self._floor = 0  # time of the last command handed out: nothing goes before it
        self._notes = itertools.count()
        self.last_note = -1  # the id of the latest note-on (Command.note of its strike)
        self._tokens = float(o.burst_notes)
        self._tokens_t = 0
        self.played: dict[int, tuple[int, int]] = {}  # note -> (velocity, latency µs)
        self._struck: dict[int, str] = {}  # note -> its outcome, while its strike waits

    def note_off(self, t_us: int, pitch: int) -> None:
        """A note-off arrived at ``t_us``: the note is let go (:meth:`_off`: at the
        note's own delay after it, its duration kept) once every note-on holding it has
        its note-off."""
        st = self.stats
        st.note_offs += 1
        v = self._sounding.get(pitch)
        if v is None or v.owners <= 0:
            st.offs_unmatched += 1
            return
        v.owners -= 1
        if v.owners == 0:
            del self._sounding[pitch]
            self._off(v, t_us)

    def finish(self, t_us: int) -> list[Command]:
        """The end: every note still held is let go; every waiting command, in order."""
        for v in {id(v): v for v in self._sounding.values()}.values():
            if v.owners > 0:
                v.owners = 0
                self._off(v, t_us)
        self._sounding.clear()
        return self.due(INF_US)

    def _off(self, voice: Any, t_us: int) -> None:
        """Let ``voice`` go at ``t_us`` (its note-off)."""
        raise NotImplementedError

    def not_before(self, t_us: int) -> None:
        """Nothing new is scheduled before ``t_us`` (the device's clock is already past
        the message's time, plus the lead)."""
        if t_us > self._floor:
            self._floor = t_us

    def next_due_us(self) -> int | None:
        """When the earliest waiting command must be handed to the device (its time less
        ``lead_us``); None when nothing waits."""
        q = self._queue
        while q and q[0][4].state != 0:
            heapq.heappop(q)
        return q[0][0] - self.options.lead_us if q else None

    def due(self, now_us: int) -> list[Command]:
        """The commands to hand to the device now (time order): those due within
        ``lead_us``; later messages can no longer change them."""
        out: list[Command] = []
        q, horizon = self._queue, now_us + self.options.lead_us
        while q and q[0][0] <= horizon:
            e = heapq.heappop(q)[4]
            if e.state == 0:
                e.state = 1
                out.append(e.cmd)
                if e.strike:
                    self._struck.pop(e.cmd.note, None)
        if out:
            self._floor = max(self._floor, out[-1].t_us)
        return out

    def pending(self) -> int:
        """Commands waiting (cancelled ones are dropped from the queue here)."""
        self._queue = [x for x in self._queue if x[4].state == 0]
        heapq.heapify(self._queue)
        return len(self._queue)

    def _push(self, cmd: Command, strike: bool = False) -> WaitingCommand:
        e = WaitingCommand(cmd, strike)
        seq = next(self._seq)
        if seq % 256 == 255:
            # a replanned release leaves its old entry in the heap until its time (up to
            # the max on-time away): drop them now and then, so the queue does not grow
            self.pending()
        heapq.heappush(self._queue, (cmd.t_us, ORD[cmd.op], cmd.actuator, seq, e))
        return e

    def _cancel_waiting(self) -> None:
        """Cancel every command still waiting (a panic); its strikes count ``cancelled``."""
        for *_, e in self._queue:
            if e.state == 0:
                e.state = -1
                if e.strike:
                    self.stats.outcomes["cancelled"] += 1
                    self._uncount(e.cmd.note)
        self._queue.clear()

    def _admit(self, t_us: int, pitch: int, velocity: int) -> tuple[int, int | None, str]:
        """A note-on arrived: counted and given its id. Returns (its id, the pitch or key
        it plays or None, and then its outcome: over the rate limit, out of range, or
        ``note_off``: velocity 0 is a note-off)."""
        if velocity == 0:
            self.note_off(t_us, pitch)
            return -1, None, "note_off"
        self.stats.notes_in += 1
        note = self.last_note = next(self._notes)
        if not self._take_token(t_us):
            return note, None, self._out(note, "dropped_rate", "over the note rate limit")
        key = self._key_of(pitch)
        if key is None:
            why = f"{pitch_to_note(pitch)} out of range"
            return note, None, self._out(note, "dropped_out_of_range", why)
        return note, key, ""

    def _key_of(self, pitch: int) -> int | None:
        """The key (pitch) that plays ``pitch``; None: out of range."""
        raise NotImplementedError

    def _take_token(self, t_us: int) -> bool:
        """The note rate limit: a token bucket of ``max_notes_per_s``, bursts of
        ``burst_notes``."""
        o = self.options
        if t_us > self._tokens_t:
            self._tokens = min(
                float(o.burst_notes),
                self._tokens + (t_us - self._tokens_t) * o.max_notes_per_s / 1e6,
            )
            self._tokens_t = t_us
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _uncount(self, note: int) -> None:
        """A cancelled strike is no longer on time or late."""
        k = self._struck.pop(note)
        self.stats.outcomes[k] -= 1
        if not self.stats.outcomes[k]:
            del self.stats.outcomes[k]

    def _out(self, note: int, outcome: str, why: str) -> str:
        self.stats.outcomes[outcome] += 1
        if why:
            log.debug("note %d: %s (%s)", note, outcome, why)
        return outcome
