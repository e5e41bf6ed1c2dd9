"""The streaming piano planner: each note planned as its MIDI message arrives.

A file's planner (:mod:`robo_player.planner.piano`) knows the whole future; a live
player's notes arrive with none. :class:`LivePlanner` plans every message on arrival,
with the file planner's own pieces (not copies): the velocity -> drive mapping and the
key's calibrated latency (:class:`~robo_player.planner.Playability`), the key limits
(:class:`~robo_player.planner.Limits`: repeat gap, release floor, key return), the
supply budget (:func:`robo_player.planner.rules.supply_ledger`) and coil heat
(:class:`robo_player.planner.rules.CoilHeat`), the max on-time, CC64 -> pedal counts
(:func:`robo_player.plan.cc_to_counts`).

Times are performance time (µs, the device's ``now_us``): ``t_us`` of a message is when
it arrived. Nothing can be scheduled before ``t_us + lead_us`` (the host and link need
that long to get a command to the device). Latency modes (:class:`LatencyMode`):

- ``fixed``: every note sounds ``D = latency_us`` after its message, whatever its
  velocity: the strike goes ``D - latency(velocity)`` after the message. ``D``
  defaults to the slowest calibrated latency over the velocities in use
  (``min_velocity..127``, every key) plus ``lead_us + margin_us``. A note whose strike
  would fall before ``t + lead_us`` is struck then (as early as possible) and counted
  ``late``.
- ``lowest``: every strike goes at ``t + lead_us``; loud notes sound sooner.

Commands wait in a queue until ``lead_us`` before their time (:meth:`LivePlanner.due`),
so a later message can still move them (a note-off while the strike is in flight, a
repeat that merges, a panic that cancels) and the device receives them in time order.
Every note that arrives ends in exactly one of :attr:`LiveStats.outcomes`.
"""

from __future__ import annotations

import logging

from ..errors import UsageError
from ..plan import Command, Op, cc_to_counts
from ..planner import rules
from ..planner.constraints import Playability, heat_after, pitch_name
from ..planner.piano import _octave_shift, _wait_for_supply
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from .options import LatencyMode, LiveOptions, LiveStats
from .stream import INF_US as _INF
from .stream import StreamPlanner
from .stream import WaitingCommand as _Entry

__all__ = ["LatencyMode", "LiveOptions", "LivePlanner", "LiveStats"]

log = logging.getLogger(__name__)

RELIEF_GUARD_US = 200  # a strike waiting for a pulse end goes this long after it


class _Voice:
    """A struck key: its strike, its planned release, who holds it."""

    __slots__ = (
        "note", "key", "arrival", "strike", "latency", "delay", "limit_rel", "rel",
        "owners", "item", "strike_entry", "hold", "rel_t", "settled",
    )  # fmt: skip

    def __init__(self, note: int, key: int, arrival: int, strike: int, latency: int) -> None:
        self.note = note
        self.key = key
        self.arrival = arrival  # message time
        self.strike = strike
        self.latency = latency
        self.delay = strike + latency - arrival  # sound - message
        self.limit_rel = _INF  # latest release (max on-time, heat)
        self.rel: _Entry | None = None  # the planned release
        self.owners = 1  # note-ons (the merged repeats too) not yet released
        self.item: list[float] | None = None  # its supply ledger entry
        self.strike_entry: _Entry | None = None
        self.hold = 0
        self.rel_t = _INF  # planned release time
        self.settled = False  # its hold's heat is in the coil's CoilHeat


class LivePlanner(StreamPlanner):
    """Plans MIDI messages one by one for a piano spec (see the module doc)."""

    def __init__(
        self,
        spec: PianoSpec,
        calibration: Calibration | None = None,
        options: LiveOptions | None = None,
    ) -> None:
        if getattr(spec, "family", "piano") != "piano":
            raise UsageError(
                f"live: spec {spec.name!r} is of family {spec.family!r} (allowed: piano)"
            )
        super().__init__(options or LiveOptions())
        self.spec = spec
        o = self.options
        self.oracle = Playability(spec, calibration, o.plan)
        self.limits = self.oracle.limits
        self.ledger = rules.supply_ledger(spec.actuators, self.limits.pulse_us)
        self.heat = rules.CoilHeat(spec.actuators, o.plan.thermal_margin)
        self.slowest_us = self.slowest_latency_us(o.min_velocity)
        default_d = self.slowest_us + o.lead_us + o.margin_us
        self.latency_us = o.latency_us if o.latency_us is not None else default_d
        self._voices: dict[int, _Voice] = {}  # key -> its latest voice
        self._sounding: dict[int, _Voice] = {}  # MIDI pitch -> voice it holds
        if spec.pedal is not None:
            self._pedal_ch = spec.pedal.channel
            self._pedal_max = spec.actuators[spec.pedal.channel].pwm_max
            lat = self.oracle.calibration.pedal_latency_us
            self._pedal_lat = lat if lat is not None else spec.pedal.latency_us

    @property
    def calibrated(self) -> bool:
        return bool(self.oracle.calibration.measured)

    def supply_overloads(self) -> int:
        """Strikes that had to go while the supply was overloaded (they waited as long
        as ``supply_wait_us`` allows)."""
        return self.stats.supply_overloads

    # -- what D is -----------------------------------------------------------------------

    def slowest_latency_us(self, min_velocity: int) -> int:
        """The slowest calibrated strike latency (µs) over every key and the velocities
        ``min_velocity..127`` (the drive the file planner would choose)."""
        worst = 0
        for k in self.spec.keys:
            for v in range(min_velocity, 128):
                lat = self.oracle.drive(k.pitch, v).latency_us
                if lat > worst:
                    worst = lat
        return worst

    # -- messages ------------------------------------------------------------------------

    def note_on(self, t_us: int, pitch: int, velocity: int, delay_us: int | None = None) -> str:
        """A note-on arrived at ``t_us``; returns its outcome (a key of ``outcomes``).
        ``delay_us``: sound it this long after ``t_us`` whatever the mode (an answer
        of call and response, planned ahead like a file's note); its note-off keeps it."""
        note, key, refused = self._admit(t_us, pitch, velocity)
        if key is None:
            return refused
        st = self.stats
        o, lim = self.options, self.limits
        klim = self.oracle.limits_for(key)
        earliest = max(t_us + o.lead_us, self._floor)
        dc = self.oracle.drive(key, velocity)
        lat = dc.latency_us
        late = False
        if delay_us is not None or o.mode is LatencyMode.FIXED:
            s = t_us + (self.latency_us if delay_us is None else delay_us) - lat
            if s < earliest:
                s, late = earliest, True
        else:
            s = earliest
        prev = self._voices.get(key)
        if prev is not None:
            held = prev.owners > 0 or (prev.rel is not None and prev.rel.state == 0)
            if held and s - prev.strike < klim.repeat_gap_us:
                # faster than the key repeats: the key stays down for this note too
                if prev.owners == 0:
                    self._release(prev, prev.limit_rel)  # until this note's note-off
                prev.owners += 1
                self._sounding[pitch] = prev
                return self._out(note, "merged", f"{pitch_name(key)} repeat too fast")
            # the previous note on the key lets go in time for the key to return
            cap = klim.latest_release_us(s)
            if prev.rel_t > cap and prev.rel is not None and prev.rel.state == 0:
                self._release(prev, max(cap, prev.strike + lim.pulse_us, self._floor))
                if prev.owners > 0:
                    for p, v0 in list(self._sounding.items()):
                        if v0 is prev:
                            del self._sounding[p]  # its note-off will find nothing to do
                    prev.owners = 0
            gap = max(
                prev.strike + klim.repeat_gap_us,
                prev.rel_t + klim.key_return_us + klim.release_margin_us,
            )
            if s < gap:
                s, late = gap, late or o.mode is LatencyMode.FIXED
            if not prev.settled:
                # the hold heated the coil until its release (once: CoilHeat runs in order)
                prev.settled = True
                self.heat.run(
                    self.spec.key(key).channel,
                    prev.strike + lim.pulse_us,
                    max(prev.rel_t, prev.strike + lim.pulse_us),
                    prev.hold,
                )
        # supply budget
        ch = self.spec.key(key).channel
        pwm_max = self.spec.key(key).pwm_max
        a, h = self.oracle.amps(dc.counts, pwm_max)
        self.ledger.advance(earliest)
        if not self.ledger.fits(s, a, h):
            s2 = _wait_for_supply(self.ledger, s, a, h, o.plan.supply_wait_us)
            if s2 is None:
                s2 = _wait_for_supply(self.ledger, s, a, h, None)
                st.supply_overloads += 1
            assert s2 is not None
            if s2 > s:
                # it waited for a pulse to end: keep clear of that instant, which the link's
                # clock conversion may put a tick either side (the firmware then refuses)
                s2 += RELIEF_GUARD_US
            st.supply_waits += s2 > s
            late = late or (s2 > s and o.mode is LatencyMode.FIXED)
            s = s2
        # coil heat
        act = self.spec.actuators[ch]
        temp = heat_after(
            self.heat.temp_at(ch, s),
            lim.pulse_us,
            rules.heat_rate(act, dc.counts / pwm_max),
            act.tau_s * 1e6,
        )
        if temp > self.heat.limit_k(ch):
            return self._out(note, "dropped_heat", f"coil heat on {pitch_name(key)}")
        self.heat.run(ch, s, s + lim.pulse_us, dc.counts)
        v = _Voice(note, key, t_us, s, lat)
        v.hold = round(lim.hold_duty * act.pwm_max)
        v.item = self.ledger.add(s, a, h)
        cut = self.heat.time_to_limit_us(ch, s + lim.pulse_us, v.hold)
        v.limit_rel = s + lim.max_on_us
        if cut is not None:
            v.limit_rel = min(v.limit_rel, s + lim.pulse_us + cut)
        v.strike_entry = self._push(
            Command(s, Op.PULSE_HOLD, ch, dc.counts, lim.pulse_us, v.hold, note), strike=True
        )
        self._release(v, v.limit_rel)  # until a note-off comes
        self._voices[key] = v
        self._sounding[pitch] = v
        st.delays_us.append(v.delay)
        self.played[note] = (velocity, lat)
        outcome = self._struck[note] = "late" if late else "on_time"
        return self._out(note, outcome, "")

    def _off(self, v: _Voice, t_us: int) -> None:
        lim = self.limits
        if t_us + self.options.lead_us < v.strike + lim.pulse_us:
            self.stats.offs_in_flight += 1
        floor = v.strike + lim.release_floor_us(v.latency, max(0, t_us - v.arrival))
        rel = max(t_us + v.delay, floor, t_us + self.options.lead_us, self._floor)
        self._release(v, min(rel, v.limit_rel))

    def pedal(self, t_us: int, value: int) -> None:
        """CC64 at ``t_us``: the pedal's level in counts, sounding with the notes' delay."""
        self.stats.pedal_events += 1
        if self.spec.pedal is None:
            self.stats.ignored["pedal (the spec has none)"] += 1
            return
        earliest = max(t_us + self.options.lead_us, self._floor)
        t = earliest
        if self.options.mode is LatencyMode.FIXED:
            t = max(earliest, t_us + self.latency_us - self._pedal_lat)
        self._push(Command(t, Op.SET, self._pedal_ch, cc_to_counts(value, self._pedal_max)))

    def panic(self, t_us: int) -> None:
        """CC 120/123: cancel what waits and switch every output off in the next frame."""
        self.stats.panics += 1
        self._cancel_waiting()
        t = max(t_us + self.options.lead_us, self._floor)
        for key, v in list(self._voices.items()):
            if v.strike_entry is not None and v.strike_entry.state == -1:
                del self._voices[key]  # never struck
                continue
            if v.rel is not None and v.rel.state == 0:
                v.rel_t = t
                if v.item is not None:
                    self.ledger.set_release(v.item, t)
            v.owners = 0
            v.rel = None
        self._sounding.clear()
        for act in self.spec.actuators:
            self._push(Command(t, Op.RELEASE, act.index))

    def cancel_notes(self, t_us: int, notes: set[int]) -> int:
        """Silence the notes ``notes`` (ids, :attr:`last_note`) at once: a strike not yet
        handed out is cancelled (counted ``cancelled``), a key already struck is released
        in the next frame, or at the end of its strike pulse if that is later (a cut
        pulse is a softer, later strike). Returns how many strikes were cancelled."""
        t = max(t_us + self.options.lead_us, self._floor)
        n = 0
        for key, v in list(self._voices.items()):
            if v.note not in notes:
                continue
            if v.strike_entry is not None and v.strike_entry.state == 0:
                v.strike_entry.state = -1
                self.stats.outcomes["cancelled"] += 1
                self._uncount(v.note)
                if v.rel is not None and v.rel.state == 0:
                    v.rel.state = -1
                if v.item is not None and v.item in self.ledger.pulsing:
                    self.ledger.pulsing.remove(v.item)  # its current is never drawn
                del self._voices[key]
                n += 1
            elif v.rel is not None and v.rel.state == 0 and v.rel_t > t:
                # never cut a strike's pulse: a cut pulse is a softer strike, and a
                # softer strike is a slower one (it would sound later, not never)
                self._release(v, min(v.rel_t, max(t, v.strike + self.limits.pulse_us)))
            v.owners = 0
            for p, v0 in list(self._sounding.items()):
                if v0 is v:
                    del self._sounding[p]
        return n

    def control(self, t_us: int, number: int, value: int) -> None:
        if number == 64:
            self.pedal(t_us, value)
        elif number in (120, 123):
            self.panic(t_us)
        else:
            self.stats.ignored[f"control_change {number}"] += 1

    # -- internals -----------------------------------------------------------------------

    def _key_of(self, pitch: int) -> int | None:
        lo, hi = self.spec.lowest, self.spec.highest
        if lo <= pitch <= hi and self.spec.has_pitch(pitch):
            return pitch
        if self.options.plan.out_of_range != "transpose":
            return None
        sh = _octave_shift(pitch, lo, hi)
        return None if sh is None else pitch + sh

    def _release(self, v: _Voice, t: int) -> None:
        """(Re)plan the release of ``v`` at ``t`` (a release already sent stays)."""
        if v.rel is not None:
            if v.rel.state == 1:
                return
            v.rel.state = -1
        ch = self.spec.key(v.key).channel
        v.rel = self._push(Command(t, Op.RELEASE, ch, note=v.note))
        v.rel_t = t
        if v.item is not None:
            self.ledger.set_release(v.item, t)
