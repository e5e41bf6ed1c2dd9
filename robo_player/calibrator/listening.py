"""Listening to a round through a microphone (the device hands back audio).

Every round's plan starts and ends with a sync pattern (:mod:`robo_player.hearing.align`)
on one key at full drive; :func:`listen_round` aligns the take on them and hears each
strike with the detector (:mod:`robo_player.hearing`), exactly as with a real
microphone. Without audio (a note-level sensor) the patterns are only struck, and the
heard notes are matched as before.

With a sync click (``spec.sync_click``) the patterns are clicked and the aligned
times are the MCU's own. Without one, the aligned times are early by one constant
``c`` for the whole session: the sync
key's latency at full drive (the line through the patterns cannot tell it from the
clock offset) plus the detector's own delay on that key. :func:`common_offset` finds
``c`` from the strikes themselves: the latency family ``A (d - theta)**-alpha`` has no
constant term, so the ``c`` that lets every key's curve fit best is the one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..hearing.align import PATTERN_SPAN_US, PATTERN_US, ClockFit
from ..hearing.detector import (
    REFERENCE_GAIN_DB,
    Detector,
    PartialsRead,
    energy_response,
    partials_read,
    pooled_comb_rate,
    pooled_rates,
    power_velocity,
    read_velocity,
)
from ..hearing.level import anchor_level_db, anchor_pair_sd_db, remove_level
from ..hearing.listen import OWN_REACH_US, Expected, hear_strikes
from ..performance import Performance
from ..plan import Command, Op, Plan
from ..spec.model import KEY_LOUDNESS_TOLERANCE, PianoSpec
from ..voicing import f0_hz
from .fitting import KeyFit, fit_key
from .strikes import (
    LAT_NOISE_AUDIO_US,
    LAT_NOISE_US,
    LAT_REL_NOISE_AUDIO,
    SILENT_LATENCY_US,
    VEL_NOISE_AUDIO,
    StrikeResult,
)

SYNC_PITCH = 72  # the sync key: the spec's key nearest C5 (clear onsets, short period)
SYNC_HOLD_US = 100_000
ONSET_GAP_US = 250_000  # predicted onsets of a round's strikes at least this far apart (the detector fits 30 ms of background before and 30 ms of note after each onset; a neighbour's onset or damper inside them spoils the fit)
EARLY_US = 50_000
PROBE_LATE = 1.3  # a return probe may sound this much later than its predicted slowest
WINDOW_MIN_US = 12_000  # a predicted onset's window: this + its tolerance each side  # aligned onsets may read up to this early (the constant c)
OFFSET_RANGE_US = (-20_000.0, 200_000.0)
OFFSET_KEYS = 24
NEGATIVE_PENALTY_US = 3_000.0
RESIDUAL_CAP_US = 3_000.0
MISSED_MIN_HEARD = 4  # heard ordinary strikes of a key before its curve tells a missed strike
SILENT_BAR = 0.8  # fit_key's: a strike the curve puts sooner than this x the silent latency sounds
FULL_DRIVE = 1.0 - 1e-6  # a strike at or above this drive is at full drive (the level's anchor)
OFFSET_PRIOR_SD_US = 50_000.0  # the prior on c (at the nominal full-drive latency): wide, the curves decide (onsets are now precise to ~0.2 ms)
# A strike not heard around its prediction is looked for again from its command to the
# silent latency (expected_window's wide look); a key's softer strike sounds no sooner than
# its stronger one (the action is monotone in drive), so that look begins at this fraction
# of the longest latency its key was heard at a higher drive (soonest_latency_us). Before,
# a soft bass strike's wide look took another key's onset in the take, near its command,
# as its own (its dense partials pass the owner test): truth seed 4 room 5, key 33's
# silent strike "heard" 2.8 ms after its command (key 23's onset), its strike at drive
# 0.172 at 60 ms (the truth's 335 ms: key 22's onset). hear_strikes's taken_us (the
# recorder path's) mended neither (key 23's onset was found in its own wide look, which
# taken_us does not leave out; past key 22's ± 8 ms the search took 74 ms) and broke a
# strike read right before (a split window is searched piece by piece). The fraction's
# room: of 4773 pairs of one key's strikes read within 15 ms of the truth (that session),
# the softer's latency over the stronger's was 0.86 at the least (the action's spread and
# the onsets' noise); 0.5 left key 33's silent strike heard. docs/calibration.md
# "Session 29, velocity"
SOONEST_FRACTION = 0.75
# a strike's window ends this fraction of the nominal full-drive latency before the next
# strike's command: the next onset reads no sooner (keys' full-drive latencies within
# ±25 % of the nominal, read early by the sync key's: docs/simulator.md); the recorder
# path's first windows (offline.fixed_windows) and, before the key's own next strike,
# every window (own_reach_us)
NEXT_GUARD = 0.5


@dataclass(slots=True)
class KeyStrikes:
    """One key's strikes heard over their partials so far (the session's: its decays are
    pooled over them), each with what its partials said; and, as :func:`spectrum_offsets`
    last read them, each strike's loudness by the partials' log-mean and by the power
    sum (None where that says nothing)."""

    reads: list[tuple[StrikeResult, PartialsRead]] = field(default_factory=list)
    rows: list[tuple[StrikeResult, float, float | None]] = field(default_factory=list)


KeyReads = dict[int, KeyStrikes]

# The key's spectrum against the level law's (:func:`spectrum_offsets`). The partials'
# log-mean (``read_velocity``: the room's colour averaged over the partials) reads the
# level law's spectrum; a key whose spectrum is not the law's (a weak bass fundamental,
# partials the law under-predicts: any real piano) reads off by a constant of that key
# and its loudness, which the power sum (``power_velocity``: what a velocity means, on
# any spectrum, but one partial's colour in it: ~2.5 % a strike through the room) does
# not carry. Their difference, in log, fitted over the key's ordinary strikes as a line
# in the strike's loudness (~13 strikes: its level to ~0.7 %), is taken off the
# log-mean: its colour-averaging kept, its level the power sum's. Each key alone: the
# log-mean's offset jumps from key to key where the partials it can use change (the
# rich voice at velocity 64: A0 +31, A#0 +30, B0 +35, C1 +30 %; bench_calibration.py
# --single-notes --voice rich), so a line through neighbours' strikes would miss by ~4 %.
# Where the keys' offsets spread no more than their own noise says (a spectrum near the
# law's: the plain voice), each is pulled to their mean by as much (empirical Bayes over
# the keys: the noise of a key's ~0.7 % would otherwise be added to every table).
# the slope's pull to 0, as a strike's weight at log(v/64) = ±1: the first take's one
# loudness a key has no slope in it; a session's ~13 strikes over velocity ~25..127
# (sum of x² ~4) outweigh it (a pick, not tuned: 0 leaves the first take's slope free)
SPECTRUM_RIDGE = 1.0
SPECTRUM_MIN_STRIKES = 3  # a key's line tells its own noise from this many ordinary strikes (one degree of freedom)


def sync_pitch(spec: PianoSpec) -> int:
    return min((k.pitch for k in spec.keys), key=lambda p: (abs(p - SYNC_PITCH), p))


def add_sync(spec: PianoSpec, plan: Plan, pending: list[StrikeResult], end_us: int) -> tuple[list[int], int]:
    """Shift the round by one pattern span, sound the pattern before and after it: on
    the sync click where the spec has one (a plain pulse of its output, timed by the
    firmware like a strike), else struck on the sync key.

    Returns the patterns' start times and the round's new end."""
    click = spec.sync_click
    span = PATTERN_SPAN_US
    plan.commands = [replace(c, t_us=c.t_us + span) for c in plan.commands]
    for s in pending:
        s.t_us += span
    starts = [0, span + end_us]
    for t0 in starts:
        for dt in PATTERN_US:
            t = t0 + dt
            if click is not None:
                plan.commands.append(Command(t, Op.STRIKE, click.channel, click.pwm_max, click.pulse_us, 0))
                continue
            key = spec.key(sync_pitch(spec))
            plan.commands.append(
                Command(t, Op.STRIKE, key.channel, key.pwm_max, spec.strike.default_pulse_us, 0)
            )
            plan.commands.append(Command(t + SYNC_HOLD_US, Op.RELEASE, key.channel))
    plan.sort()
    return starts, starts[-1] + span


def soonest_latency_us(strikes: list[StrikeResult], drive: float) -> float:
    """How soon after its command a strike of the key at ``drive`` can sound (µs, as the
    latencies are read): :data:`SOONEST_FRACTION` of the longest latency the key's
    ``strikes`` (ordinary, heard) were heard at above ``drive``; 0 where none was."""
    lat = [s.latency_us for s in strikes if s.heard and s.probe_gap_us is None and s.drive > drive]
    return SOONEST_FRACTION * max(lat) if lat else 0.0


def next_guard_us(spec: PianoSpec) -> float:
    """:data:`NEXT_GUARD` x ``spec``'s nominal full-drive latency (µs): the guard a strike's
    window keeps before the next strike's command (``offline.fixed_windows``), and the one
    :func:`own_reach_us` reckons from the key's own next strike (after its command with a
    clicked clock, before it with struck patterns)."""
    return NEXT_GUARD * float(spec.nominal.latency_us[-1])


def own_reach_us(spec: PianoSpec, strikes: Sequence[StrikeResult], absolute: bool) -> list[int | None]:
    """How far after its command (µs) each of ``strikes`` (one take's, or one recording's)
    may be looked for before its key's own next strike among them (None: its key has no
    later one): :data:`~robo_player.hearing.listen.OWN_REACH_US` before the soonest that
    strike's onset can read, as its rise reaches back so far and is its key's (a window
    nearer finds that rise, passes the owner test and times the strike at the next one's
    onset, or refuses it and never tries the strike's own earlier rise). With an
    ``absolute`` clock (the patterns clicked) the soonest is :data:`NEXT_GUARD` of the
    nominal full-drive latency **after** its command (a key's full-drive latency is at
    least 0.75 x the nominal, more than the guard's 0.5; a key-return probe, the key not
    yet up, slower still); with struck patterns the guard **before** it (aligned times read
    early by the sync key's full-drive latency, up to 1.25 x the nominal: 0.75 - 1.25 =
    -0.5). The recorder path's windows since session 28 (offline.fixed_windows); the
    session's rounds since session 30: a soft strike's wide look, run to the silent
    latency, took its key's own return probe's onset as its own (keys 21, 27, 35 of truth
    seed 1 read 161-179 ms late, key 21's curve 57 ms off: docs/calibration.md "Session 30,
    probe")."""
    guard = next_guard_us(spec)
    own: dict[int, list[int]] = {}
    for s in strikes:
        own.setdefault(s.pitch, []).append(s.t_us)
    for ts in own.values():
        ts.sort()
    out: list[int | None] = []
    for s in strikes:
        mine = own[s.pitch]
        j = bisect.bisect_right(mine, s.t_us)
        out.append(int(mine[j] + (guard if absolute else -guard) - OWN_REACH_US - s.t_us) if j < len(mine) else None)
    return out


def expected_window(s: StrikeResult, c_us: float, absolute: bool = True, reach_us: int | None = None) -> Expected:
    """Where to look for strike ``s``'s onset (aligned times read ``c_us`` early): around
    its predicted latency when there is one (the nominal curve in round 0, the key's fit
    later), else anywhere up to the silent latency; no further than ``reach_us`` after its
    command (:func:`own_reach_us`: its key's own next strike; None: up to the silent
    latency).

    ``absolute`` False (no sync click: ``c`` is a guess): the first method's windows
    (``build_round`` put the strike's latest onset in ``expect_us``; less ``c`` near
    the nominal full-drive latency, that lands near the prediction), as measured."""
    full = SILENT_LATENCY_US + 5_000

    def cut(lo_us: float, hi_us: float) -> float:  # hi_us, no later than reach_us (nor before lo_us)
        return hi_us if reach_us is None or reach_us >= hi_us else max(lo_us, reach_us)

    if math.isnan(s.expect_us):
        return Expected(s.pitch, s.t_us, EARLY_US, int(cut(-EARLY_US, full)))
    if absolute and s.probe_gap_us is not None and s.expect_tol < 0.5:
        # a key-return probe: full strength if the key was up (the fit's latency at its
        # drive), slower down to its predicted slowest (s.expect_us) as it was not
        before = EARLY_US if c_us else 0
        hi = min(full, PROBE_LATE * s.expect_us + WINDOW_MIN_US - c_us)
        return Expected(s.pitch, s.t_us, int(before), int(cut(-before, hi)))
    centre = s.expect_us - c_us
    half = WINDOW_MIN_US + s.expect_tol * s.expect_us
    lo = max(-EARLY_US, centre - half)
    hi = cut(lo, min(full, centre + half))
    # absolute clock: a strike not heard around its prediction is looked for again from
    # its command (from its soonest: soonest_latency_us) to the silent latency (near the
    # threshold the predicted latency is far off: a wrong "silent" there pulls the
    # threshold and the soft curve with it), or to its key's next strike's reach
    soonest = int(max(0.0, s.soonest_us - c_us))
    wide = (-soonest, int(cut(soonest, full))) if absolute else None
    return Expected(s.pitch, s.t_us, int(-lo), int(hi), wide)


def listen_round(
    perf: Performance, pending: list[StrikeResult], spec: PianoSpec, starts: list[int], where: str,
    c_us: float = 0.0, level_db: float | None = 0.0, reads: KeyReads | None = None,
) -> ClockFit:
    """Hear ``pending`` in ``perf.audio``; fills their latency (as aligned: ``c`` early)
    and loudness: with the take's level ``level_db`` known, over the partials at that
    gain (:func:`partials_loudness`, ``reads`` the session's); ``None`` (not fitted
    yet), the comb's loudness at the detector's reference gain. ``c_us``: the best guess
    of ``c`` so far, for the search windows. Returns the take's clock (MCU -> audio)."""
    assert perf.audio is not None
    absolute = spec.sync_click is not None
    expected = [
        expected_window(s, c_us, absolute, r) for s, r in zip(pending, own_reach_us(spec, pending, absolute), strict=True)
    ]
    heard, clock = hear_strikes(
        perf.audio.samples(), perf.audio.sample_rate, expected, sync_pitch(spec), starts, where=where,
        click_delay_us=spec.sync_click.delay_us if spec.sync_click is not None else None,
    )
    for s, h in zip(pending, heard, strict=True):
        if h is not None and math.isfinite(h.velocity):
            s.heard = True
            s.latency_us = h.t_us - s.t_us
            s.doubtful = not h.sure
            s.velocity = remove_level(s.pitch, h.velocity, level_db or 0.0, perf.audio.sample_rate)
            s.onset_us = h.t_us
    if level_db is not None:
        read_and_pool(perf, pending, clock, level_db, reads)
    return clock


def partials_loudness(
    perf: Performance, strikes: list[StrikeResult], clock: ClockFit, level_db: float, reads: KeyReads | None = None,
) -> set[int]:
    """The heard ``strikes``' loudness read again with the take's level ``level_db``
    known: over the key's partials at that gain (:func:`~robo_player.hearing.detector.
    partials_read`: each partial's room colour weighs alike, 3.0 -> 1.9 % a strike at
    velocity 96), each partial taken back to the onset with the key's decay. With
    ``reads`` (the session's, every key's strikes so far), each strike's read is added to
    its key's, and the caller pools them (:func:`spectrum_offsets` with the keys returned:
    the decay pooled over the key's ordinary strikes, :func:`~robo_player.hearing.detector.
    pooled_rates`, as one strike's, through the room, scatters by several 1/s and a
    key-return probe's damper may land early; every strike of a key struck here read again
    with it, at the level of the key's power sum, as the partials' log-mean assumes the
    level law's spectrum), once per take in the session, once every place is read in the
    recorder path; without ``reads``, each strike's own log-mean. Where fewer than two
    partials tell it, the comb's loudness stays (the level already out of it). Returns
    the keys whose reads were added to ``reads`` (none without)."""
    assert perf.audio is not None
    det = Detector(perf.audio.samples(), perf.audio.sample_rate, gain_db=REFERENCE_GAIN_DB + level_db)
    touched: set[int] = set()
    for s in strikes:
        if s.heard and s.onset_us is not None:
            t_s = loudness_onset(det, s.pitch, clock.to_audio_s(s.onset_us), s.doubtful)
            # the whole comb's power only where the key's spectrum offset reads it
            read = partials_read(det, s.pitch, t_s, comb=reads is not None)
            if read is None:
                continue
            if reads is None:
                v = read_velocity(read)
                if v is not None:
                    s.velocity = v
                continue
            reads.setdefault(s.pitch, KeyStrikes()).reads.append((s, read))
            touched.add(s.pitch)
    return touched



def read_and_pool(
    perf: Performance, strikes: list[StrikeResult], clock: ClockFit, level_db: float, reads: KeyReads | None,
) -> None:
    """:func:`partials_loudness` of one take, its keys then pooled at once
    (:func:`spectrum_offsets`; the session's takes, each pooled as it is read; the recorder
    path pools once after every place instead)."""
    touched = partials_loudness(perf, strikes, clock, level_db, reads)
    if reads is not None:
        spectrum_offsets(reads, touched)

# A doubtful onset (the detector's Onset.sure False: its direct sound moved the energy
# fit's by more than DIRECT_SURE_S) places the loudness windows from the energy fit's
# onset instead (less its own delay on the key, energy_response): a hammer's thump can
# pull the onset early (the rich voice's key 50: 4.3 ms, its loudness window then on the
# partials' rise, -10 % at velocity 64; the energy fit's onset -0.3 ms, +0.9 %); the
# strike's latency keeps the detector's onset. Only on keys whose period is under
# ENERGY_ONSET_MAX_PERIOD_S: the energy fit's onset comes in bursts of a period and its
# delay is measured on the law's spectrum; on the low bass, a spectrum unlike it moves
# it by ms (the rich voice's A0-B1 read 3-7 % loud from it, truth seeds 1-3).
# docs/calibration.md, "The log-mean's partials, one set" (session 20).
DOUBTFUL_ENERGY_ONSET = True
ENERGY_ONSET_MAX_PERIOD_S = 0.010  # the loudness window's shortest (hearing/detector.py: a period or 10 ms)


def loudness_onset(det: Detector, pitch: int, t_s: float, doubtful: bool) -> float:
    """Where a strike's loudness windows are placed from (audio s): its onset ``t_s``, or
    where that is ``doubtful`` (and :data:`DOUBTFUL_ENERGY_ONSET`) on a key whose period
    is under :data:`ENERGY_ONSET_MAX_PERIOD_S`, the energy fit's onset near it less the
    fit's own delay on ``pitch``."""
    if not doubtful or not DOUBTFUL_ENERGY_ONSET or 1.0 / f0_hz(pitch) >= ENERGY_ONSET_MAX_PERIOD_S:
        return t_s
    return det.y_onset(pitch, t_s)[0] - energy_response(pitch, det.sr)[0]


def spectrum_offsets(reads: KeyReads, touched: set[int] | None = None) -> dict[int, tuple[float, float]]:
    """Every strike in ``reads`` read again: the log-mean over its partials
    (:func:`read_velocity`, each partial taken back to the onset with its key's pooled
    decay) less its key's spectrum offset, the log of log-mean over power sum
    (:func:`power_velocity`, with the key's pooled decay of its power sum) fitted as
    ``a + b·log(v/64)`` over the key's ordinary strikes (:data:`SPECTRUM_RIDGE` on
    ``b``; v the log-mean), each of ``a`` and ``b`` pulled to its mean over the keys by
    as much as the keys' spread of it is their own noise (:func:`_shrink`). ``touched``:
    the keys struck since the last call (None: all), whose decays and reads are read
    again (the others' are kept in :attr:`KeyStrikes.rows`). Returns each key's (a, b)."""
    for p in sorted(reads if touched is None else touched):
        ks = reads[p]
        ordinary = [r for s, r in ks.reads if s.probe_gap_us is None]
        rates = pooled_rates(ordinary)
        comb_rate = pooled_comb_rate(ordinary)
        ks.rows = []
        for s, r in ks.reads:
            v = read_velocity(r, rates if len(rates) and np.isfinite(rates).any() else None)
            if v is not None and v > 0.0:
                ks.rows.append((s, v, power_velocity(r, comb_rate)))
    lines: dict[int, tuple[np.ndarray, np.ndarray, float | None]] = {}  # key: (a, b), diag((MᵀM)⁻¹), s²
    for p, ks in reads.items():
        pts = [(math.log(v / 64.0), math.log(v / pv)) for s, v, pv in ks.rows
               if s.probe_gap_us is None and pv is not None and pv > 0.0]  # fmt: skip
        if not pts:
            continue
        x, d = np.array(pts).T
        m = np.vstack([np.column_stack([np.ones(len(x)), x]), [0.0, math.sqrt(SPECTRUM_RIDGE)]])
        y = np.concatenate([d, [0.0]])
        coef = np.linalg.lstsq(m, y, rcond=None)[0]
        # one strike's scatter about the line (the ridge's row holds one of the two)
        s2 = float(np.sum((y - m @ coef) ** 2)) / (len(x) - 1) if len(x) >= SPECTRUM_MIN_STRIKES else None
        lines[p] = (coef, np.diag(np.linalg.inv(m.T @ m)), s2)
    fits = _shrink(lines)
    for p, ks in reads.items():
        a, b = fits.get(p, (0.0, 0.0))
        for s, v, _ in ks.rows:
            s.velocity = v * math.exp(-(a + b * math.log(v / 64.0)))
    return fits


def _shrink(lines: dict[int, tuple[np.ndarray, np.ndarray, float | None]]) -> dict[int, tuple[float, float]]:
    """Each key's (a, b) (``lines``: the fitted pair, diag((MᵀM)⁻¹) of its fit and one
    strike's scatter about it, None under SPECTRUM_MIN_STRIKES) pulled to the keys'
    mean by the share ``n / (t + n)`` of its distance: n its own noise variance (its
    scatter, else the keys' median scatter, x its diag), t the keys' spread beyond
    their noise (their variance less their mean noise variance, >= 0). Under two keys
    with a scatter of their own: all as fitted."""
    told = [s2 for _, _, s2 in lines.values() if s2 is not None]
    if len(told) < 2:
        return {p: (float(c[0]), float(c[1])) for p, (c, _, _) in lines.items()}
    typical = float(np.median(told))
    keys = list(lines)
    coefs = np.array([lines[p][0] for p in keys])  # (N, 2)
    noise = np.array([lines[p][1] * (typical if lines[p][2] is None else lines[p][2]) for p in keys])  # (N, 2)
    mean = coefs.mean(axis=0)
    spread = np.maximum(coefs.var(axis=0) - noise.mean(axis=0), 0.0)
    keep = spread / np.maximum(spread + noise, 1e-30)  # (N, 2)
    shrunk = mean + keep * (coefs - mean)
    return {p: (float(a), float(b)) for p, (a, b) in zip(keys, shrunk, strict=True)}


def full_drive_level(strikes: list[StrikeResult], spec: PianoSpec, sample_rate: int) -> tuple[float, int]:
    """The take's level (dB against the detector's reference microphone) and how many
    keys tell it: over the keys heard at full drive, the level at which their mean
    loudness is the spec's nominal velocity at full drive
    (:func:`~robo_player.hearing.level.anchor_level_db`, strays out).

    The microphone's gain is unknown (a real one, anywhere in the room): the loudness
    scale is anchored on the spec's nominal curve where the keys differ least, at full
    drive (near the threshold, each key's own threshold moves its loudness most). What
    is left is the keys' own mean loudness against the nominal and the detector's noise
    on one strike each (a few tenths of a dB over a dozen keys, less over all 88:
    docs/hearing.md); :func:`fitted_full_drive_level` reads it again at the end on
    every key's fitted curve."""
    want = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    full = [s for s in strikes if s.heard and s.probe_gap_us is None and s.drive >= FULL_DRIVE]
    best: dict[int, StrikeResult] = {}
    for s in full:  # one per key: its first (a key does not weigh by its strikes)
        best.setdefault(s.pitch, s)
    return anchor_level_db(((p, s.velocity, want) for p, s in best.items()), sample_rate,
                           anchor_ratio_sd(want))  # fmt: skip


def fitted_full_drive_level(fits: dict[int, KeyFit], spec: PianoSpec, sample_rate: int) -> tuple[float, int]:
    """The level still left in ``fits`` (dB; their loudness has a level taken out
    already) and how many keys tell it: where every key's **fitted** full-drive
    loudness (its curve at drive 1, through all its strikes, each take's room colour
    averaged) is, on the mean, the spec's nominal (:func:`full_drive_level`'s rule).

    The first take's one strike per key is heard in one room colour each (a key's
    loudness 4 % off, s.d.: docs/calibration.md, "Through a microphone: takes"); the
    curves carry ~11 takes."""
    want = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    pairs = ((p, float(f.velocity(1.0)), want) for p, f in fits.items())
    return anchor_level_db(pairs, sample_rate, anchor_ratio_sd(want))


def anchor_ratio_sd(want: float) -> float:
    """One key's loudness at full drive against the nominal ``want``, as a fraction (one
    s.d.): its own loudness within :data:`KEY_LOUDNESS_TOLERANCE` (uniform) and the
    detector's noise on one strike (``VEL_NOISE_AUDIO``); the anchor's stray test."""
    return math.hypot(KEY_LOUDNESS_TOLERANCE / math.sqrt(3.0), VEL_NOISE_AUDIO / want)


def full_drive_pair_sd_db(spec: PianoSpec, sample_rate: int) -> float:
    """What one key's full-drive strike can tell of the take's level (dB, one s.d.):
    the key's own loudness against the nominal (:data:`KEY_LOUDNESS_TOLERANCE`) and the
    detector's loudness noise on one strike (``VEL_NOISE_AUDIO``), at the sync key's
    pitch (:func:`~robo_player.hearing.level.anchor_pair_sd_db`)."""
    want = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    return anchor_pair_sd_db(sync_pitch(spec), want, KEY_LOUDNESS_TOLERANCE, VEL_NOISE_AUDIO, sample_rate)


def mark_missed(strikes: list[StrikeResult]) -> int:
    """Mark the ordinary strikes of one key the detector missed (neither heard nor
    silence; key-return probes aside): those not heard at a drive above one that was
    heard (the physics is monotone in drive), and, with :data:`MISSED_MIN_HEARD` heard,
    those the curve through the heard ones puts above the threshold and sooner than
    fit_key's silent bar (a strike just above the threshold sounds, softly: the
    detector may not hear it; taken as silence it pins the threshold on it and bends
    the soft curve, 2 ms at loudness 50 on seed 2's key 47). Returns how many."""
    ordinary = [s for s in strikes if s.probe_gap_us is None]
    heard = [s for s in ordinary if s.heard]
    fit = None
    if len(heard) >= MISSED_MIN_HEARD:
        fit = fit_key(heard, VEL_NOISE_AUDIO, LAT_NOISE_AUDIO_US, LAT_REL_NOISE_AUDIO)
    low = min((s.drive for s in heard), default=math.inf)
    n = 0
    for s in strikes:
        s.missed = not s.heard and s.probe_gap_us is None and (
            s.drive > low
            or (fit is not None and s.drive > fit.theta
                and float(fit.latency_us(s.drive)) < SILENT_BAR * SILENT_LATENCY_US)
        )
        n += s.missed
    return n


def _cost(strikes: dict[int, list[StrikeResult]], c: float) -> float:
    """Sum over keys of (latency fit rms)² x strikes with ``c`` added to every heard
    latency (the fit drops gross outliers, as the session's does)."""
    total = 0.0
    for ss in strikes.values():
        moved = [replace(s, latency_us=s.latency_us + c) for s in ss]
        for s in moved:
            if s.heard and s.latency_us <= 0:  # before its command: an outlier at this c
                s.heard = False
                total += NEGATIVE_PENALTY_US**2
        heard = [s for s in moved if s.heard and s.probe_gap_us is None]
        fit = fit_key(moved, spread=(0.0, 0.0, 0.0))  # the shape's fit as it was measured
        if fit is not None and heard:
            r = np.array([s.latency_us for s in heard]) - fit.latency_us(np.array([s.drive for s in heard]))
            total += float(np.sum(np.minimum(r * r, RESIDUAL_CAP_US**2)))  # outliers count capped
    return total


def common_offset(strikes: dict[int, list[StrikeResult]], prior_us: float = 20_000.0) -> float | None:
    """The constant ``c`` (µs) to add to every heard latency, or None if too few keys
    have the 5 heard strikes that make it identifiable."""
    keys = sorted(p for p, ss in strikes.items() if sum(s.heard and s.probe_gap_us is None for s in ss) >= 5)
    if not keys:
        return None
    pick = [keys[round(i)] for i in np.linspace(0, len(keys) - 1, min(OFFSET_KEYS, len(keys)))]
    sub = {p: strikes[p] for p in dict.fromkeys(pick)}
    lo, hi = OFFSET_RANGE_US
    n_heard = sum(s.heard for ss in sub.values() for s in ss)
    base = _cost

    def _cost_p(sub: dict[int, list[StrikeResult]], c: float) -> float:
        # the curves alone barely tell c (a key's fast end is nearly straight): a prior on
        # the sync key's full-drive latency (the spec's nominal) keeps it in place
        return base(sub, c) + n_heard * LAT_NOISE_US**2 * ((c - prior_us) / OFFSET_PRIOR_SD_US) ** 2

    grid = np.linspace(lo, hi, 23)
    costs = [_cost_p(sub, float(c)) for c in grid]
    i = int(np.argmin(costs))
    a, b = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    g = (math.sqrt(5) - 1) / 2
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = _cost_p(sub, x1), _cost_p(sub, x2)
    for _ in range(18):  # golden section to ~50 us
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = _cost_p(sub, x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = _cost_p(sub, x2)
    return float(0.5 * (a + b))
