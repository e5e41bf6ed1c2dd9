"""The streaming guitar and bass planner: each note given a string and a fret as it
arrives (``robo-player live --spec guitar-slider``).

The file planner (:mod:`robo_player.planner.guitar`) searches the whole piece for the
cheapest fingering; a live note comes with no future, so :class:`GuitarLivePlanner`
chooses greedily, looking back at what each string is doing: for every (string, fret)
that sounds the pitch it works out the earliest its picker can fire there, and takes
the one that sounds closest to the note's time, then the one that cuts no note the
player still holds, then the shortest carriage travel and the lowest fret.

Per string, one note at a time (the instrument's own rule), with the spec's timing:

- **the same fret** (or the open string again): the new pick takes over the ringing
  note (no damper), its presser kept down; picks on a string at least
  ``min_repeat_us`` apart;
- **from a pressed fret to another**: damper (``damp_us``), presser release
  (``release_us``), the carriage's move (padded by ``travel_margin``, then its settle),
  the fret pressed ``fret_settle_us`` before the pick -- one after the other; the old
  note rings at least ``min_sound_us``;
- **from an open string or a free one**: the carriage moves just in time (not before
  its presser is clear), the fret is pressed ``fret_settle_us`` before the pick.

A note ends at its note-off plus the note's own delay (its duration kept, at least
``min_sound_us``): its damper, then its presser let go; a note still pressed when the
presser's ``max_on_us`` runs out is ended then.

Latency modes as for the piano (:class:`~robo_player.live.options.LatencyMode`):
``fixed`` sounds every note ``D`` after its message, ``D`` covering the slowest
picker (calibrated, else the spec's nominal curve) at ``min_velocity`` and the
longest changeover on a string (damper, presser release, the longest carriage move and
its settle, the fret's settle) -- on a slider guitar the travel dominates; ``lowest``
sounds each note as soon as its string can.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..plan import Command, Op, Plan
from ..planner.guitar_checks import heat_overloads, supply_overloads
from ..planner.piano import _octave_shift
from ..spec.calibration import KeyCurve
from ..spec.guitar import GuitarSpec, Mechanism, carriage_move_us, damper_lift_us, press_position_mm
from ..spec.schema import pitch_to_note
from .options import LatencyMode, LiveOptions
from .stream import INF_US, StreamPlanner, WaitingCommand

__all__ = ["GuitarDelay", "GuitarLivePlanner"]

# the choice's weights (per ms of lateness; a held note cut; per ms of travel; per fret)
W_LATE, W_HELD, W_TRAVEL, W_FRET = 10.0, 200.0, 0.5, 0.5


@dataclass(frozen=True, slots=True)
class GuitarDelay:
    """What the default ``D`` is made of (µs)."""

    lead_us: int
    margin_us: int
    changeover_us: int  # damper + presser release (the note before on the string)
    travel_us: int  # the longest carriage move with its settle (0: matrix)
    settle_us: int  # the fret pressed this long before the pick
    pick_us: int  # the slowest picker at min_velocity
    # what the damper's lift takes past the release, travel, settle and pick (0 but for a
    # felt slower than them all: the spec's timing.damper_lift_us)
    lift_us: int = 0

    @property
    def total_us(self) -> int:
        return (self.lead_us + self.margin_us + self.changeover_us + self.travel_us
                + self.settle_us + self.pick_us + self.lift_us)  # fmt: skip

    def describe(self) -> str:
        parts = [("pick", self.pick_us), ("fret settle", self.settle_us),
                 ("carriage travel", self.travel_us), ("damper + release", self.changeover_us),
                 ("damper lift", self.lift_us), ("lead + margin", self.lead_us + self.margin_us)]  # fmt: skip
        return " + ".join(f"{name} {us / 1000:.1f}" for name, us in parts if us) + " ms"


class _Voice:
    """A picked note: where, when, who holds it, its planned end."""

    __slots__ = (
        "note", "string", "fret", "arrival", "pick", "sound", "latency", "delay", "owners",
        "press_act", "press_t", "damp", "rel", "end_t", "pick_entry", "velocity", "target",
        "pitch_in", "pitch", "entries", "undo", "delay_idx",
    )  # fmt: skip

    def __init__(
        self, note: int, string: int, fret: int, arrival: int, pick: int, lat: int
    ) -> None:
        self.note, self.string, self.fret, self.arrival = note, string, fret, arrival
        self.velocity = 64
        self.target: int | None = None  # when it should sound (None: lowest mode)
        self.pitch_in = self.pitch = 0  # the pitch that came in, the pitch it sounds
        self.entries: list[WaitingCommand] = []  # every command its placing planned
        self.undo: tuple | None = None  # the string (and the note before) before it  # type: ignore[type-arg]
        self.delay_idx = -1  # its entry in ``stats.delays_us``
        self.pick, self.latency = pick, lat
        self.sound = pick + lat
        self.delay = self.sound - arrival
        self.owners = 1
        self.press_act: int | None = None  # the presser / fret solenoid it holds down
        self.press_t = 0
        self.damp: WaitingCommand | None = None  # its planned damper
        self.rel: WaitingCommand | None = None  # its planned presser release
        self.end_t = INF_US  # when its damper goes
        self.pick_entry: WaitingCommand | None = None


class _String:
    __slots__ = ("car", "car_free", "last_pick", "voice", "moves", "car_sent")

    def __init__(self) -> None:
        self.moves: list[tuple[WaitingCommand, int]] = []  # moves not seen sent: (command, fret)
        self.car_sent = 0  # the fret of the last move seen handed out
        self.car = 0  # the fret its carriage is at, once the moves planned are done
        self.car_free = 0  # its carriage may leave from then (the presser is clear)
        self.last_pick = -INF_US
        self.voice: _Voice | None = None  # the last note picked on it

    def fold_moves(self) -> None:
        """Forget the moves handed out (their fret is ``car_sent``), keep the waiting."""
        for e, f in self.moves:
            if e.state == 1:
                self.car_sent = f
        self.moves = [m for m in self.moves if m[0].state == 0]


@dataclass(slots=True)
class _Way:
    """How a note could be played on one (string, fret)."""

    string: int
    fret: int
    pick: int
    kind: str  # "repick" | "change" | "fresh"
    damp_t: int | None  # the ringing note's damper (None: none planned here)
    move_t: int | None  # the carriage's move (None: no move)
    press_t: int | None  # the fret pressed (None: held already, or open)
    cost: float
    late: bool


class GuitarLivePlanner(StreamPlanner):
    """Plans MIDI messages one by one for a guitar or bass spec (see the module doc)."""

    def __init__(self, spec: GuitarSpec, calibration: object = None,
                 options: LiveOptions | None = None) -> None:  # fmt: skip
        if getattr(spec, "family", "") not in ("guitar", "bass"):
            raise UsageError(
                f"live: spec {spec.name!r} is of family {spec.family!r} (allowed: guitar, bass)"
            )
        super().__init__(options or LiveOptions())
        o = self.options
        self.spec = spec
        self.calibration = calibration
        t = self.timing = spec.timing
        amap = spec.actuators
        pickers = getattr(calibration, "pickers", None) or {}
        settle = getattr(calibration, "settle_us", None) or {}
        self.slider = spec.mechanism is Mechanism.SLIDER
        n = spec.nominal
        nominal = KeyCurve(
            0, n.threshold, n.drive, n.velocity, tuple(float(x) for x in n.latency_us)
        )
        # per string and velocity: the picker's drive (counts) and latency (µs)
        self._drive: list[list[int]] = []
        self._lat: list[list[int]] = []
        for s, st in enumerate(spec.strings):
            curve = pickers.get(s, nominal)
            pmax = amap[st.picker.channel].pwm_max
            ds = [curve.drive_for_velocity(float(max(1, v))) for v in range(128)]
            self._drive.append([max(1, round(d * pmax)) for d in ds])
            self._lat.append([round(curve.latency_at(d)) for d in ds])
        # a pick sounds this long after its string's damper goes off, at the soonest (the
        # felt's own lag: the spec's damper_lift_us, the file planner's figure too)
        self.lift_us = damper_lift_us(spec)
        # the fret pressed this long before the pick (the calibrated settle if longer)
        self.settle_us = max([t.fret_settle_us, *(int(v) for v in settle.values())])
        # carriage moves, µs (padded, with the carriage's settle), per string, fret to fret
        neck = spec.neck
        self._pos_mm = [press_position_mm(neck.scale_length_mm, f) for f in range(neck.frets + 1)]
        self._move: list[list[list[int]]] = []
        for st in spec.strings:
            c = st.carriage
            row = [[0] * (neck.frets + 1) for _ in range(neck.frets + 1)]
            if self.slider and c is not None:
                for a in range(neck.frets + 1):
                    for b in range(neck.frets + 1):
                        if a != b:
                            mv = carriage_move_us(c, abs(self._pos_mm[a] - self._pos_mm[b]))
                            row[a][b] = round(mv * (1.0 + t.travel_margin)) + c.settle_us
            self._move.append(row)
        self.slowest_us = max(self._lat[s][v] for s in range(len(spec.strings))
                              for v in range(o.min_velocity, 128))  # fmt: skip
        travel = max((max(map(max, m)) for m in self._move), default=0)
        rest = t.release_us + travel + self.settle_us + self.slowest_us  # after the damper
        self.delay_parts = GuitarDelay(
            o.lead_us, o.margin_us, t.damp_us + t.release_us, travel, self.settle_us,
            self.slowest_us, max(0, self.lift_us - rest),
        )  # fmt: skip
        self.latency_us = o.latency_us if o.latency_us is not None else self.delay_parts.total_us
        self._strings = [_String() for _ in spec.strings]
        self._sounding: dict[int, _Voice] = {}  # MIDI pitch -> the voice it holds
        self.pitch_of: dict[int, int] = {}  # note id -> the pitch it sounds
        self.fingering: dict[int, tuple[int, int]] = {}  # note id -> (string, fret)
        self.cuts = 0  # notes the player still held, cut for a new note on their string
        self.refingered = 0  # notes moved to another string for a later one (lookback)
        self.octave_moved = 0  # chord notes played an octave off: no string free in time
        self._capture: list[WaitingCommand] | None = None  # what _place pushes
        self.sent: list[Command] = []  # every command handed out (the shared rules' checks)

    @property
    def calibrated(self) -> bool:
        return bool(getattr(self.calibration, "pickers", None))

    def due(self, now_us: int) -> list[Command]:
        out = super().due(now_us)
        self.sent.extend(out)
        return out

    def supply_overloads(self) -> int:
        """Pulses handed out that overloaded the supply or ran past
        ``max_simultaneous_strikes`` (counted as the file planner counts them)."""
        return supply_overloads(self.spec, Plan(commands=self.sent))

    def heat_overloads(self) -> int:
        """Coils whose nominal temperature passed their limit (as the file planner)."""
        return heat_overloads(self.spec, Plan(commands=self.sent))

    # -- messages ------------------------------------------------------------------------

    def note_on(self, t_us: int, pitch: int, velocity: int, delay_us: int | None = None) -> str:
        """A note-on arrived at ``t_us``; returns its outcome (a key of ``outcomes``)."""
        note, q, refused = self._admit(t_us, pitch, velocity)
        if q is None:
            return refused
        st, o = self.stats, self.options
        earliest = max(t_us + o.lead_us, self._floor)
        target = None
        if delay_us is not None or o.mode is LatencyMode.FIXED:
            target = t_us + (self.latency_us if delay_us is None else delay_us)
        v = max(1, min(127, velocity))
        old = self._sounding.get(pitch)
        if (
            old is not None
            and old.owners > 0
            and old.pick_entry is not None
            and (old.pick_entry.state == 0 and abs(old.arrival - t_us) < self.timing.min_repeat_us)
        ):  # a unison (two voices of a chord on one pitch), or a repeat the string cannot make
            old.owners += 1
            return self._out(note, "merged", f"{pitch_to_note(pitch)} repeat too fast")
        w = self._best(q, v, earliest, t_us, target)
        if w.late and target is not None:
            w = self._lookback(q, v, earliest, t_us, target) or self._best(
                q, v, earliest, t_us, target
            )
        if w.late and target is not None and o.plan.out_of_range == "transpose":
            # a chord note with no string free in time: an octave off on a free one
            for q2 in (q - 12, q + 12):
                if self.spec.positions(q2):
                    w2 = self._best(q2, v, earliest, t_us, target)
                    if not w2.late:
                        w, q = w2, q2
                        self.octave_moved += 1
                        break
        nv = self._place(note, w, v, t_us, pitch, q, target)
        nv.delay_idx = len(st.delays_us)
        st.delays_us.append(nv.delay)
        outcome = self._struck[note] = "late" if w.late else "on_time"
        return self._out(note, outcome, "")

    def _off(self, v: _Voice, t_us: int) -> None:
        """Let ``v`` go at ``t_us``: its end the note's own delay later (at least its
        ``min_sound_us``), unless a later note on its string ended it already."""
        if t_us + self.options.lead_us < v.pick + self.timing.pick_pulse_us:
            self.stats.offs_in_flight += 1
        if self._strings[v.string].voice is v:
            e = max(t_us + v.delay, v.sound + self.timing.min_sound_us,
                    t_us + self.options.lead_us, self._floor)  # fmt: skip
            self._end(v, min(e, v.end_t))

    def control(self, t_us: int, number: int, value: int) -> None:
        if number in (120, 123):
            self.panic(t_us)
        elif number == 64:
            self.stats.pedal_events += 1
            self.stats.ignored["pedal (a guitar has none)"] += 1
        else:
            self.stats.ignored[f"control_change {number}"] += 1

    def panic(self, t_us: int) -> None:
        """CC 120/123: cancel what waits and switch every coil off in the next frame."""
        self.stats.panics += 1
        self._cancel_waiting()
        t = max(t_us + self.options.lead_us, self._floor)
        for s in self._strings:
            s.voice = None
            s.car_free = t + self.timing.release_us
            s.last_pick = min(s.last_pick, t)  # (a cancelled pick does not count)
            s.fold_moves()
            s.car = s.car_sent  # (the moves still waiting are cancelled)
            s.moves = []
        self._sounding.clear()
        for act in self.spec.actuators:
            if act.on_supply:  # a coil (a carriage stays where it is)
                self._push(Command(t, Op.RELEASE, act.index))

    def cancel_notes(self, t_us: int, notes: set[int]) -> int:
        """Silence the notes ``notes`` (ids): a pick not yet handed out is cancelled,
        a ringing one damped in the next frame. Returns how many picks were cancelled."""
        t = max(t_us + self.options.lead_us, self._floor)
        n = 0
        for s in self._strings:
            v = s.voice
            if v is None or v.note not in notes:
                continue
            if v.pick_entry is not None and v.pick_entry.state == 0:
                v.pick_entry.state = -1
                self.stats.outcomes["cancelled"] += 1
                self._uncount(v.note)
                n += 1
            self._end(v, max(t, min(v.end_t, v.sound + self.timing.min_sound_us)))
            v.owners = 0
        for p, v0 in list(self._sounding.items()):
            if v0.note in notes:
                del self._sounding[p]
        return n

    # -- internals -----------------------------------------------------------------------

    def _key_of(self, pitch: int) -> int | None:
        """The pitch played: ``pitch``, or moved by octaves into reach (``transpose``)."""
        if self.spec.positions(pitch):
            return pitch
        if self.options.plan.out_of_range != "transpose":
            return None
        sh = _octave_shift(pitch, self.spec.lowest, self.spec.highest)
        return None if sh is None or not self.spec.positions(pitch + sh) else pitch + sh

    def _best(self, q: int, v: int, earliest: int, t_us: int, target: int | None) -> _Way:
        ways = [self._way(s, f, v, earliest, t_us, target) for s, f in self.spec.positions(q)]
        return min(ways, key=lambda x: x.cost)

    def _lookback(self, q: int, v: int, earliest: int, t_us: int, target: int) -> _Way | None:
        """The note cannot be on time where it is free to go: move a recent note whose
        commands all still wait off a string where this one would be on time, if it is
        on time elsewhere (a chord's notes arrive one by one). The way for this note,
        or None (nothing moved)."""
        for s, f in self.spec.positions(q):
            r = self._strings[s].voice
            if r is None or not self._movable(r, earliest):
                continue
            self._unplace(r)
            if not self._way(s, f, v, earliest, t_us, target).late:
                alts = [self._way(s2, f2, r.velocity, earliest, r.arrival, r.target)
                        for s2, f2 in self.spec.positions(r.pitch) if s2 != s]  # fmt: skip
                alts = [a for a in alts if not a.late]
                if alts:
                    self._place(r.note, min(alts, key=lambda x: x.cost), r.velocity, r.arrival,
                                r.pitch_in, r.pitch, r.target, redo=r)  # fmt: skip
                    self.refingered += 1
                    return self._way(s, f, v, earliest, t_us, target)
            back = self._way(r.string, r.fret, r.velocity, earliest, r.arrival, r.target)
            self._place(r.note, back, r.velocity, r.arrival, r.pitch_in, r.pitch, r.target, redo=r)
        return None

    def _movable(self, r: _Voice, earliest: int) -> bool:
        """Whether ``r`` can be placed again: the latest note on its string, nothing of
        it (nor of the note before it that it changed) handed out or due before
        ``earliest``."""
        if self._strings[r.string].voice is not r or r.undo is None:
            return False
        mine = [e for e in (*r.entries, r.damp, r.rel, r.pick_entry) if e is not None]
        if any(e.state == 1 or (e.state == 0 and e.cmd.t_us < earliest) for e in mine):
            return False
        psnap = r.undo[6]
        if psnap is not None:
            for e in psnap[:2]:  # the note before: its planned end, cancelled, comes back
                if e is not None and e.state == -1 and e.cmd.t_us < earliest:
                    return False
        return True

    def _unplace(self, r: _Voice) -> None:
        """Undo the placing of ``r`` (see :meth:`_movable`): its commands cancelled, its
        string and the note before it as they were."""
        for e in (*r.entries, r.damp, r.rel, r.pick_entry):
            if e is not None and e.state == 0:
                e.state = -1
        assert r.undo is not None
        st = self._strings[r.string]
        st.car, st.car_free, st.last_pick, st.voice, st.moves, st.car_sent, psnap = r.undo
        prev = st.voice
        if prev is not None and psnap is not None:
            damp, rel, prev.end_t, prev.press_act, prev.press_t = psnap
            prev.damp = self._push(damp.cmd) if damp is not None and damp.state == -1 else damp
            prev.rel = self._push(rel.cmd) if rel is not None and rel.state == -1 else rel

    def _way(self, s: int, f: int, v: int, earliest: int, t_us: int, target: int | None) -> _Way:
        """The earliest way to pick fret ``f`` of string ``s``, and what it costs."""
        tm, st = self.timing, self._strings[s]
        r = st.voice
        lat = self._lat[s][v]
        p_min = max(earliest, st.last_pick + tm.min_repeat_us)
        damp_t = move_t = press_t = None
        held = False
        mv = 0
        pressed = r is not None and r.press_act is not None and _waiting(r.rel)
        if r is not None and r.fret == f and (f == 0 or pressed):
            kind = "repick"  # the new pick takes over the ringing note, its fret held on
            if r.damp is not None and r.damp.state == 1:  # its damper went: pick after it
                p_min = max(p_min, r.end_t + tm.damp_us + self.lift_us - lat)
        elif r is not None and r.fret > 0 and pressed:
            kind = "change"  # damper, presser release, move, press, pick
            held = r.owners > 0
            e = max(earliest, r.sound + tm.min_sound_us)
            if (r.damp is not None and r.damp.state == 1) or r.end_t <= e:
                e = r.end_t  # its damper as planned
            mv = self._move[s][st.car][f] if f > 0 else 0
            need = tm.damp_us + tm.release_us + (mv + self.settle_us if f > 0 else 0)
            # and it sounds once the damper's felt has lifted
            p_min = max(p_min, e + need, e + tm.damp_us + self.lift_us - lat)
            damp_t = e
        else:
            kind = "fresh"
            free = max(earliest, st.car_free)
            ringing_open = r is not None and r.fret == 0 and _waiting(r.damp)
            if r is not None and not ringing_open and r.end_t < INF_US:
                # its damper is planned: this note sounds after it lifts
                p_min = max(p_min, r.end_t + tm.damp_us + self.lift_us - lat)
            if f > 0:
                ready = free
                if self.slider and st.car != f:
                    mv = self._move[s][st.car][f]
                    move_t, ready = free, free + mv
                if r is not None and ringing_open:
                    # an open note still ringing: damped before the press
                    held = r.owners > 0
                    damp_t = min(r.end_t, max(earliest, r.sound + tm.min_sound_us))
                    ready = max(ready, damp_t + tm.damp_us)
                    p_min = max(p_min, damp_t + tm.damp_us + self.lift_us - lat)  # felt lifted
                p_min = max(p_min, ready + self.settle_us)
                press_t = p_min - self.settle_us
        pick = p_min if target is None else max(p_min, target - lat)
        late = target is not None and pick > target - lat
        # the preparations as late as the pick allows (a ringing note rings on)
        if kind == "change":
            assert damp_t is not None and r is not None
            latest = pick - (tm.damp_us + tm.release_us + (mv + self.settle_us if f > 0 else 0))
            latest = min(latest, pick + lat - tm.damp_us - self.lift_us)
            if not (r.damp is not None and r.damp.state == 1):
                damp_t = max(damp_t, min(r.end_t, latest))
        elif press_t is not None:
            press_t = pick - self.settle_us
            if move_t is not None:
                # the carriage leaves just in time: until then a later note may still
                # take this string (see _lookback) and the carriage goes elsewhere
                move_t = max(move_t, press_t - mv)
            if damp_t is not None and r is not None:
                damp_t = max(damp_t, min(r.end_t, press_t - tm.damp_us, pick + lat - tm.damp_us - self.lift_us))
        sound_late = (pick + lat - (t_us if target is None else target)) / 1000
        cost = W_LATE * sound_late + W_HELD * held + W_TRAVEL * mv / 1000 + W_FRET * f
        return _Way(s, f, pick, kind, damp_t, move_t, press_t, cost, late)

    def _place(self, note: int, w: _Way, v: int, t_us: int, pitch_in: int, pitch: int,
               target: int | None, redo: _Voice | None = None) -> _Voice:  # fmt: skip
        """Write the commands of way ``w`` for note ``note`` (``redo``: that note placed
        before, now undone: it keeps its holders and its end)."""
        self._capture = []
        tm, s, f = self.timing, w.string, w.fret
        st = self._strings[s]
        r = st.voice
        amap = self.spec.actuators
        nv = _Voice(note, s, f, t_us, w.pick, self._lat[s][v])
        nv.velocity, nv.target, nv.pitch_in, nv.pitch = v, target, pitch_in, pitch
        psnap = None if r is None else (r.damp, r.rel, r.end_t, r.press_act, r.press_t)
        nv.undo = (st.car, st.car_free, st.last_pick, r, list(st.moves), st.car_sent, psnap)
        if r is not None and r.owners > 0 and w.kind != "repick" and r.end_t > (w.damp_t or w.pick):
            self.cuts += 1
        if w.kind == "repick":
            assert r is not None
            # the new note holds the fret on; the ringing note's damper stays if it lifts
            # before the new note sounds, else the new pick takes over from it
            if r.rel is not None and r.rel.state == 0:
                r.rel.state = -1
            r.rel = None
            if (
                r.damp is not None
                and r.damp.state == 0
                and (r.end_t + tm.damp_us + self.lift_us > nv.sound)
            ):
                r.damp.state = -1
                r.damp, r.end_t = None, w.pick
            nv.press_act, nv.press_t = r.press_act, r.press_t
            r.press_act = None
        elif r is not None and w.damp_t is not None:
            self._end(r, w.damp_t)
        if w.kind == "change" and r is not None:
            clear = r.end_t + tm.damp_us + tm.release_us
            if f > 0 and self.slider and st.car != f:
                self._move_to(s, f, clear, note)
            st.car_free = clear
            if f > 0:
                self._press(nv, s, f, w.pick - self.settle_us, note)
        elif w.kind == "fresh" and f > 0:
            if w.move_t is not None:
                self._move_to(s, f, w.move_t, note)
            assert w.press_t is not None
            self._press(nv, s, f, w.press_t, note)
        ch = self.spec.strings[s].picker.channel
        nv.pick_entry = self._push(
            Command(w.pick, Op.PULSE_HOLD, ch, self._drive[s][v], tm.pick_pulse_us, 0, note),
            strike=True,
        )
        st.last_pick = w.pick
        st.voice = nv
        if nv.press_act is not None:
            # the presser's on-time limit ends the note at the latest
            lim = nv.press_t + amap[nv.press_act].max_on_us - tm.damp_us - 1
            self._end(nv, max(lim, nv.sound + tm.min_sound_us))
        if redo is None:
            old = self._sounding.get(pitch_in)
            if old is not None and old.owners > 0:
                old.owners = 0  # the same pitch again while held: the old one is let go now
                self._off(old, t_us)
            self._sounding[pitch_in] = nv
        else:
            nv.owners, nv.delay_idx = redo.owners, redo.delay_idx
            self.stats.delays_us[nv.delay_idx] = nv.delay
            if redo.owners > 0:
                self._sounding[pitch_in] = nv
            elif redo.end_t < INF_US:  # its note-off came: its end as planned then
                self._end(nv, min(nv.end_t, max(redo.end_t, nv.sound + tm.min_sound_us)))
        self.fingering[note] = (s, f)
        self.pitch_of[note] = pitch
        self.played[note] = (v, nv.latency)
        nv.entries, self._capture = self._capture, None
        return nv

    def _push(self, cmd: Command, strike: bool = False) -> WaitingCommand:
        e = super()._push(cmd, strike)
        if self._capture is not None:
            self._capture.append(e)
        return e

    def _move_to(self, s: int, f: int, t: int, note: int) -> None:
        c = self.spec.strings[s].carriage
        assert c is not None
        pos = round(self._pos_mm[f] / c.travel_mm * self.spec.actuators[c.channel].pwm_max)
        st = self._strings[s]
        st.fold_moves()
        st.moves.append((self._push(Command(t, Op.MOVE, c.channel, 0, 0, 0, note, pos)), f))
        st.car = f

    def _press(self, v: _Voice, s: int, f: int, t: int, note: int) -> None:
        st = self.spec.strings[s]
        ch = st.presser.channel if st.presser is not None else (st.fret_channels or ())[f - 1]
        act = self.spec.actuators[ch]
        self._push(Command(t, Op.PULSE_HOLD, ch, act.pwm_max, self.timing.press_pulse_us,
                           act.hold_counts, note))  # fmt: skip
        v.press_act, v.press_t = ch, t

    def _end(self, v: _Voice, e: int) -> None:
        """(Re)plan the end of ``v``: its damper at ``e``, its presser let go after it
        (a damper already handed out stays)."""
        if v.damp is not None:
            if v.damp.state == 1:
                return
            v.damp.state = -1
        if v.rel is not None and v.rel.state == 0:
            v.rel.state = -1
        tm = self.timing
        st = self.spec.strings[v.string]
        pmax = self.spec.actuators[st.damper.channel].pwm_max
        v.damp = self._push(
            Command(e, Op.PULSE_HOLD, st.damper.channel, pmax, tm.damp_us, 0, v.note)
        )
        v.end_t = e
        if v.press_act is not None:
            v.rel = self._push(Command(e + tm.damp_us, Op.RELEASE, v.press_act, note=v.note))
            s = self._strings[v.string]
            if s.voice is v:
                s.car_free = e + tm.damp_us + tm.release_us


def _waiting(e: WaitingCommand | None, none_ok: bool = True) -> bool:
    """A planned command not yet handed out (or none planned, with ``none_ok``)."""
    return none_ok if e is None else e.state == 0
