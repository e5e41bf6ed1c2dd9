"""Piano planner: Score + spec + calibration -> Plan + PlanReport.

The planner reads only the spec, the score and the calibration (nominal curves when
there is none). It works in integer µs of performance time: a note at score onset
``o`` must sound at ``o + pipeline_delay_us``. The rules it enforces live in
:mod:`robo_player.planner.constraints`; the planner resolves conflicts in stages: this
module runs them and holds stages 1, 2 and 4 and the report; stage 3 is
:mod:`~robo_player.planner.piano_repeats`, stage 5 :mod:`~robo_player.planner.piano_keys`,
stage 6 :mod:`~robo_player.planner.pedal`, and a note's working state between them
:mod:`~robo_player.planner.piano_notes`.

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
import gc
import logging
import operator
from collections.abc import Iterator

from ..plan import Plan
from ..score import Score
from ..spec.calibration import Calibration
from ..spec.model import PianoSpec
from . import rules
from .commands import CommandBuffer
from .constraints import (
    INF_US,
    DriveChoice,
    PlanOptions,
    Playability,
    SupplyLedger,
    nominal_calibration,
    pitch_name,
    spec_hash_of,
)
from .pedal import (
    PedalTrack,
    Press,
    carry,
    plan_pedal,
    presses_track,
    score_presses,
    split_long,
)
from .piano_keys import _release_pass
from .piano_notes import _Rec
from .piano_repeats import _repeat_pass
from .report import Fate, NoteOutcome, PlanReport

__all__ = ["PlanOptions", "plan_piano"]

log = logging.getLogger(__name__)



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
    carry_wanted = _release_pass(by_key, spec, oracle, calibration, buf)

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
