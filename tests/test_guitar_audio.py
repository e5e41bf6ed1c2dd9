"""The guitar heard through a microphone: the room renders its picks in the guitar's voice,
the guitar's ear times and weighs them, and the calibration through audio finds the truth."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from robo_player.calibrator.guitar import calibrate_guitar, settle_written_us
from robo_player.driver import open_port
from robo_player.errors import HearingError, TransportError
from robo_player.hearing.align import PATTERN_US
from robo_player.hearing.guitar import (
    REFERENCE_GAIN_DB,
    PickEar,
    align_picks,
    power_of_velocity,
    velocity_of_power,
)
from robo_player.performance import HeardNote
from robo_player.plan import Command, Op, Plan
from robo_player.sim.guitar.audio import render_audio, render_note
from robo_player.sim.room import Room, RoomTake
from robo_player.spec import load_spec

SR = 48000


def _picks(spec: Any, string: int, times: list[int]) -> Plan:
    a = spec.actuators[spec.strings[string].picker.channel]
    d = spec.actuators[spec.strings[string].damper.channel]
    cmds = []
    for i, t in enumerate(times):
        cmds.append(Command(t, Op.PULSE_HOLD, a.index, a.pwm_max, spec.timing.pick_pulse_us, 0, i))
        cmds.append(Command(t + 200_000, Op.PULSE_HOLD, d.index, d.pwm_max, spec.timing.damp_us, 0))
    plan = Plan(commands=cmds, pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    return plan


def test_sim_with_sensor_audio_records_the_guitar(opened: Any) -> None:
    spec = load_spec("guitar-slider")
    dev = opened(open_port("sim://?sensor=audio&offset_s=0.1&drift_ppm=0", spec, truth_seed=3))
    perf = dev.play(_picks(spec, 5, [100_000, 500_000]))
    assert perf.audio is not None and perf.audio.sample_rate == SR
    y = perf.audio.samples()
    assert len(perf.heard) == 2
    for h in perf.heard:  # each pick is a step in the recording where the physics sounded it
        i = int(round((h.t_us * 1e-6 + 0.1) * SR))
        before = float(np.mean(y[i - 400 : i - 20].astype(np.float64) ** 2))
        after = float(np.mean(y[i + 20 : i + 400].astype(np.float64) ** 2))
        assert after > 1000 * before, (h, before, after)
    # the guitar's voice, not the piano's: the take's first pick has the string's period
    i = int(round((perf.heard[0].t_us * 1e-6 + 0.1) * SR))
    seg = y[i : i + 8192].astype(np.float64)
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
    period = SR / (440.0 * 2 ** ((spec.open_pitch(5) - 69) / 12))
    lag = int(np.argmax(ac[int(period * 0.8) : int(period * 1.2)])) + int(period * 0.8)
    assert abs(lag - period) < 2


def test_the_guitar_hears_through_audio_by_default_and_checks_audio_options(opened: Any) -> None:
    spec = load_spec("guitar-matrix")
    dev = opened(open_port("sim://", spec, truth_seed=1))
    assert dev.play(_picks(spec, 0, [100_000])).audio is not None  # a microphone, as the piano's
    notes = opened(open_port("sim://?sensor=notes", spec, truth_seed=1))
    assert notes.play(_picks(spec, 0, [100_000])).audio is None
    with pytest.raises(TransportError, match="option snr_db needs sensor=audio"):
        open_port("sim://?sensor=notes&snr_db=20", spec)
    with pytest.raises(TransportError, match=r"sample_rate=22050 \(allowed: 44100, 48000\)"):
        open_port("sim://?sensor=audio&sample_rate=22050", spec)


def test_the_ear_level_law_is_the_voice_s() -> None:
    """The ear's law against the first period the voice renders: one pitch, a range of
    loudness, the same ratio (the pitch's own timbre is a constant; the law's shape holds)."""
    for pitch in (40, 52, 64, 76):
        ratios = []
        for v in (30.0, 50.0, 70.0, 90.0, 110.0, 127.0):
            y = render_note(pitch, v, SR // 2, sample_rate=SR)
            pk = PickEar(np.r_[np.zeros(SR // 10), y], SR).find(pitch, 0.09, 0.2)
            assert pk is not None and abs(pk.t_s - 0.1) < 30e-6
            ratios.append(pk.power / float(power_of_velocity(v, pk.spectrum)))
        assert max(ratios) / min(ratios) < 1.05, (pitch, ratios)  # measured: 1.01-1.03
        # each pitch's own timbre: a constant within ~10 % of the law's (a few % of velocity)
        assert 0.75 < ratios[-1] < 1.15, (pitch, ratios)
    assert velocity_of_power(float(power_of_velocity(77.0))) == pytest.approx(77.0, abs=0.1)


def test_the_ears_reference_is_the_voices_mean_over_the_neck() -> None:
    """What a known microphone gain means to the ear: the voice's first period against the
    law, over the bass's and the guitar's pitches, on average -REFERENCE_GAIN_DB (each
    pitch's own timbre spreads around it): a chain of +0.22 dB reads as level 0."""
    db = []
    for pitch in range(28, 89, 3):
        y = render_note(pitch, 100.0, SR // 2, sample_rate=SR)
        pk = PickEar(np.r_[np.zeros(SR // 10), y], SR).find(pitch, 0.09, 0.2)
        assert pk is not None
        db.append(10.0 * math.log10(pk.power / float(power_of_velocity(100.0, pk.spectrum))))
    assert abs(float(np.mean(db)) + REFERENCE_GAIN_DB) < 0.08, np.round(db, 2)  # measured: mean -0.21
    assert 0.15 < float(np.std(db)) < 0.5  # each pitch's timbre: PICK_LEVEL_NOISE_DB's share


def test_the_ear_times_picks_in_a_room_to_tens_of_microseconds() -> None:
    rng = np.random.default_rng(4)
    notes, t = [], 300_000
    for _ in range(30):
        t += 400_000 + int(rng.integers(0, 997))
        p = int(rng.choice([40, 45, 50, 55, 59, 64])) + int(rng.integers(0, 8))
        notes.append(HeardNote(t, p, float(rng.uniform(35, 127)), t + 200_000))
    take = RoomTake(Room(sample_rate=SR, offset_s=0.2, drift_ppm=0, seed=3), notes, [], 0, render=render_audio)
    ear = PickEar(take.samples(), SR)
    err, ratio, picks = [], [], []
    for h in notes:
        ta = h.t_us * 1e-6 + 0.2
        pk = ear.find(h.pitch, ta - 0.03, ta + 0.1)
        assert pk is not None, h
        err.append(pk.t_s - ta)
        ratio.append(pk.power / float(power_of_velocity(h.velocity, pk.spectrum)))
        picks.append(pk)
    assert np.max(np.abs(err)) < 100e-6  # measured: 21 us at most (seed 1)
    # loudness: one level for the take; each pitch's own timbre leaves a few % of velocity
    level = float(np.exp(np.mean(np.log(ratio))))
    v_err = [abs(pk.velocity(level) - h.velocity) for pk, h in zip(picks, notes, strict=True)]
    assert float(np.mean(v_err)) < 2.5
    assert 10 * math.log10(level) == pytest.approx(-24.0, abs=1.0)  # the room's default gain


def _candidates_one_by_one(ear: PickEar, t0_s: float, t1_s: float) -> list[int]:
    """PickEar.candidates as it was before session 27: the background one sample at a time."""
    from robo_player.hearing.guitar import RISE_DB, RISE_WIN_S, SKIP_S

    i0, i1 = max(0, int(t0_s * ear.sr)), min(len(ear.y), int(t1_s * ear.sr))
    w = int(RISE_WIN_S * ear.sr)
    hop = max(1, w // 4)
    out: list[int] = []
    i = i0
    while i < i1:
        idx = np.arange(i, min(i1, i + 200 * hop), hop)
        p = ear._power(idx, w)
        hit = None
        for j, k in enumerate(idx.tolist()):
            if p[j] > 10.0 ** (RISE_DB / 10.0) * max(ear._background(k), 1e-20):
                hit = k
                break
        if hit is None:
            i = int(idx[-1]) + hop
            continue
        out.append(hit)
        i = hit + int(SKIP_S * ear.sr)
    return out


def test_the_ears_candidates_are_the_one_by_one_backgrounds() -> None:
    """PickEar.candidates takes the background of a batch of samples at once (a plain
    speed-up, session 27: the loop a sample was most of a guitar calibration's time): the
    same backgrounds to the bit and the same candidates as one sample at a time, over a
    take of picks loud and soft, from its first sample (fewer windows before it) to its end."""
    rng = np.random.default_rng(6)
    notes, t = [], 2_000
    for _ in range(16):
        p = int(rng.choice([40, 45, 50, 55, 59, 64])) + int(rng.integers(0, 8))
        notes.append(HeardNote(t, p, float(rng.uniform(10, 127)), t + int(rng.integers(20_000, 300_000))))
        t += int(rng.integers(30_000, 400_000))
    take = RoomTake(Room(sample_rate=SR, offset_s=0.0, drift_ppm=0, seed=5), notes, [], 0, render=render_audio)
    ear = PickEar(take.samples(), SR)
    ks = np.r_[np.arange(0, 3000), rng.integers(0, len(ear.y), 3000), np.arange(len(ear.y) - 50, len(ear.y))]
    assert ear._backgrounds(ks).tolist() == [ear._background(int(k)) for k in ks]
    end = len(ear.y) / SR
    for t0, t1 in ((0.0, end), (0.0, 0.004), (0.33, 1.7), (end - 0.5, end + 1.0)):
        got = ear.candidates(t0, t1)
        assert got == _candidates_one_by_one(ear, t0, t1), (t0, t1)
    assert len(ear.candidates(0.0, end)) >= 12
    # noise whose power steps up 11-13 dB (the rise's threshold 12 dB) and back: the same
    # samples cross it first in both (the threshold 0.5 dB lower moves them: checked)
    y = np.random.default_rng(7).normal(0.0, 1e-3, SR * 3)
    for k, db in enumerate((11.0, 11.6, 11.9, 12.1, 12.4, 13.0)):
        y[int((0.3 + 0.45 * k) * SR) : int((0.5 + 0.45 * k) * SR)] *= 10 ** (db / 20)
    ear = PickEar(y, SR)
    got = ear.candidates(0.0, 3.0)
    assert got == _candidates_one_by_one(ear, 0.0, 3.0) and len(got) >= 2, got


def test_align_picks_finds_offset_and_drift_and_says_when_no_pattern() -> None:
    starts = [0, 20_000_000]
    notes = [HeardNote(s + dt + 40_000, 64, 120.0, s + dt + 140_000) for s in starts for dt in PATTERN_US]
    room = Room(sample_rate=SR, offset_s=0.3, drift_ppm=80, seed=2)
    take = RoomTake(room, notes, [], 0, render=render_audio)
    clock = align_picks(PickEar(take.samples(), SR), 64, starts, "take")
    assert clock.drift_ppm == pytest.approx(80, abs=3)
    # the pattern's MCU times are the picks' commands: aligned, a pick's onset reads early
    # by its latency (here 40 ms)
    assert clock.to_audio_s(0) == pytest.approx((0.04 + 0.3) * (1 + 80e-6), abs=30e-6)
    lone = RoomTake(room, notes[:1], [], 1, render=render_audio)
    with pytest.raises(HearingError, match="the sync pattern .* was not heard"):
        align_picks(PickEar(lone.samples(), SR), 64, starts, "take")


def _truth_curve(tr: Any, d: float) -> tuple[float, float]:
    u = (d - tr.threshold) / (1 - tr.threshold)
    lat = tr.latency_full_us * u ** (-tr.alpha)
    vel = tr.gain * (tr.v0 + (1 - tr.v0) * (1 - math.exp(-tr.k * u)) / (1 - math.exp(-tr.k)))
    return lat, min(vel, 127.0)  # the voice's loudest is 127


def test_calibration_through_audio_finds_the_truth(opened: Any) -> None:
    """With the spec's sync click and the picks' own spread (sim://'s default): the clock
    from the clicks, every picker's curve near the truth's, each contact's settle above
    it. Before the click, c read from the curves' shape was 27-90 ms off with the spread
    (docs/simulator.md, "Spread")."""
    spec = load_spec("guitar-slider")
    assert spec.sync_click is not None
    dev = opened(open_port("sim://?sensor=audio", spec, truth_seed=11))
    cal, rep = calibrate_guitar(dev, spec)
    truth = dev._truth
    assert rep.heard_by == "audio" and rep.clock_by == "click" and rep.sync_offset_us is None
    for s, c in cal.pickers.items():
        for d in (0.4, 0.6, 0.8, 1.0):
            lat, vel = _truth_curve(truth.strings[s], d)
            # each pick lands 0.4-0.85 ms off its curve (its own spread), 13 picks a curve:
            # measured 424 us at most at full drive
            assert abs(c.latency_at(d) - lat) < 1_000, (s, d)
            # the loudness scale is anchored on the nominal at full drive (six strings)
            assert abs(c.velocity_at(d) - vel) < 10, (s, d)
    for role, settle in cal.settle_us.items():  # each press settles within ~3 s.d. of its truth
        assert truth.pressers[role] <= settle <= settle_written_us(truth.pressers[role] + 2_500), role
    assert rep.unsettled == []


def test_calibration_through_audio_without_a_click_finds_c_on_the_exact_instrument(opened: Any) -> None:
    """Without a sync click the aligned times are early by c, the sync picker's full-drive
    latency, found from the curves' shape: right on the exact instrument (spread=0; with
    the spread it is tens of ms off: docs/simulator.md, "Spread"), and the user is warned
    that the absolute time is a guess."""
    spec = replace(load_spec("guitar-slider"), sync_click=None)
    dev = opened(open_port("sim://?sensor=audio&spread=0", spec, truth_seed=11))
    cal, rep = calibrate_guitar(dev, spec)
    truth = dev._truth
    assert rep.heard_by == "audio" and rep.clock_by == "curves" and rep.sync_offset_us is not None
    assert rep.sync_offset_us == pytest.approx(truth.strings[5].latency_full_us, abs=300)
    for s, c in cal.pickers.items():
        for d in (0.4, 0.6, 0.8, 1.0):
            lat, _ = _truth_curve(truth.strings[s], d)
            assert abs(c.latency_at(d) - lat) < 400, (s, d)  # measured: 50 us at most


def test_calibration_of_one_string_through_audio_in_seconds(opened: Any) -> None:
    """One string, heard through the room with the spread: the clock from the sync click
    (without one, one curve alone tells ``c`` less surely than six)."""
    spec = load_spec("guitar-slider")
    dev = opened(open_port("sim://?sensor=audio&snr_db=30", spec, truth_seed=5))  # with the spread
    cal, rep = calibrate_guitar(dev, spec, strings=[3])
    truth = dev._truth
    assert rep.heard_by == "audio" and set(cal.pickers) == {3} and rep.picks == 13 + 7
    for d in (0.5, 0.75, 1.0):
        lat, vel = _truth_curve(truth.strings[3], d)
        assert abs(cal.pickers[3].latency_at(d) - lat) < 800, d  # measured: 280 us at most
        assert abs(cal.pickers[3].velocity_at(d) - vel) < 10, d
    settle = truth.pressers["press:3"]
    assert settle <= cal.settle_us["press:3"] <= settle_written_us(settle + 3_000)
