"""The plan-known detector's timing of chord notes (issue 11: notes heard 20-100 ms off,
the detector's largest F1 loss; docs/hearing.md, session 16)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from robo_player.hearing import bands, joint
from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector, Onset
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio_rich
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2


def _rolled(rng: np.random.Generator) -> list[HeardNote]:
    """A chord rolled downwards in thirds (three loud keys 8-35 ms apart), its lowest key
    soft and last: ASAP Beethoven 8/1's chords, where that key was heard 21-46 ms early."""
    base = int(rng.integers(50, 60))
    gaps = np.sort(rng.uniform(0.008, 0.035, 3))[::-1]
    t = 0.4
    notes = [HeardNote(int((t - g) * 1e6), p, float(rng.uniform(70, 95)), int((t + 0.5) * 1e6))
             for p, g in zip((base + 9, base + 6, base + 3), gaps, strict=True)]
    notes.append(HeardNote(int(t * 1e6), base, float(rng.uniform(40, 75)), int((t + 0.5) * 1e6)))
    return notes


def test_the_last_key_of_a_rolled_chord_is_heard_at_its_own_strike() -> None:
    # the loud keys' partials leak into the soft key's bins (a third is under 3 bins of the
    # 2048-sample window at 200-260 Hz): its salience, its frame and its midpoints all
    # rise with the first key struck (1 of 6 within 20 ms before session 17); the joint
    # timing (hearing/joint.py) explains the loud keys' partials from their own onsets;
    # the plan's exact times are given (no latency error)
    rng = np.random.default_rng(5)
    close, early = 0, []
    for _ in range(6):
        notes = _rolled(rng)
        det = Detector(RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), notes, [], 0).samples(), 48000)
        plan = [(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes]
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        last = notes[-1]
        t = last.t_us / 1e6 + OFFSET_S
        errs = [o.t_s - t for o in heard if o.pitch == last.pitch]
        close += any(abs(e) < 0.020 for e in errs)
        early.append(round(1e3 * min(errs, key=abs), 1) if errs else None)
        # the rolled keys themselves are heard on time (their partials are clear)
        for h in notes[:-1]:
            th = h.t_us / 1e6 + OFFSET_S
            assert any(o.pitch == h.pitch and abs(o.t_s - th) < 0.010 for o in heard), (h, early)
    assert close >= 5, early


def test_the_joint_fit_times_a_soft_key_under_a_loud_third_at_its_own_strike() -> None:
    # a loud key and, 12-35 ms later, a soft key a minor third below (its fundamental ~1.5
    # bins of the 2048-sample window from the loud one's): the loud key held at its onset
    # (the search hears it on time), the soft key's residual over +-40 ms around it (where
    # the search heard the soft one: on the loud key's rise) least near its own strike
    rng = np.random.default_rng(3)
    errs, band = [], []
    for n in range(8):
        base, gap = int(rng.integers(48, 66)), float(rng.uniform(0.012, 0.035))
        t = 0.4
        notes = [HeardNote(int(t * 1e6), base + 3, float(rng.uniform(80, 100)), int((t + 0.6) * 1e6)),
                 HeardNote(int((t + gap) * 1e6), base, float(rng.uniform(35, 55)), int((t + 0.6) * 1e6))]
        y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, seed=n), notes, [], 0).samples()
        truth = [h.t_us / 1e6 + OFFSET_S for h in notes]
        start = truth[0]
        freqs = [np.array([k * 440.0 * 2 ** ((h.pitch - 69) / 12) for k in range(1, 9)
                           if k * 440.0 * 2 ** ((h.pitch - 69) / 12) < joint.JOINT_F_MAX_HZ]) for h in notes]
        times = list(start + np.arange(-0.04, 0.0401, 0.001))
        res = joint.residuals(y, 48000, [start, start], [freqs[1], freqs[0]], times, start - 0.04, start + 0.04)
        errs.append(round(1e3 * (times[int(np.argmin(res))] - truth[1]), 1))
        # the complex model of the soft key's bands, the loud key a phasor struck at its
        # onset (session 18; the detector's from key 45 up): within 5 ms on most (without
        # the loud key's strike in it: 6-23 ms off on 5 of 8). Over 12 room draws (seeds
        # 0-5 per take and fixed) 84 of 96 within 5 ms, the other 12 (0-2 a draw) at the
        # loud key's strike, 20-38 ms early: "every one" held by this draw (docs/hearing.md,
        # "Session 26, fixedroom")
        res = bands.band_residuals(y, 48000, notes[1].pitch, freqs[1], times, [bands.Strike(freqs[0], start)])
        band.append(round(1e3 * (times[int(np.argmin(res))] - truth[1]), 1))
    assert sum(abs(e) < 20.0 for e in errs) >= 6, errs
    assert float(np.median(np.abs(errs))) < 10.0, errs
    assert sum(abs(e) > 5.0 for e in band) <= 2, band


def test_the_joint_residual_is_least_at_a_lone_strike() -> None:
    # one key alone, no room: the model (the strike's transient through the window) fits
    # it best within a millisecond of its onset, and over 3 x worse 4 ms off
    for p in (45, 60, 76):
        notes = [HeardNote(400_000, p, 80.0, 900_000)]
        y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, rt60_s=0.0, snr_db=80.0), notes, [], 0).samples()
        t = 0.4 + OFFSET_S
        times = t + np.arange(-0.004, 0.0041, 0.0005)
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        freqs = np.array([k * f0 for k in range(1, 9) if k * f0 < joint.JOINT_F_MAX_HZ])
        res = joint.residuals(y, 48000, [t], [freqs], list(times), t - 0.04, t + 0.04)
        assert abs(times[int(np.argmin(res))] - t) <= 0.001, (p, res)
        assert res[0] > 3 * res.min() and res[-1] > 3 * res.min(), (p, res)


# random 2's A3 at 7.59 s (session 17's note, 5.1): a lone key struck while G3, F3, A#2 and
# C#4 ring; their partials near ours (A#2's 2nd at 233 Hz by our 220, F3's 5th at 873 by
# our 4th at 880) beat against it, and the salience's largest rise came with a beat's
# crest, 7-24 ms late on 3 of these 6 rooms (the search alone)
_RINGING = [(0.396, 55, 108), (0.621, 53, 69), (0.770, 46, 98), (0.771, 61, 78), (0.773, 75, 34)]
_LONE = (1.093, 57, 67)


def _lone_under_ringing(seed: int) -> tuple[np.ndarray, list[tuple[float, int]]]:
    notes = [HeardNote(int(t * 1e6), p, float(v), int((t + 0.6) * 1e6)) for t, p, v in [*_RINGING, _LONE]]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, seed=seed), notes, [], 0).samples()
    return y, [(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes]


def test_a_lone_key_under_ringing_partials_is_timed_at_its_strike() -> None:
    # the complex model of our partials' bands (bands.band_residuals: the ringing keys'
    # partials free phasors, ours a step) adds a partial and the ringing one as complex
    # numbers: the beat is explained, the step stays at the strike (the search alone: 24 ms
    # late on room 1; the opinion is taken where it gains >= JOINT_BAND_MIN_GAIN, so the
    # 7 ms of rooms 2 and 3 may stay)
    errs = []
    for seed in range(6):
        y, plan = _lone_under_ringing(seed)
        heard = Detector(y, 48000).detect_intended(plan, 0.08, 0.08, [])
        t, p = plan[-1]
        errs.append([round(1e3 * (o.t_s - t), 1) for o in heard if o.pitch == p])
    assert all(len(e) == 1 and abs(e[0]) < 10.0 for e in errs), errs


def test_the_band_residual_is_least_at_the_strike_of_a_key_under_ringing_partials() -> None:
    # the model itself, the ringing keys at their strikes: its least residual within 1 ms
    # of ours over the search's window; the residual at +20 ms (a beat's crest) is larger
    det_freqs = {p: np.array([k * 440.0 * 2 ** ((p - 69) / 12) for k in range(1, 9)]) for _, p, _ in [*_RINGING, _LONE]}
    for seed in range(3):
        y, plan = _lone_under_ringing(seed)
        t, p = plan[-1]
        others = [bands.Strike(det_freqs[q], u) for u, q in plan[:-1]]
        times = list(t + np.arange(-0.08, 0.0801, 0.001))
        res = bands.band_residuals(y, 48000, p, det_freqs[p], times, others)
        assert abs(times[int(np.argmin(res))] - t) < 0.0015, (seed, res)
        assert res[100] > res[80] + 0.05, (seed, res[80], res[100])


# ---- a loud bass minor third struck together (JOINT_MAG_RISE_X, session 27) ------------
# random 64's C2 v74 + D#2 v76 (eleventh set, 12.67 s): their partials 12-28 Hz apart share
# the 2048-sample window's lobes (the fundamentals 65 / 78 Hz one bin), so the magnitude
# model's data beat: a dip ~40 ms after the strike, a crest ~60-80 ms after
_PAIR = ((36, 74.0), (39, 76.0))
_PAIR_AT_S = 1.0


@cache
def _pair_take(seed: int) -> np.ndarray:
    """The pair struck together, held 0.5 s, rich voice, the room's fixed tail (as sim://'s),
    room ``seed`` (rendered once, read only)."""
    notes = [HeardNote(int(_PAIR_AT_S * 1e6), p, v, int((_PAIR_AT_S + 0.5) * 1e6)) for p, v in _PAIR]
    return RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, fixed_tail=True, seed=seed), notes, [], 0,
                    render=render_audio_rich).samples()  # type: ignore[arg-type]


def _pair_heard_ms(seed: int) -> dict[int, list[float]]:
    t = _PAIR_AT_S + OFFSET_S
    heard = Detector(_pair_take(seed), 48000).detect_intended([(t, p) for p, _ in _PAIR], 0.08, 0.08, [])
    return {p: [round(1e3 * (o.t_s - t), 1) for o in heard if o.pitch == p] for p, _ in _PAIR}


def test_a_loud_bass_third_struck_together_is_not_moved_to_a_beats_crest() -> None:
    # measured: -6.3..-3.6 ms in rooms 0-3 (the search's onsets, the joint moves refused:
    # rising 3-5 dB there against 46-51 at the search's)
    for seed in range(4):
        got = _pair_heard_ms(seed)
        assert all(len(e) == 1 and abs(e[0]) < 10.0 for e in got.values()), (seed, got)


def test_without_the_rise_gate_the_magnitude_model_moves_the_pair_late(monkeypatch: pytest.MonkeyPatch) -> None:
    # measured: one or both keys +52..+62 ms in each of rooms 0-3
    monkeypatch.setattr(dm, "JOINT_MAG_RISE_X", None)
    monkeypatch.setattr(dm, "PLAN_TIE_STAGES", False)  # (session 33: the plan's tie-break keeps them too)
    for seed in range(4):
        got = _pair_heard_ms(seed)
        assert any(e and e[0] > 40.0 for e in got.values()), (seed, got)


def test_the_rise_gate_passes_the_strike_and_not_the_crest() -> None:
    # the gate itself on the C2: at its strike (the search's onset) it rose as the search
    # found; 65 ms later (where the model put it) under a quarter of that
    det = Detector(_pair_take(0), 48000)
    t = _PAIR_AT_S + OFFSET_S
    i = int(round(t / (det.hop / det.sr)))
    o = Onset(t, 36, 80.0, rise_db=float(det.rise_db(36)[i - 5 : i + 6].max()))
    assert o.rise_db > 30.0, o
    assert det._joint_rose(o, t)
    assert not det._joint_rose(o, t + 0.065)


# ---- a stray with no attack (STRAY_HEARD, session 28) -------------------------------------
# twelfth-set Beethoven 16-2 (ASAP LuoJ04M; truth seed 1, rich voice) from 2.0 s: a C5-D5
# trill of short notes (held 28-205 ms, the score's), an E3, G3, C4, B4 under it (s, key,
# velocity, held s)
_TRILL = [(0.0583, 74, 53.5, 0.03), (0.1093, 52, 51.2, 0.083), (0.1256, 72, 29.5, 0.028), (0.2361, 74, 51.6, 0.031),
          (0.2816, 72, 49.0, 0.084), (0.3411, 74, 51.9, 0.077), (0.4204, 72, 53.2, 0.053), (0.4829, 74, 59.3, 0.039),
          (0.5889, 72, 30.8, 0.037), (0.5984, 74, 43.4, 0.043), (0.6649, 55, 52.0, 0.069), (0.6815, 74, 71.3, 0.043),
          (0.7459, 72, 46.8, 0.028), (0.819, 74, 61.0, 0.087), (0.9085, 72, 58.4, 0.03), (0.9504, 74, 65.8, 0.136),
          (1.056, 72, 50.7, 0.074), (1.1031, 74, 42.4, 0.136), (1.1489, 72, 61.5, 0.205), (1.1777, 60, 47.0, 0.065),
          (1.1909, 74, 64.6, 0.136), (1.2971, 72, 63.8, 0.205), (1.3952, 71, 68.6, 0.16)]
_TRILL_AT_S = 0.3  # the excerpt's start (s, performance clock)


@cache
def _trill_take() -> tuple[np.ndarray, list[tuple[float, int]], list[Onset]]:
    """The trill's audio (the room's fixed tail; rendered once, read only), its plan (audio
    s, key) and the key-unknown onsets of keys 69..77 (the keys around the trill's)."""
    notes = [HeardNote(int(round((_TRILL_AT_S + u) * 1e6)), p, v, int(round((_TRILL_AT_S + u + d) * 1e6)))
             for u, p, v, d in _TRILL]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, fixed_tail=True), notes, [], 0,
                 render=render_audio_rich).samples()  # type: ignore[arg-type]
    plan = sorted((_TRILL_AT_S + u + OFFSET_S, p) for u, p, _, _ in _TRILL)
    return y, plan, Detector(y, 48000).detect(range(69, 78))


def _trill_strays() -> list[Onset]:
    """The plan-known pass's onsets that no planned strike of their key lies within 100 ms of."""
    y, plan, blind = _trill_take()
    return [o for o in Detector(y, 48000).detect_intended(plan, 0.08, 0.08, blind)
            if not any(q == o.pitch and abs(u - o.t_s) < 0.1 for u, q in plan)]


def test_a_stray_without_an_attack_is_not_reported() -> None:
    # measured: with the rule off a D#5 stray 15 ms after a C5's strike, 48 ms before a
    # D5's, at velocity 0 (its bands read no attack); none with it
    assert _trill_strays() == []


def test_without_the_attack_rule_the_trills_neighbour_is_a_stray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "STRAY_HEARD", False)
    got = _trill_strays()
    assert [o.pitch for o in got] == [75] and got[0].velocity <= 0.0, got
