"""Piano planner: Score + spec + calibration -> Plan + PlanReport.

The planner reads only the spec, the score and the calibration (nominal curves when
there is none). It works in integer µs of performance time: a note at score onset
``o`` must sound at ``o + pipeline_delay_us``. The rules it enforces live in
:mod:`robo_player.planner.constraints`; this module resolves conflicts, in stages:

1. **pitch** — out-of-range notes are transposed by octaves into range or dropped
   (``PlanOptions.out_of_range``).
2. **drive** — velocity -> PWM counts through the key's curve (clamped to what the key
   can play, raised to ``min_drive`` and until the latency fits the pipeline); the
   strike is placed ``latency`` before the note must sound.
3. **repetition (first pass)** — on each key, in onset order, a note whose strike
   comes less than ``Limits.repeat_need_us`` after the previous kept note's strike
   (``min_repeat_us``; or the previous note's shortest sound plus the key's return)
   is merged into it: the later note is dropped and the earlier one held to the later
   one's end. With ``PlanOptions.restrike`` (the default) a repeat that still leaves
   ``e / R >= Limits.restrike_ratio`` between the previous note's earliest release
   (``Limits.restrike_floor_us``) and its strike is kept instead: it is struck on the
   partly returned key with its drive raised to ``d / (e / R)``
   (:func:`~robo_player.planner.constraints.restrike_drive`; over full drive: at full
   drive, earlier by the longer latency, reported "softer: partial return").
4. **power** — strikes in time order are placed in a :class:`SupplyLedger`: at most
   ``max_simultaneous_strikes`` pulses at once, and the supply current (pulses plus
   holds) within ``supply_a`` while pulses run. A strike that does not fit waits for
   the first pulse end or release after which it fits (the smallest delay possible for
   it); the whole note moves (its release too). If the current still does not fit after
   ``supply_wait_us``, the strike goes at the first time the strike count allows and
   is reported as a supply overload. Pulses are never shortened: a pulse shorter than
   the key's ``P_full`` would play softer.
5. **per key** — in onset order: merge again where staggering closed a gap; the
   previous note is released ``key_return_us + release_margin_us`` before the next
   strike (shortened if needed); a note lasts at least its strike pulse; no coil is on
   longer than ``max_on_us``; the nominal coil temperature stays under the margin
   (hold cut short, or the strike dropped).
6. **pedal** (:mod:`~robo_player.planner.pedal`) — the score's pedal becomes presses
   (CC64 >= 64 down) ``pedal_latency`` early, each a pull-in at full drive then the
   pedal's ``hold_duty``, as SET commands. A note cut short by the on-time or heat
   limit is carried by the pedal when the score's pedal is down until its end anyway,
   or (``pedal_carry``) when an added pedal press changes no other note's sound;
   otherwise it is reported shortened. Every press is checked against the pedal
   coil's heat, the firmware's duty bucket and the on-time limit
   (:class:`~robo_player.planner.pedal.PedalBudget`): lifted early or not pressed
   where it would pass one (``PlanReport.pedal_changes``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import operator
from collections.abc import Iterator

from ..plan import Op, Plan
from ..score import Score
from ..spec.calibration import Calibration, KeyCurve
from ..spec.model import PianoSpec
from . import rules
from .commands import CommandBuffer, make_command
from .constraints import (
    INF_US,
    DriveChoice,
    Limits,
    PlanOptions,
    Playability,
    SupplyLedger,
    nominal_calibration,
    pitch_name,
    restrike_drive,
    spec_hash_of,
    time_to_limit_us,
)
from .pedal import (
    PedalTrack,
    Press,
    carry,
    lim_ms,
    plan_pedal,
    presses_track,
    score_presses,
    split_long,
)
from .report import Fate, NoteOutcome, PlanReport

__all__ = ["PlanOptions", "plan_piano"]

log = logging.getLogger(__name__)


class _Rec:
    """Working state of one score note."""

    __slots__ = (
        "i", "pitch", "shift", "dc", "s0", "s", "late", "stagger", "end", "absorbed_end",
        "drop", "rel", "sound_end", "notes", "carry", "cut_by", "need", "order",
        "fast", "dc0",
    )  # fmt: skip

    def __init__(
        self, i: int, pitch: int, shift: int, dc: DriveChoice | None = None, s0: int = 0,
        end: int = 0, need: int = 0,
    ) -> None:  # fmt: skip
        self.i = i
        self.pitch = pitch  # key played
        self.shift = shift  # transposition, semitones
        self.dc = dc
        self.s0 = s0  # wanted strike time (performance µs)
        self.s = 0  # planned strike time
        self.late = 0  # delay because the strike would fall before t = 0
        self.stagger = 0  # delay from the power budget
        self.end = end  # wanted sound end (performance µs, unshifted)
        self.absorbed_end = end  # latest end of notes merged into this one
        self.drop: str | None = None
        self.rel = 0  # planned release
        self.sound_end = 0  # when the sound is meant to stop (release, or pedal carry)
        self.notes: list[str] = []  # why it changed
        self.carry = 0  # > 0: the sound should go on to this time after the release
        self.cut_by = ""  # the coil limit that cut the note short
        self.need = need  # shortest strike-to-strike interval to the next note on the key
        self.fast = INF_US  # the same for a re-strike on the partly returned key
        self.dc0 = dc  # the drive as if the key were fully up (dc: raised for a re-strike)
        # (s0, pitch, i) packed into one int that sorts alike (pitch < 128): strike order
        self.order = (s0 * 128 + pitch) * _I_SPAN + i


_I_SPAN = 1 << 40  # more notes than a score has


def _octave_shift(pitch: int, lo: int, hi: int) -> int | None:
    """Semitones (a multiple of 12) that move ``pitch`` into [lo, hi], None if none does."""
    if pitch < lo:
        shift = -((pitch - lo) // 12) * 12  # ceil((lo - pitch) / 12) octaves up
    else:
        shift = -(-(pitch - hi) // 12) * -12  # ceil((pitch - hi) / 12) octaves down
    return shift if lo <= pitch + shift <= hi else None


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting goes on).

    Planning allocates a few objects per note that all live until the plan is done;
    each collection would walk every one of them again, which cost 30-40 % of the
    planning time of a 20,000-note piece (bench/bench_planner.py). The planner makes no
    reference cycles, so nothing waits for the collector; it resumes on the way out.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan_piano(
    score: Score,
    spec: PianoSpec,
    calibration: Calibration | None = None,
    options: PlanOptions | None = None,
) -> tuple[Plan, PlanReport]:
    """Plan ``score`` for ``spec``; every note ends in the report exactly once."""
    with _no_cyclic_gc():
        return _plan_piano(score, spec, calibration, options)


def _plan_piano(
    score: Score,
    spec: PianoSpec,
    calibration: Calibration | None,
    options: PlanOptions | None,
) -> tuple[Plan, PlanReport]:
    options = options or PlanOptions()
    measured = calibration is not None and calibration.measured
    if calibration is None:
        calibration = nominal_calibration(spec)
    elif calibration.spec_hash != spec_hash_of(spec) or any(
        k.pitch not in calibration.keys for k in spec.keys
    ):
        calibration.check_for(spec)  # raises CalibrationError naming what is wrong
    oracle = Playability(spec, calibration, options)
    lim = oracle.limits
    pipe, pulse = lim.pipeline_us, lim.pulse_us
    lo, hi = spec.lowest, spec.highest
    notes = score.notes

    # 1-2. pitch and drive --------------------------------------------------------------
    recs: list[_Rec] = []
    by_key: dict[int, list[_Rec]] = {}
    # Per call caches (the hot loop of a long piece): (pitch, velocity) -> DriveChoice,
    # and pitch -> the numbers of Limits.repeat_need_us, inlined below.
    drives: dict[tuple[int, int], DriveChoice] = {}
    needs: dict[int, tuple[int, int, int, int, int, int]] = {}
    for i, note in enumerate(notes):
        pitch = note.pitch
        shift = 0
        if not lo <= pitch <= hi:
            sh = _octave_shift(pitch, lo, hi) if options.out_of_range == "transpose" else None
            if sh is None:
                r = _Rec(i, pitch, 0)
                side = f"{hi} is the highest key" if pitch > hi else f"{lo} is the lowest key"
                r.drop = f"out of range: {pitch_name(pitch)} ({side})"
                recs.append(r)
                continue
            shift = sh
            pitch += shift
        vel = note.velocity
        dc = drives.get((pitch, vel))
        if dc is None:
            dc = drives[(pitch, vel)] = oracle.drive(pitch, vel)
        lat = dc.latency_us
        onset = note.onset_us + pipe
        dur = note.duration_us
        nd = needs.get(pitch)
        if nd is None:
            kl = oracle.limits_for(pitch)
            nd = needs[pitch] = (
                kl.min_repeat_us,
                kl.pulse_us,
                kl.min_sound_us,
                kl.key_return_us + kl.release_margin_us,
                kl.restrike_need_us(0) - kl.restrike_floor_us(0),  # restrike_need_us(lat) - floor
                kl.restrike_floor_us(0),  # = the shortest pulse of full effect
            )
        # = oracle.limits_for(pitch).repeat_need_us(lat, dur)
        floor = lat + (dur if dur < nd[2] else nd[2])
        if floor < nd[1]:
            floor = nd[1]
        need = floor + nd[3]
        r = _Rec(i, pitch, shift, dc, onset - lat, onset + dur, need if need > nd[0] else nd[0])
        r.fast = (lat if lat > nd[5] else nd[5]) + nd[4]  # = limits_for(pitch).restrike_need_us(lat)
        if shift:
            r.notes.append(f"transposed {shift:+d}")
        recs.append(r)
        lst = by_key.get(pitch)
        if lst is None:
            by_key[pitch] = [r]
        else:
            lst.append(r)

    # 3. repetition, first pass (before power, so merged notes take no pulse slot) -----
    for pitch, lst in by_key.items():
        _repeat_pass(lst, oracle.limits_for(pitch), calibration.curve(pitch), spec.key(pitch).pwm_max)

    # 4. power budget -------------------------------------------------------------------
    live = [r for r in recs if r.drop is None]
    live.sort(key=_strike_order)
    ledger = rules.supply_ledger(spec.actuators, pulse)
    advance, fits, add = ledger.advance, ledger.fits, ledger.add
    # id(DriveChoice) -> its (pulse, hold) current: a choice fixes the counts and, through
    # its curve id, the key's pwm_max; ``drives`` keeps every choice alive meanwhile.
    amps_cache: dict[int, tuple[float, float]] = {}
    overloads = 0
    max_on = lim.max_on_us
    for r in live:
        dc = r.dc
        assert dc is not None
        t = r.s0
        if t < 0:
            r.late = -t
            t = 0
        if t > ledger.t0:
            advance(t)
        amps = amps_cache.get(id(dc))
        if amps is None:
            amps = amps_cache[id(dc)] = oracle.amps(dc.counts, spec.key(r.pitch).pwm_max)
        a, h = amps
        if not fits(t, a, h):
            t2 = _wait_for_supply(ledger, t, a, h, options.supply_wait_us)
            if t2 is None:
                # Over the supply however long it waits: keep only the strike count.
                t2 = _wait_for_supply(ledger, t, a, h, None)
                assert t2 is not None
                overloads += 1
                r.notes.append(f"supply overload: over {lim.supply_a:g} A, may sound weaker")
            r.stagger = t2 - t
            t = t2
        r.s = t
        # the release as planned so far: min(max(end + delta, t + pulse), t + max_on)
        r_est = r.absorbed_end + r.late + r.stagger
        if r_est < t + pulse:
            r_est = t + pulse
        if r_est > t + max_on:
            r_est = t + max_on
        add(t, a, h, r_est)

    # 5. per key: repetition, release, duration, max on-time, heat ----------------------
    buf = CommandBuffer(max(a.index for a in spec.actuators))
    cmds, keys = buf.commands, buf.keys
    cmd_add, key_add, t_scale = cmds.append, keys.append, buf.t_scale
    carry_wanted: list[_Rec] = []
    tau_us, heat_limit, heat_k = lim.tau_us, lim.heat_limit_k, lim.heat_k_per_s
    max_on, on_time_why = lim.max_on_us, f"coil on-time limit ({lim.max_on_us / 1e6:g} s)"
    # rules.heat_after over one strike pulse, whose factor is the same for every strike;
    # the other heat_after calls of this loop are inlined too (the same float operations).
    e_pulse = math.exp(-pulse / tau_us)
    strike_op, release_op = Op.PULSE_HOLD, Op.RELEASE
    end = _Rec(-1, -1, 0)  # after a key's last note: releases it with nothing to wait for
    end.s = INF_US
    for pitch, lst in by_key.items():
        key = spec.key(pitch)
        pwm_max = key.pwm_max
        hold = round(lim.hold_duty * pwm_max)
        hold_rate = lim.rate(hold / pwm_max)
        hold_steady = hold_rate * tau_us * 1e-6
        hold_cools = hold_steady <= heat_limit  # a hold never heats the coil past its limit
        ch = key.channel
        strike_key, release_key = buf.base(Op.PULSE_HOLD, ch), buf.base(Op.RELEASE, ch)
        klim = oracle.limits_for(pitch)
        back = klim.key_return_us + klim.release_margin_us  # latest_release_us(s) = s - back
        # restrike_need_us(lat) = max(lat, fast_floor) + fast_add (inlined: per note)
        fast_floor = klim.restrike_floor_us(0)
        fast_add = klim.restrike_need_us(0) - fast_floor
        prev = None
        prev_temp = 0.0  # temperature rise at the end of prev's pulse
        lst.append(end)
        for r in lst:
            if r.drop is not None:
                continue
            s = r.s
            if prev is None:
                cool = 0.0  # a cold coil
            else:
                ps = prev.s
                restrike = s - ps < prev.need
                if restrike and s - ps < prev.fast:
                    # Not held longer: the power budget counted prev's hold as planned.
                    _merge(prev, r, s - ps, min(prev.need, prev.fast), extend=False)
                    continue
                # prev's release: as written (with its delay), before the key must return
                # for r (or, for a re-strike, as soon as prev has sounded), at least its
                # pulse, at most the on-time and the heat limits
                cap = s - back
                if restrike:
                    cap = max(cap, ps + klim.restrike_floor_us(prev.dc.latency_us))  # type: ignore[union-attr]
                delta = prev.late + prev.stagger
                want = prev.absorbed_end + delta
                rel = want if want < cap else cap
                # a re-strike's previous note may be cut to the pulse of full effect
                least_on = klim.restrike_floor_us(0) if restrike else pulse
                if rel < ps + least_on:
                    rel = ps + least_on
                # never before it sounds (a softer re-strike's latency is longer than the
                # intended onset allowed for)
                sounds = ps + prev.dc.latency_us  # type: ignore[union-attr]
                if rel < sounds:
                    rel = sounds
                why = ""
                if rel - ps > max_on:
                    rel = ps + max_on
                    why = on_time_why
                if prev_temp >= heat_limit or not hold_cools:
                    cut = time_to_limit_us(prev_temp, hold_rate, tau_us, heat_limit)
                    if cut is not None and rel > ps + pulse + cut:
                        rel = ps + pulse + cut
                        why = "coil heat limit"
                # heat_after(prev_temp, hold time, hold_rate), then cooling to s
                t_end = hold_steady + (prev_temp - hold_steady) * math.exp(
                    -max(0, rel - ps - pulse) / tau_us
                )
                cool = t_end * math.exp(-(s - rel) / tau_us)
            if r is not end:
                if prev is None or not restrike:
                    r.dc = r.dc0  # the key is fully up (staggering may have made room)
                elif not _restrike_final(r, s - rel, klim, calibration.curve(pitch), pwm_max):
                    r.drop = f"merged: partial return too weak ({(s - rel) / 1000:.1f} ms after the release)"
                    continue
                lat_r = r.dc.latency_us  # type: ignore[union-attr]
                r.fast = (lat_r if lat_r > fast_floor else fast_floor) + fast_add
                dc = r.dc
                assert dc is not None
                duty = dc.counts / pwm_max
                steady = duty * duty * heat_k * tau_us * 1e-6  # of the strike's pulse
                t1 = steady + (cool - steady) * e_pulse
                if t1 > heat_limit:
                    r.drop = _heat_reason(pitch, t1, lim)
                    continue
            if prev is not None:
                # commit prev's release; say why it changed
                if want > cap:
                    want = cap  # shortened so the key can return before the repeat
                    prev.notes.append(
                        f"shortened for the repeat: released {lim_ms(prev.absorbed_end + delta - cap)} early"
                    )
                if rel < want:
                    # Cut by the on-time or heat limit: the pedal may carry the rest (stage 6).
                    prev.carry = want
                    prev.cut_by = why
                    carry_wanted.append(prev)
                elif rel > want:
                    prev.notes.append(
                        "lengthened to its strike pulse" if rel == ps + min(pulse, least_on)
                        else "lengthened until it sounds"
                    )
                prev.rel = prev.sound_end = rel
                i = prev.i
                key_add(ps * t_scale + strike_key + len(keys))
                # (released inside its pulse for a re-strike: the pulse ends there, past
                # strike.pulse_full_max_us, so it acts in full)
                p_us = pulse if rel - ps >= pulse else rel - ps
                cmd_add(make_command(ps, strike_op, ch, prev.dc.counts, p_us, hold, i))  # type: ignore[union-attr]
                key_add(rel * t_scale + release_key + len(keys))
                cmd_add(make_command(rel, release_op, ch, 0, 0, 0, i))
            if r is end:
                break
            prev, prev_temp = r, t1
        lst.pop()

    # 6. pedal --------------------------------------------------------------------------
    report = PlanReport(spec_name=spec.name, calibrated=measured)
    presses: list[Press] = []
    if spec.pedal is None:
        report.pedal_events_ignored = len(score.pedal)
        track = PedalTrack([], [])
    else:
        pedal_lat = (
            calibration.pedal_latency_us
            if calibration.pedal_latency_us is not None
            else spec.pedal.latency_us
        )
        kept = [r for r in recs if r.drop is None]
        # a press the score leaves down comes up after the last note's sound (as wanted:
        # a note cut short by a coil limit may want the pedal to carry it on)
        last = max((max(r.sound_end, r.carry) for r in kept), default=0)
        onsets = sorted(r.s + r.dc.latency_us for r in kept)  # type: ignore[union-attr]
        presses, report.pedal_changes = split_long(
            score_presses(score.pedal, pipe - pedal_lat, last - pedal_lat),
            spec.actuators[spec.pedal.channel].max_on_us, onsets, pedal_lat,
        )  # fmt: skip
        track = presses_track(presses, pedal_lat)
    carried = 0
    if carry_wanted:
        carried, added = carry(carry_wanted, recs, track, spec, calibration, options, lim)
        presses += added
    if spec.pedal is not None:
        by_score = [r for r in carry_wanted if r.sound_end == r.carry]  # carried by the score's
        more, checked = plan_pedal(presses, spec, options, pedal_lat, buf, lim, by_score)
        carried += more
        report.pedal_changes = sorted(report.pedal_changes + checked, key=_at)
    report.pedal_carried = carried

    plan = Plan(
        commands=buf.sorted(),
        pipeline_delay_us=pipe,
        spec_name=spec.name,
        spec_hash=spec_hash_of(spec),
    )

    # outcomes --------------------------------------------------------------------------
    outcomes = report.outcomes
    stagger_onsets: set[int] = set()
    max_stagger = 0
    for r, note in zip(recs, notes, strict=True):
        intended = note.onset_us + pipe
        if r.drop is not None:
            outcomes.append(
                NoteOutcome(
                    r.i,
                    note.pitch,
                    r.pitch,
                    Fate.DROPPED,
                    intended,
                    intended,
                    note.velocity,
                    None,
                    {},
                    r.drop,
                )
            )
            continue
        chosen = r.dc
        assert chosen is not None and r.dc0 is not None
        delta = r.late + r.stagger
        # = delta, but for a softer re-strike (its latency is the effective drive's)
        on = r.s + chosen.latency_us - intended
        softer = chosen.velocity_target != r.dc0.velocity_target
        changes: dict[str, int | float] = {}
        if r.shift:
            changes["pitch"] = r.shift
        if chosen.clamped or chosen.raised or softer:  # chosen.altered, or a softer re-strike
            dv = chosen.velocity_target - note.velocity
            changes["velocity"] = round(dv, 2) or dv
            if chosen.clamped:
                r.notes.append(
                    f"velocity {note.velocity} outside what {pitch_name(r.pitch)} can play, "
                    f"clamped to {chosen.velocity_target:g}"
                )
            elif chosen.raised:
                r.notes.append(
                    f"drive raised so the note sounds in time (velocity {chosen.velocity_target:g})"
                )
        if on:
            changes["onset_us"] = on
            if r.stagger:
                r.notes.append(
                    f"staggered {r.stagger} us: power budget ({lim.max_strikes} strikes, {lim.supply_a:g} A)"
                )
                stagger_onsets.add(note.onset_us)
                max_stagger = max(max_stagger, r.stagger)
            if r.late:
                r.notes.append(f"delayed {r.late} us: the strike cannot start before t=0")
        ddur = r.sound_end - (r.end + delta)
        if ddur:
            changes["duration_us"] = ddur
        reason = "; ".join(r.notes) if r.notes else None
        outcomes.append(
            NoteOutcome(
                r.i,
                note.pitch,
                r.pitch,
                Fate.ALTERED if changes else Fate.PLAYED,
                intended + on,
                intended,
                note.velocity,
                chosen.velocity_target,
                changes,
                reason,
                strike_t_us=r.s,
            )  # fmt: skip
        )
    report.supply_overloads = overloads
    report.staggered_chords = len(stagger_onsets)
    report.max_stagger_us = max_stagger
    log.debug("planned %d notes into %d commands", len(notes), len(plan))
    return plan, report


def _wait_for_supply(
    ledger: SupplyLedger, t: int, a: float, h: float, wait_us: int | None
) -> int | None:
    """Earliest time after ``t`` (within ``wait_us``; None: any, counting strikes only)
    at which the strike fits the power budget."""
    current = wait_us is not None
    until = t + wait_us if wait_us is not None else INF_US
    if not current and ledger.fits(t, a, h, current=False):
        return t
    for c in ledger.reliefs(t, until):
        if ledger.fits(c, a, h, current):
            return c
    return None


_strike_order = operator.attrgetter("order")
_at = operator.itemgetter("t_us")  # (r.s0, r.pitch, r.i)

# Two voices on one key whose onsets are this close are a unison: one strike plays both
# (a score's voices are often a tick apart; no key can strike twice within its return).
UNISON_US = 5_000


def _merge(prev: _Rec, r: _Rec, gap: int, need: int, extend: bool = True) -> None:
    assert prev.dc is not None and r.dc is not None
    if abs(r.s0 + r.dc.latency_us - (prev.s0 + prev.dc.latency_us)) <= UNISON_US:
        # two voices on one key at the same time (a unison): one key plays them both
        r.drop = f"merged: unison with note {prev.i} on the same key"
    else:
        r.drop = f"merged: repeat too fast ({gap / 1000:.1f} ms < {need / 1000:.1f} ms)"
    if not extend:
        return
    if r.end > prev.absorbed_end:
        prev.absorbed_end = r.end
    note = f"held through merged note {r.i}"
    if note not in prev.notes:
        prev.notes.append(note)


_REC_SLOTS = _Rec.__slots__
_FRONTIER_MAX = 64  # states kept per note in a key's run of fast repeats (a guard: ~2-6 live)


def _clone(r: _Rec) -> _Rec:
    c = _Rec.__new__(_Rec)
    for name in _REC_SLOTS:
        setattr(c, name, getattr(r, name))
    c.notes = list(r.notes)
    return c


# a stage-3 decision on note j of a key: (keep: the note as it plays, None: as written)
# or (merge: why, the gap to the kept note before it and the need it missed)
_Decision = tuple[int, "_Rec | None", str, int, int]  # j, kept state, merge kind ("": kept), gap, need


class _Path:
    """One way through a key's notes in stage 3: the last kept note as it would be
    played (``last``: a clone once changed), the notes sounded (``score``: unison merges
    count), the keep (1) / merge (0) decisions as bits (``hist``: greedy, keeping
    whenever it can, is the largest among equal scores), and the decision that led here."""

    __slots__ = ("score", "hist", "last", "decision", "parent")

    def __init__(
        self, score: int, hist: int, last: _Rec, decision: _Decision, parent: _Path | None
    ) -> None:
        self.score = score
        self.hist = hist
        self.last = last
        self.decision = decision
        self.parent = parent


def _offer(nxt: dict[tuple[object, ...], _Path], p: _Path, key: tuple[object, ...]) -> None:
    """Keep ``p`` for state ``key`` unless a path there sounds more notes (or as many, greedier)."""
    q = nxt.get(key)
    if q is None or (p.score, p.hist) > (q.score, q.hist):
        nxt[key] = p


def _repeat_pass(lst: list[_Rec], klim: Limits, curve: KeyCurve, pwm_max: int) -> None:
    """Stage 3 on one key: keep or merge each repeat too fast for the full return.

    A repeat is kept (as written, louder, or re-struck on the partly returned key) or
    merged into the note before it. Keeping one can cost the next: a repeat 60 ms after
    a kept note may be playable only if the one between was merged (or a two-voice
    unison after it, one strike for two notes, is lost). So the choices are searched as
    paths (Viterbi: each state is the last kept note as it would play), most notes
    sounded first, then the greedy choice (keep whenever possible: the plan as before
    wherever keeping is best). A note that could play but is merged for the ones after
    it says so."""
    paths = [_Path(0, 0, lst[0], (0, None, "", 0, 0), None)] if lst else []
    for j in range(1, len(lst)):
        r = lst[j]
        if len(paths) == 1:
            p = paths[0]
            if r.s0 - p.last.s0 >= p.last.need:  # one way on: as written (most notes)
                paths = [_Path(p.score + 1, 0, r, (j, None, "", 0, 0), p)]
                continue
        nxt: dict[tuple[object, ...], _Path] = {}
        offer = functools.partial(_offer, nxt)
        for p in paths:
            prev = p.last
            gap = r.s0 - prev.s0
            if gap >= prev.need:  # as written after the full return
                offer(_Path(p.score + 1, p.hist * 2 + 1, r, (j, None, "", 0, 0), p), ("w", j))
                continue
            rc = _clone(r)
            ok = gap >= prev.fast and _restrike_plan(prev, rc, klim, curve, pwm_max)
            if not ok and _louder_for_repeat(prev, rc, klim, curve, pwm_max):
                ok = _restrike_plan(prev, rc, klim, curve, pwm_max)  # at full strength
            if ok:
                dc = rc.dc
                assert dc is not None
                offer(
                    _Path(p.score + 1, p.hist * 2 + 1, rc, (j, rc, "", 0, 0), p),
                    ("k", j, rc.s0, dc.counts, dc.latency_us, rc.absorbed_end),
                )
            # merged into prev (a unison sounds with it): prev is held to its end
            assert prev.dc is not None and r.dc is not None
            unison = abs(r.s0 + r.dc.latency_us - (prev.s0 + prev.dc.latency_us)) <= UNISON_US
            held = prev
            if r.end > prev.absorbed_end:
                held = _clone(prev)
                held.absorbed_end = r.end
            kind = "cost" if ok else ("weak" if gap >= prev.fast else "fast")
            pd = prev.dc
            offer(
                _Path(p.score + unison, p.hist * 2, held, (j, None, kind, gap, min(prev.need, prev.fast)), p),
                ("m", prev.i, held.s0, pd.counts, pd.latency_us, held.absorbed_end),
            )
        paths = sorted(nxt.values(), key=lambda p: (p.score, p.hist), reverse=True)[:_FRONTIER_MAX]
        if len(paths) == 1:
            paths[0].hist = 0  # one way left: earlier choices no longer compare
    if not paths:
        return
    chosen: list[_Decision] = []
    node: _Path | None = paths[0]
    while node is not None:
        chosen.append(node.decision)
        node = node.parent
    prev_real = lst[0]
    for j, c, kind, gap, need in reversed(chosen):
        r = lst[j]
        if not kind:  # kept
            if c is not None:
                for name in ("s0", "dc", "dc0", "need", "fast", "order", "notes"):
                    setattr(r, name, getattr(c, name))
            prev_real = r
            continue
        _merge(prev_real, r, gap, need)
        if r.drop is not None and not r.drop.startswith("merged: unison"):
            if kind == "weak":
                r.drop = "merged: partial return too weak (a softer strike must start earlier)"
            elif kind == "cost":
                r.drop = (
                    f"merged: repeat too fast for the ones after it ({gap / 1000:.1f} ms after note "
                    f"{prev_real.i}: playable, but struck it would leave fewer repeats sounding)"
                )


def _louder_for_repeat(prev: _Rec, r: _Rec, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 3: a repeat too soon after ``prev`` for ``r`` as written, but playable
    louder: a stronger strike starts later (shorter latency), which leaves the key more
    time to come back and needs less compensation. Picks the smallest drive with which
    ``r`` re-strikes at full strength (reported as a velocity change). False: none does
    (nothing changed)."""
    assert prev.dc is not None and r.dc0 is not None
    if math.isinf(klim.restrike_ratio):
        return False
    ret, margin = klim.key_return_us, klim.release_margin_us
    est = klim.return_est_us or ret
    floor = prev.s0 + klim.restrike_floor_us(prev.dc.latency_us)
    o_r = r.s0 + r.dc0.latency_us
    least = klim.restrike_least_us()
    lo = max(r.dc0.counts + 1, math.ceil(klim.min_drive * pwm_max - 1e-9))
    step = max(1, pwm_max // 256)

    def fits(c: int) -> int | None:
        """The latency of a repeat acting as ``c`` counts if it re-strikes so, else None."""
        d = c / pwm_max
        if d <= curve.threshold:
            return None
        lat = round(curve.latency_at(d))
        s0 = o_r - lat
        e = s0 - max(floor, min(prev.absorbed_end, s0 - ret - margin))
        return None if e < least or c > min(1.0, e / est) * pwm_max else lat

    def late_enough(c: int) -> bool:
        """Struck so, is the key at least ``least`` back? (non-decreasing in ``c``: a
        stronger strike starts later)"""
        d = c / pwm_max
        if d <= curve.threshold:
            return False
        s0 = o_r - round(curve.latency_at(d))
        return s0 - max(floor, min(prev.absorbed_end, s0 - ret - margin)) >= least

    grid = [*range(lo, pwm_max, step), pwm_max]
    a, b = -1, len(grid)  # the first grid drive late enough: in (a, b]
    while b - a > 1:
        m = (a + b) // 2
        if late_enough(grid[m]):
            b = m
        else:
            a = m
    got = next(((c, lat) for c in grid[b:] if (lat := fits(c)) is not None), None)
    if got is None and least < est:
        # none on that grid: the window between "late enough to be half up" and "drive to
        # spare" can be narrower than its step. Its edge is full drive acting as e / est:
        # the least e >= the least return with e + L(e / est) <= the time from the
        # earliest release to the written onset (a louder strike that still fits)
        e = _least_in_time(curve, least, est, o_r - floor)
        if e is not None:
            c = max(lo, math.floor(e / est * pwm_max))
            if (lat := fits(c)) is not None:
                got = (c, lat)
    if got is not None:
        c, lat = got
        d = c / pwm_max
        s0 = o_r - lat
        r.dc = r.dc0 = DriveChoice(
            c, lat, round(curve.velocity_at(d), 2), clamped=r.dc0.clamped, raised=True
        )
        r.s0 = s0
        r.order = (s0 * 128 + r.pitch) * _I_SPAN + r.i
        r.need = klim.repeat_need_us(lat, r.end - o_r)
        r.fast = klim.restrike_need_us(lat)
        r.notes.append("louder for a fast repeat: its slower strike would start before the key is back")
        return True
    return False


def _least_in_time(curve: KeyCurve, lo: int, est: int, avail: int) -> int | None:
    """The least ``e`` in ``[lo, est)`` (µs) with ``e + L(e / est) <= avail``, None if none:
    a strike at full drive ``e`` after the release, acting as ``e / est``, that sounds
    within ``avail`` of it. ``e + L(e / est)`` is convex (L falls ever less steeply), so:
    its minimum by ternary search, then the first crossing before it by bisection."""

    def g(e: float) -> float:
        return e + curve.latency_at(e / est)

    if lo >= est:
        return None
    if g(lo) <= avail:
        return lo
    a, b = float(lo), float(est)
    while b - a > 20.0:
        m1, m2 = a + (b - a) / 3, b - (b - a) / 3
        if g(m1) <= g(m2):
            b = m2
        else:
            a = m1
    e_min = math.ceil((a + b) / 2)
    if g(e_min) > avail:
        return None
    a_i, b_i = lo, e_min  # g(a_i) > avail >= g(b_i)
    while b_i - a_i > 1:
        m = (a_i + b_i) // 2
        if g(m) <= avail:
            b_i = m
        else:
            a_i = m
    return b_i


def _restrike_plan(prev: _Rec, r: _Rec, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 3: plan ``r`` as a re-strike of ``prev``'s partly returned key, from the
    wanted strike times (stage 5 redoes it on the planned ones). False: it cannot sound
    (nothing changed)."""
    assert prev.dc is not None and r.dc0 is not None
    floor = prev.s0 + klim.restrike_floor_us(prev.dc.latency_us)
    ret = klim.key_return_us
    est = klim.return_est_us or ret  # the unmargined estimate scales the drive
    s0 = r.s0
    dc = r.dc0
    for _ in range(3):  # a softer strike starts earlier, which leaves less return
        rel = max(floor, min(prev.absorbed_end, s0 - ret - klim.release_margin_us))
        e = s0 - rel
        if e < klim.restrike_least_us():
            return False
        if e >= est:
            dc = r.dc0
            break
        got = restrike_drive(curve, r.dc0, e / est, pwm_max)
        if got is None:
            return False
        dc = got[0]
        s1 = r.s0 + r.dc0.latency_us - dc.latency_us  # sounds at the written time
        if s1 == s0:
            break
        s0 = s1
    r.dc = dc
    if s0 != r.s0:
        r.s0 = s0
        r.order = (s0 * 128 + r.pitch) * _I_SPAN + r.i
    r.fast = klim.restrike_need_us(dc.latency_us)
    return True


def _restrike_final(r: _Rec, e: int, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 5: the drive of ``r``, struck ``e`` µs after ``prev``'s planned release, no
    stronger than the power budget counted (stage 3's). False: it cannot sound."""
    assert r.dc is not None and r.dc0 is not None
    ret = klim.key_return_us
    est = klim.return_est_us or ret  # the unmargined estimate scales the drive
    if e < klim.restrike_least_us():
        return False
    if e >= est:
        r.dc = r.dc0
        return True
    scale = e / est
    got = restrike_drive(curve, r.dc0, scale, pwm_max, max(r.dc.counts, r.dc0.counts))
    if got is None:
        return False
    r.dc, softer = got
    if softer:
        r.notes.append(
            f"softer: partial return (struck {e / 1000:.1f} ms after the release, "
            f"e/R {scale:.2f}; full drive acts as {scale * r.dc.counts / pwm_max:.2f})"
        )
    else:
        r.notes.append(f"re-struck on the partly returned key (e/R {scale:.2f}, drive raised)")
    return True


def _heat_reason(pitch: int, temp_k: float, lim: Limits) -> str:
    return (
        f"coil heat: {pitch_name(pitch)} would reach {temp_k:.1f} K "
        f"(limit {lim.heat_limit_k:.1f} K with margin)"
    )
