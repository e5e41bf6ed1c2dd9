"""The closed loop for warm coils (issue 11 §4, docs/hearing.md "Closed loop").

A coil warms as it plays; its resistance rises (copper: +0.39 %/K), so its key strikes
later and softer than the calibration says. While playing with a sensor, the loop
compares what it hears with what the plan meant and corrects each key, within **one
continuous stream**, as a performance must be played:

- every ``step_us`` of the stream's performance time the loop wakes: it listens
  (``device.heard_so_far()``: the notes heard up to now, each some time after it
  sounded), pairs the new ones with the intended notes (the one matcher,
  :func:`robo_player.report.match_heard`), updates each key's correction, submits the
  commands due within ``lead_us`` from now, and lets the stream run on (``advance``);
- a note's correction is fixed when its first command joins the look-ahead pool
  (``lead_us + max_latency_us`` ahead), so all its commands move together and a
  command is never submitted before one already sent; commands not yet submitted are
  the only ones a correction can change;
- per key (pitch): a latency correction (µs; the key's commands move that much
  earlier) and a drive gain (a strike's level is multiplied by ``1 + gain``, up to the
  key's full level). Each heard note gives an estimate of what its key needs, taking
  off the correction it was played with (the loop is late by the lead and the
  sensor's delay: integrating the bare error would count one error many times); the
  correction moves toward it by ``rate`` (an EWMA), bounded by ``max_latency_us`` and
  ``max_drive``; every change is logged (:class:`Correction`).

The open-loop figure of the bench plays the very same stream with the corrections held
at zero (``rate=0``).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import TransportError
from ..performance import HeardNote, Performance
from ..plan import Command, Op, Plan
from ..report import match_heard
from ..spec.calibration import Calibration
from .ear_thread import lag_summary

log = logging.getLogger(__name__)


class _Device(Protocol):
    url: str

    def submit(self, commands: Sequence[Command]) -> None: ...
    def advance(self, until_t_us: int) -> None: ...
    def heard_so_far(self) -> list[HeardNote] | None: ...
    def drain(self) -> Any: ...


class Ear(Protocol):
    """What hears the stream where not the device's own sensor: the live audio ear
    (:class:`~.live_audio.AudioEar`). ``click``: the sync click's output ``(actuator,
    level, pulse µs, delay µs)`` the stream begins with, or None."""

    click: tuple[int, int, int, int] | None

    def expect(self, key: int, t_us: float, pitch: int, velocity: float) -> None: ...
    def heard_so_far(self, final: bool = False) -> list[HeardNote]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...  # ends its thread, if it has one (the loop calls it on every exit)


FORGET_US = 2_000_000  # a note not heard this long after its time is not coming

# with an ear that clicks: the plan starts at least this late in the stream, after the
# sync click's pattern (0..780 ms) at its start
CLICK_LEAD_US = 1_000_000


@dataclass(frozen=True, slots=True)
class _Target:
    """A planned note as the loop judges it (the outcome, in stream time)."""

    index: int
    fate: Any
    target_t_us: int
    strike_t_us: int | None
    pitch_out: int
    velocity_target: float


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Bounds and speed of the loop."""

    # weight of a new estimate in each key's correction (0: open loop). 0.25, not 0.5
    # (session 13): each estimate carries one strike's own spread, and a slower EWMA
    # passes less of it on while still following the coils' warming (bench_closed_loop
    # --minutes 10, seed 1: p99 2.10 -> 1.76 ms with the spread, 0.78 -> 0.69 ms without)
    rate: float = 0.25
    max_latency_us: float = 10_000.0  # |latency correction| <= this
    max_drive: float = 0.20  # |drive gain| <= this (±20 % of the planned level)
    lead_us: int = 250_000  # commands are submitted this far ahead of their time
    step_us: int = 50_000  # the loop listens, corrects and submits this often
    # For a noisy ear (the live audio ear: the detector times a strike in a loud chord to
    # ~2 ms, with a bias of its own per key and context): a common correction of every key
    # (weight ``common_rate`` per heard note) beside each key's own (``rate``), each key's
    # estimates taken relative to its own first ``baseline_notes`` (cold coils: the
    # calibration holds, what is left there is the ear's bias), and an estimate whose
    # innovation clipped to ``gate_us`` / ``gate_gain`` (0: not clipped). The defaults
    # are the note-level sensor's loop (none of these), :data:`AUDIO_SETTINGS` the audio ear's.
    common_rate: float = 0.0
    baseline_notes: int = 0
    gate_us: float = 0.0
    gate_gain: float = 0.0
    gain_rate: float | None = None  # each key's drive gain (None: ``rate``)
    common_gain_rate: float | None = None  # the common drive gain (None: ``common_rate``)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"closed loop: rate {self.rate} out of range (allowed: 0..1)")
        if not 0.0 <= self.max_latency_us <= 50_000.0:
            raise ValueError(f"closed loop: max_latency_us {self.max_latency_us} (allowed: 0..50000)")
        if not 0.0 <= self.max_drive <= 0.5:
            raise ValueError(f"closed loop: max_drive {self.max_drive} (allowed: 0..0.5)")
        if not 10_000 <= self.lead_us <= 10_000_000:
            raise ValueError(f"closed loop: lead_us {self.lead_us} (allowed: 10000..10000000)")
        if not 1_000 <= self.step_us <= self.lead_us:
            raise ValueError(f"closed loop: step_us {self.step_us} (allowed: 1000..lead_us {self.lead_us})")
        if not 0.0 <= self.common_rate <= 1.0:
            raise ValueError(f"closed loop: common_rate {self.common_rate} out of range (allowed: 0..1)")
        if not 0 <= self.baseline_notes <= 100:
            raise ValueError(f"closed loop: baseline_notes {self.baseline_notes} (allowed: 0..100)")
        for name in ("gain_rate", "common_gain_rate"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"closed loop: {name} {v} out of range (allowed: 0..1)")
        if self.gate_us < 0 or self.gate_gain < 0:
            raise ValueError(f"closed loop: gate_us {self.gate_us}, gate_gain {self.gate_gain} (allowed: >= 0)")


@dataclass(frozen=True, slots=True)
class Correction:
    """One logged change of one key's correction, made at performance time ``t_us``."""

    t_us: int
    pitch: int
    latency_us: float  # the new latency correction (commands this much earlier)
    drive_gain: float  # the new drive gain (level × (1 + gain))
    onset_err_us: float  # the heard-minus-intended onset error of the note that moved it
    velocity_ratio: float  # intended / heard velocity of that note


@dataclass
class LoopResult:
    """What the loop heard (the stream's drain) and did."""

    heard: list[HeardNote] = field(default_factory=list)
    latency_us: dict[int, float] = field(default_factory=dict)  # pitch -> final correction
    drive_gain: dict[int, float] = field(default_factory=dict)
    log: list[Correction] = field(default_factory=list)
    steps: int = 0  # times the loop listened
    heard_live: int = 0  # notes heard while the stream ran
    used: int = 0  # ... paired with an intended note and used
    max_coil_temp_ratio: float = 0.0  # the hottest coil, as a fraction of its allowed rise
    performance: Performance | None = None  # the stream's drain
    ear: dict[str, Any] = field(default_factory=dict)  # the live audio ear's figures (None: the device's sensor)
    shift_us: int = 0  # the plan was played this much later in the stream (after the click pattern)
    # how far the stream's time had run past each step's when the loop came to submit (p95,
    # max ms; devices that keep the stream's time): on a wall-clock port, the loop's lateness
    behind: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The corrections, for ``--write-back`` (pitch -> latency µs, drive gain)."""
        pitches = sorted(set(self.latency_us) | set(self.drive_gain))
        return {
            "format": "robo_player.closed_loop",
            "version": 1,
            "keys": [
                {
                    "pitch": p,
                    "latency_us": round(self.latency_us.get(p, 0.0), 1),
                    "drive_gain": round(self.drive_gain.get(p, 0.0), 4),
                }
                for p in pitches
            ],
        }


# the audio ear's loop (docs/hearing.md §4): one latency correction common to every key
# (0.005 per heard note), each key's estimates taken relative to its own first five (the
# ear's bias for that key), innovations clipped to 3 ms; no key's own, no drive. The
# detector times a strike in a loud chord ~2 ms off at the median, with a bias of its own
# per key that wanders with the texture by +-1.5 ms, and its loudness wanders likewise: a
# key's own correction, or a drive gain, follows the ear, not the coil. The loud piece,
# 10 minutes, seed 1 (onset p99; open loop 2.952 ms): these 2.415 ms; with a common drive
# gain too 3.219 (velocity error 2.74 against 2.18); the note-level sensor's loop 11.276;
# 4 minutes with each key's latency too (0.02) 4.639
AUDIO_SETTINGS = LoopSettings(rate=0.0, gain_rate=0.0, common_rate=0.005, common_gain_rate=0.0, baseline_notes=5,
                              gate_us=3_000.0, gate_gain=0.10)

# On a device that plays on the wall clock (a real board, fw-host://) the ear's work holds
# up the loop between two steps (the detector on a batch of ~0.5 s of audio: 0.1-0.3 s
# of wall time on a loaded machine), during which nothing is submitted: through audio the
# loop there submits this far ahead, the firmware driver's default lead (the loop holds
# with it: docs/hearing.md §4, "A slower loop holds"). On fw-host:// with 250 ms, a
# 40-note piece had 5 strikes late (session 15).
WALL_CLOCK_AUDIO_LEAD_US = 1_000_000


def settings_for(device: Any, audio: bool) -> LoopSettings:
    """The loop's settings for ``device``: the audio ear's (:data:`AUDIO_SETTINGS`, with
    :data:`WALL_CLOCK_AUDIO_LEAD_US` where the device plays on the wall clock:
    ``device.wall_clock``) where it hears through audio, else the note-level sensor's."""
    if not audio:
        return LoopSettings()
    if getattr(device, "wall_clock", False):
        return dataclasses.replace(AUDIO_SETTINGS, lead_us=max(AUDIO_SETTINGS.lead_us, WALL_CLOCK_AUDIO_LEAD_US))
    return AUDIO_SETTINGS


def corrected_calibration(cal: Calibration, res: LoopResult) -> Calibration:
    """``cal`` with the loop's corrections folded in (``play --write-back``): a key
    heard ``L`` µs late has its latency curve raised by ``L``; a key that needed
    ``1 + g`` times the drive for a loudness has its curve's drives (and threshold)
    scaled by ``1 + g`` (points past full drive dropped, at least two kept)."""
    keys = dict(cal.keys)
    for p, c in cal.keys.items():
        lat, g = res.latency_us.get(p, 0.0), res.drive_gain.get(p, 0.0)
        if lat == 0.0 and g == 0.0:
            continue
        f = 1.0 + g
        pts = [(d * f, v, t + lat) for d, v, t in zip(c.drive, c.velocity, c.latency_us, strict=True)]
        keep = [x for x in pts if x[0] <= 1.0]
        if len(keep) < 2:
            keep = [(min(0.99, d), v, t) for d, v, t in pts[:1]] + [(1.0, pts[-1][1], pts[-1][2])]
        keys[p] = dataclasses.replace(
            c, threshold=min(c.threshold * f, keep[0][0] * 0.999),
            drive=tuple(x[0] for x in keep), velocity=tuple(x[1] for x in keep),
            latency_us=tuple(x[2] for x in keep),
        )
    return dataclasses.replace(cal, keys=keys)


def _clamp(x: float, lim: float) -> float:
    return max(-lim, min(lim, x))


@dataclass(slots=True)
class _Played:
    """A note submitted with its correction: what its heard note is judged against."""

    outcome: Any
    shift_us: int  # its commands went this much earlier
    factor: float  # its strike's level was multiplied by this (after the cap)


class _Loop:
    """The state of one closed-loop stream (see the module doc)."""

    def __init__(self, st: LoopSettings, outcomes: Sequence[Any], pitch_of: Callable[[int], int],
                 pwm_max: Callable[[int], int], ear: Ear | None = None) -> None:
        self.st = st
        self.ear = ear
        self.by_note = {o.index: o for o in outcomes}
        self.pitch_of, self.pwm_max = pitch_of, pwm_max
        self.lat: dict[int, float] = {}  # pitch -> the key's own latency correction (µs)
        self.gain: dict[int, float] = {}  # ... and drive gain
        self.c_lat, self.c_gain = 0.0, 0.0  # the common corrections (common_rate)
        self.base: dict[int, list[tuple[float, float]]] = {}  # pitch -> its first estimates (baseline_notes)
        self.notes: dict[int, _Played] = {}  # note index -> how it was sent
        self.waiting: list[_Played] = []  # sent, its time passed, not heard yet
        self.spare: list[HeardNote] = []  # heard, not paired yet
        self.last_t: dict[int, int] = {}  # actuator -> time of its last corrected command
        self.res = LoopResult()

    def corrected(self, c: Command) -> Command:
        """``c`` with its note's correction (decided at the note's first command)."""
        p = self.pitch_of(c.actuator)
        if p < 0 or c.op is Op.MOVE or c.note < 0:
            return c
        pl = self.notes.get(c.note)
        if pl is None:
            o = self.by_note.get(c.note)
            pl = _Played(o, int(round(self.lat_of(p))), 1.0)
            self.notes[c.note] = pl
        drive = c.drive
        if c.op is Op.PULSE_HOLD and drive > 0:
            drive = max(1, min(self.pwm_max(c.actuator), int(round(drive * (1.0 + self.gain_of(p))))))
            pl.factor = drive / c.drive
            if pl.outcome is not None and pl.outcome.fate.name != "DROPPED":
                self.waiting.append(pl)
                if self.ear is not None:
                    o = pl.outcome
                    self.ear.expect(o.index, o.target_t_us, o.pitch_out, o.velocity_target)
        # one key's commands keep their order whatever the corrections of their notes
        t = max(0, c.t_us - pl.shift_us, self.last_t.get(c.actuator, 0))
        self.last_t[c.actuator] = t
        return dataclasses.replace(c, t_us=t, drive=drive)

    def lat_of(self, p: int) -> float:
        """The latency correction key ``p``'s next note is played with (µs)."""
        return _clamp(self.c_lat + self.lat.get(p, 0.0), self.st.max_latency_us)

    def gain_of(self, p: int) -> float:
        return _clamp(self.c_gain + self.gain.get(p, 0.0), self.st.max_drive)

    def listen(self, heard: Sequence[HeardNote], now_us: int, lag_us: float = 0.0) -> None:
        """Pair the newly heard notes with the notes sent; move the corrections. ``lag_us``:
        how far behind the ear is (an ear in its own thread): a note is forgotten that
        much later."""
        new = list(heard[self.res.heard_live:])
        self.res.heard_live = len(heard)
        self.spare += new
        due = [pl for pl in self.waiting if pl.outcome.target_t_us <= now_us]
        if not due or not self.spare:
            return
        matched = match_heard([pl.outcome for pl in due], self.spare)
        used = {id(h) for h in matched.values()}
        for pl in due:
            h = matched.get(pl.outcome.index)
            if h is not None and h.velocity > 0:
                self._update(pl, h, now_us)
        done = {pl.outcome.index for pl in due if pl.outcome.index in matched}
        # unheard notes and stray onsets are forgotten after 2 s: they are not coming (the
        # audio ear decides a note up to ~1 s after it: its batches), 2 s after the audio
        # the ear has got through where it works behind the loop (its own thread)
        old = now_us - FORGET_US - int(lag_us)
        self.waiting = [pl for pl in self.waiting if pl.outcome.index not in done and pl.outcome.target_t_us > old]
        self.spare = [h for h in self.spare if id(h) not in used and h.t_us > old]

    def _update(self, pl: _Played, h: HeardNote, now_us: int) -> None:
        st, o = self.st, pl.outcome
        self.res.used += 1
        if st.rate <= 0.0 and st.common_rate <= 0.0:
            return
        p = o.pitch_out
        want_v = o.velocity_target
        err = h.t_us - o.target_t_us
        ratio = want_v / h.velocity
        # what the key needs: its error had the note not been moved, the drive factor
        # that would have given the wanted loudness (the loudness taken as proportional)
        need_lat = err + pl.shift_us
        need_f = pl.factor * ratio
        if st.baseline_notes:  # relative to the key's first estimates (its bias)
            seen = self.base.setdefault(p, [])
            if len(seen) < st.baseline_notes:
                seen.append((need_lat - self.c_lat, need_f - self.c_gain))
                return
            need_lat -= float(np.median([x for x, _ in seen]))
            need_f -= float(np.median([f for _, f in seen])) - 1.0
        d_lat = need_lat - (self.c_lat + self.lat.get(p, 0.0))
        d_f = need_f - (1.0 + self.c_gain + self.gain.get(p, 0.0))
        # clipped, not left out: a key whose correction went far can come back
        if st.gate_us:
            d_lat = _clamp(d_lat, st.gate_us)
        if st.gate_gain:
            d_f = _clamp(d_f, st.gate_gain)
        g_rate = st.rate if st.gain_rate is None else st.gain_rate
        self.c_lat = _clamp(self.c_lat + st.common_rate * d_lat, st.max_latency_us)
        cg_rate = st.common_rate if st.common_gain_rate is None else st.common_gain_rate
        self.c_gain = _clamp(self.c_gain + cg_rate * d_f, st.max_drive)
        self.lat[p] = _clamp(self.lat.get(p, 0.0) + st.rate * d_lat, st.max_latency_us)
        self.gain[p] = _clamp(self.gain.get(p, 0.0) + g_rate * d_f, st.max_drive)
        self.res.log.append(Correction(now_us, p, self.lat_of(p), self.gain_of(p), float(err), ratio))


def _stream(device: _Device, cmds: list[Command], st: LoopSettings, lp: _Loop, ear: Ear | None) -> Any:
    """Play ``cmds`` on ``device`` as one stream, ``lp`` listening and correcting every
    ``step_us``; the drained performance. Where the device keeps the stream's time
    (``now_us``), how far it had run past each step's time when the loop came to submit
    (``LoopResult.behind``: the loop's own lateness, the ear's work included where it runs
    in the loop's thread; on a wall-clock port a step later than the lead makes strikes late)."""
    res = lp.res
    now_us = getattr(device, "now_us", None)
    lag_us = getattr(ear, "lag_us", None)  # an ear in its own thread: how far behind it is
    behind: list[float] = []
    caught_up = False
    pool: list[tuple[int, int, int, Command]] = []  # (corrected time, order, seq, command)
    i, seq = 0, 0
    now = cmds[0].t_us - st.lead_us if cmds else 0
    last_t = cmds[-1].t_us if cmds else 0
    horizon = st.lead_us + int(st.max_latency_us)
    submitted = False
    while i < len(cmds) or pool:
        if submitted and now_us is not None:
            t_dev = now_us()
            # (from the first step the stream had not passed: the driver may start the
            # stream's time ahead of the loop's first steps, which then catch up at once)
            caught_up = caught_up or (t_dev is not None and t_dev <= now)
            if t_dev is not None and caught_up:
                behind.append(t_dev - now)
                if t_dev - now > st.step_us:
                    log.debug("closed loop: the step at %.3f s came %.0f ms behind the stream", now / 1e6,
                              (t_dev - now) / 1e3)
        while i < len(cmds) and cmds[i].t_us <= now + horizon:  # into the pool: corrected
            c = lp.corrected(cmds[i])
            heapq.heappush(pool, (c.t_us, Command.sort_key(c)[1], seq, c))
            i, seq = i + 1, seq + 1
        batch: list[Command] = []
        while pool and pool[0][0] <= now + st.lead_us:
            batch.append(heapq.heappop(pool)[3])
        if batch:
            batch.sort(key=Command.sort_key)
            device.submit(batch)
            submitted = True
        if submitted:
            device.advance(now)
            heard = ear.heard_so_far() if ear is not None else device.heard_so_far()
            if heard is None:
                raise TransportError(
                    f"{device.url}: the closed loop needs a device that hears while it plays "
                    "(heard_so_far gave None)"
                )
            lp.listen(heard, now, lag_us() if lag_us is not None else 0.0)
            res.steps += 1
        now += st.step_us
    if submitted:  # the last notes: heard before the end
        device.advance(last_t + 1_000_000)
        lp.listen((ear.heard_so_far(final=True) if ear is not None else device.heard_so_far()) or [],
                  last_t + 1_000_000)
    if behind:
        res.behind = lag_summary([b / 1e6 for b in behind])
    return device.drain()


def play_closed_loop(
    device: _Device,
    plan: Plan,
    outcomes: Sequence[Any],
    pitch_of: Callable[[int], int],
    pwm_max: Callable[[int], int],
    settings: LoopSettings | None = None,
    ear: Ear | None = None,
) -> LoopResult:
    """Play ``plan`` on ``device`` as one stream, correcting each key from what is heard.

    ``outcomes``: the planner's per-note outcomes (``index``, ``pitch_out``,
    ``target_t_us``, ``velocity_target`` or ``velocity_in``, ``fate``); every note
    played or altered is judged against what the plan aimed at (its target time and
    loudness); ``pitch_of``: actuator -> pitch (-1 for the pedal); ``pwm_max``:
    actuator -> its full level. ``ear``: hear through it (the live audio ear) instead
    of the device's ``heard_so_far``; where it clicks, the stream begins with the sync
    click's pattern and the plan follows ``CLICK_LEAD_US`` later (at least): the result's
    ``shift_us``, taken off the drained performance's notes and pedal again.
    TransportError where the device cannot hear while it plays (``heard_so_far`` None).
    """
    st = settings or LoopSettings()
    cmds = list(plan.commands)
    shift = 0
    pattern: list[Command] = []
    if ear is not None and ear.click is not None and cmds:
        from .align import PATTERN_US

        act, level, pulse, _ = ear.click
        shift = max(0, CLICK_LEAD_US - cmds[0].t_us)
        pattern = [Command(dt, Op.PULSE_HOLD, act, level, pulse, 0) for dt in PATTERN_US]
        cmds = pattern + [dataclasses.replace(c, t_us=c.t_us + shift) for c in cmds]
    targets = [
        _Target(o.index, o.fate, o.target_t_us + shift,
                None if o.strike_t_us is None else o.strike_t_us + shift, o.pitch_out,
                float(getattr(o, "velocity_target", None) or o.velocity_in))
        for o in outcomes
    ]
    lp = _Loop(st, targets, pitch_of, pwm_max, ear)
    res = lp.res
    res.shift_us = shift
    try:
        perf = _stream(device, cmds, st, lp, ear)
    finally:  # an exception, Ctrl-C, a lost link: the ear's thread never outlives the loop
        if ear is not None:
            ear.close()
    if shift:  # the plan's own times again (the click pattern is not a note)
        perf.heard = [dataclasses.replace(h, t_us=h.t_us - shift, end_us=None if h.end_us is None else h.end_us - shift)
                      for h in perf.heard]
        perf.pedal = [(t - shift, v) for t, v in perf.pedal]
        perf.extra["stream_shift_us"] = shift
    if ear is not None:
        res.ear = ear.stats()
    res.performance = perf
    res.heard = list(perf.heard)
    res.max_coil_temp_ratio = float(getattr(perf, "max_coil_temp_ratio", 0.0))
    keys = sorted(set(lp.lat) | set(lp.base))
    res.latency_us = {p: lp.lat_of(p) for p in keys}
    res.drive_gain = {p: lp.gain_of(p) for p in keys}
    if res.log:
        log.info("closed loop: %d corrections in one stream (%d notes heard live, %d used), %d keys",
                 len(res.log), res.heard_live, res.used, len(lp.lat))
    return res


__all__ = ["AUDIO_SETTINGS", "WALL_CLOCK_AUDIO_LEAD_US", "Correction", "Ear", "LoopResult", "LoopSettings",
           "corrected_calibration", "play_closed_loop", "settings_for"]
