"""Calibration through audio on a few keys (issue 11): the simulated room microphone
(``sim://``'s default sensor) hands the calibrator a recording; it aligns the clocks on its
sync patterns and hears each strike with the detector. Full-piano figures: bench/."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from robo_player.calibrator import calibrate_session
from robo_player.calibrator.offline import fixed_take, learn_from_recording
from robo_player.driver import open_port
from robo_player.errors import HearingError
from robo_player.hearing.level import anchor_level_db
from robo_player.hearing.recording import Recording
from robo_player.spec import load_spec

PITCHES = [57, 64, 69, 76]


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _truth_latency(kt: object, d: float) -> float:
    u = (d - kt.threshold) / (1.0 - kt.threshold)  # type: ignore[attr-defined]
    return kt.latency_full_us * u ** (-kt.alpha) if u > 0 else math.inf  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def audio_session(spec):  # noqa: ANN001, ANN201
    dev = open_port("sim://?sensor=audio&truth_seed=3", spec)
    try:
        cal, rep = calibrate_session(dev, spec, pitches=PITCHES)
        return cal, rep, dev._truth
    finally:
        dev.close()


def test_calibration_hears_through_audio(audio_session) -> None:  # noqa: ANN001
    cal, rep, truth = audio_session
    assert rep.heard_by == "audio" and rep.clock_by == "click"  # the spec has a sync click
    assert rep.sync_offset_us is None  # no constant guessed: the clicks fix the clock
    for p in PITCHES:
        c = cal.keys[p]
        assert 3 <= c.strikes <= 14
        assert all(np.isfinite(c.latency_us)) and all(np.isfinite(c.velocity))
        kt = truth.key(p)
        # the latency table's shape: relative to full drive, over the upper drives
        d = np.linspace(0.6, 1.0, 9)
        mine = np.array([c.latency_at(x) for x in d]) - c.latency_at(1.0)
        true = np.array([_truth_latency(kt, x) for x in d]) - _truth_latency(kt, 1.0)
        assert np.max(np.abs(mine - true)) < 3_000, (p, np.round(mine - true))
        # absolute, not only its shape: the full-drive latency itself
        assert abs(c.latency_at(1.0) - kt.latency_full_us) < 1_000, p  # measured: 30-260 us


@pytest.fixture(scope="module")
def quiet_session(spec):  # noqa: ANN001, ANN201
    # the same piano through a microphone 12 dB quieter (farther, or a lower preamp gain)
    with open_port("sim://?sensor=audio&truth_seed=3&gain_db=-36", spec) as dev:
        return calibrate_session(dev, spec, pitches=PITCHES)


def test_calibration_does_not_depend_on_the_microphones_gain(audio_session, quiet_session) -> None:  # noqa: ANN001
    # the microphone's gain is unknown on a real setup: the session fits the take's level
    # on its first round's full-drive strikes against the spec's nominal, so the curves
    # come out the same at -24 and -36 dB (told the gain, they were 12 dB = 2x apart)
    cal, rep, truth = audio_session
    cal_q, rep_q = quiet_session
    assert rep.audio_level_db is not None and rep_q.audio_level_db is not None
    assert rep.audio_level_keys == rep_q.audio_level_keys == len(PITCHES)
    assert rep.audio_level_db - rep_q.audio_level_db == pytest.approx(12.0, abs=0.3)
    # at the detector's reference gain the level is only the keys' own mean loudness at
    # full drive against the nominal's (the truth's keys: 108..162, the nominal 135; the
    # anchor's rule on the truth's, docs/calibration.md "Loudness through the microphone": +0.60 dB here, their
    # median +0.89); what is left is the four keys' own read at full drive (the level
    # came out +0.19 dB before session 22, +0.06 dB with the power sum through short
    # windows: key 69 reads ~6 % soft in both)
    own, _ = anchor_level_db([(p, truth.key(p).gain, 135.0) for p in PITCHES], 48000, 0.12)
    assert rep.audio_level_db == pytest.approx(own, abs=0.6)
    d = np.linspace(0.5, 1.0, 11)
    for p in PITCHES:
        a = np.array([cal.keys[p].velocity_at(x) for x in d])
        b = np.array([cal_q.keys[p].velocity_at(x) for x in d])
        assert np.max(np.abs(a - b)) < 1.0, (p, np.round(a - b, 2))


def test_calibration_without_a_click_guesses_c(spec) -> None:  # noqa: ANN001
    bare = replace(spec, sync_click=None)
    with open_port("sim://?sensor=audio&truth_seed=3", bare) as dev:
        cal, rep = calibrate_session(dev, bare, pitches=PITCHES)
    assert rep.heard_by == "audio" and rep.clock_by == "curves"
    assert rep.sync_offset_us is not None and 0 < rep.sync_offset_us < 60_000
    assert set(cal.keys) >= set(PITCHES)


def test_learning_from_a_recording_of_the_fixed_take(spec) -> None:  # noqa: ANN001
    plan, played = fixed_take(spec, pitches=[60, 67])
    # 9 drives and 2 key-return probes a key (offline.probe_gaps)
    assert played["sync_pitch"] == 72 and len(played["strikes"]) == 22
    assert sum("probe_gap_us" in s for s in played["strikes"]) == 4
    with open_port("sim://?sensor=audio&truth_seed=4", spec) as dev:
        perf = dev.play(plan)
        truth = dev._truth
    take = perf.audio
    assert take is not None
    cal, rep = learn_from_recording(spec, Recording(take.samples(), take.sample_rate), played, "take.wav")
    assert rep.heard_by == "audio" and set(rep.lat_rms_us) == {60, 67}
    # the take clicked its patterns (the spec has a sync click): absolute, no c guessed
    assert played["click_delay_us"] == spec.sync_click.delay_us and rep.clock_by == "click"
    assert rep.sync_offset_us is None
    for p in (60, 67):
        assert abs(cal.keys[p].latency_at(1.0) - truth.key(p).latency_full_us) < 1_000, p
        # the probes measured the key's return: never short of it (the margin), not far over
        ret = cal.keys[p].return_us
        assert ret is not None and truth.key(p).return_us <= ret < truth.key(p).return_us + 15_000, (p, ret)
    assert rep.return_probes == 4 and set(rep.return_us) == {60, 67}
    # a recording of something else: the sync pattern is not there
    other = np.random.default_rng(0).normal(0, 0.01, take.sample_rate * 5).astype(np.float32)
    with pytest.raises(HearingError, match="sync pattern"):
        learn_from_recording(spec, Recording(other, take.sample_rate), played, "other.wav")


def test_sim_hears_through_the_room_microphone_by_default(spec) -> None:  # noqa: ANN001
    # issue 11 §1: audio is sim://'s default; sensor=notes keeps the note-level sensor;
    # the guitar's too since session 12 (its voice in the room, docs/guitar.md)
    from robo_player.planner.piano import plan_piano
    from robo_player.score import Note, Score

    plan, _ = plan_piano(Score(notes=[Note(69, 0, 200_000, 90)]), spec)
    with open_port("sim://", spec) as dev:
        take = dev.play(plan).audio
    assert take is not None and take.sample_rate == 48000
    y = take.samples()
    assert np.sqrt(np.mean(y * y)) > 0 and np.max(np.abs(y)) < 1.0  # a note, not clipped
    with open_port("sim://?sensor=notes", spec) as dev:
        assert dev.play(plan).audio is None
    with open_port("sim://", load_spec("guitar-slider")) as dev:
        assert dev.instrument.microphone.room is not None  # type: ignore[attr-defined]
    with open_port("sim://?sensor=notes", load_spec("guitar-slider")) as dev:
        assert dev.instrument.microphone.room is None  # type: ignore[attr-defined]


def _soft_end_error_us(c: object, kt: object, pwm_max: int) -> float:
    """The table's largest latency error against the truth over the velocities a piece
    asks for (25..115), at the drives the planner would use (rounded to PWM counts)."""
    err = []
    for v in np.linspace(max(25.0, c.min_velocity), min(115.0, c.max_velocity), 40):  # type: ignore[attr-defined]
        d = round(c.drive_for_velocity(v) * pwm_max) / pwm_max  # type: ignore[attr-defined]
        err.append(abs(c.latency_at(d) - _truth_latency(kt, d)))  # type: ignore[attr-defined]
    return float(max(err))


def test_a_soft_strike_heard_far_from_its_prediction_is_not_silence(spec) -> None:  # noqa: ANN001
    """Seed 1, key 83 (threshold 0.295): its round-0 strike at drive 0.337 sounds at
    189 ms, where the nominal curve put it at 76 ms; not heard in that window it was
    taken as silence, the threshold came out 0.341 and the soft table 5.7 ms off.
    A strike not heard where predicted is looked for again up to the silent latency
    (listening.expected_window: ``wide``). Measured after: 0.14-0.49 ms."""
    keys = [48, 83, 84]
    # exact (spread=0): with the strikes' own spread (the default) key 48's soft end is
    # 3.4 ms off (docs/simulator.md, "Spread"); this test is about the wide window
    dev = open_port("sim://?sensor=audio&spread=0", spec, truth_seed=1, sensor_seed=1)
    try:
        cal, rep = calibrate_session(dev, spec, pitches=keys, max_strikes_per_key=14)
        truth = dev._truth
    finally:
        dev.close()
    assert rep.heard_by == "audio" and rep.strikes_per_key <= 14
    for p in keys:
        assert _soft_end_error_us(cal.keys[p], truth.key(p), spec.key(p).pwm_max) < 1_500, p


def test_slow_soft_onsets_weigh_less_in_an_audio_fit() -> None:
    """Key 48 of the 88-key seed-1 session, as heard: its three softest strikes (270-280 ms,
    loudness ~15) were heard up to 15 ms late; fitted with the note-level sensor's
    uniform 200 us, the curve bent to them: 8 ms off at the soft notes a piece plays. The
    detector's onset noise grows with the latency (``LAT_REL_NOISE_AUDIO``), and the
    poor-fit test weighs the residuals against that noise (with the old test the
    down-weighted fit was called poor: the isotonic table, 44 ms off)."""
    from robo_player.calibrator.fitting import fit_key
    from robo_player.calibrator.session import NOISE_AUDIO
    from robo_player.calibrator.strikes import StrikeResult

    heard = [  # (drive, latency us, loudness, probe gap) as the session heard them
        (1.0, 21232, 157.2, None), (0.5321, 35193, 120.7, None), (0.337, 55198, 78.6, None),
        (0.181, 277831, 17.7, None), (0.2352, 97560, 40.5, None), (0.7441, 26447, 136.0, None),
        (1.0, 24523, 122.8, 48000), (0.1812, 284566, 14.2, None), (0.1858, 240049, 16.3, None),
        (0.377, 48751, 88.5, None),
    ]
    strikes = [StrikeResult(48, d, 0, True, float(lat), v, gap) for d, lat, v, gap in heard]
    fit = fit_key(strikes, *NOISE_AUDIO)
    assert fit is not None and not fit.isotonic
    # the truth of seed 1's key 48
    thr, full, alpha = 0.16930098184757542, 21051.365892775146, 0.6047777627957623
    d = np.linspace(0.20, 0.60, 21)  # loudness ~25 to ~125
    true = full * ((d - thr) / (1 - thr)) ** (-alpha)
    assert np.max(np.abs(fit.latency_us(d) - true)) < 1_500, np.round(fit.latency_us(d) - true)
    assert abs(fit.theta - thr) < 0.005


def test_a_strike_just_above_the_threshold_not_heard_was_missed() -> None:
    """Key 47 of the 88-key seed-2 session, as heard: its strike at drive 0.304 sounded
    at 185 ms (loudness 17) and was not heard; 0.307 and 0.309 were (170, 158 ms). Taken
    as silence it pinned the threshold at 0.301 (truth 0.285) and the curve was 2 ms off
    at loudness 50. The curve through the heard strikes puts it well under the silent
    bar: :func:`mark_missed` marks it missed (neither heard nor silent)."""
    from robo_player.calibrator.fitting import fit_key
    from robo_player.calibrator.listening import mark_missed
    from robo_player.calibrator.session import NOISE_AUDIO
    from robo_player.calibrator.strikes import StrikeResult

    heard = [  # (drive, latency us or None: not heard, loudness, probe gap)
        (1.0, 19160, 127.8, None), (0.532, 38400, 85.3, None), (0.337, 99520, 30.5, None),
        (0.304, None, 0.0, None), (0.347, 88420, 35.7, None), (0.782, 24420, 118.2, None),
        (1.0, 31710, 103.5, 48000), (0.307, 170140, 18.2, None), (0.309, 158210, 19.5, None),
        (0.476, 44070, 74.1, None),
    ]
    strikes = [
        StrikeResult(47, d, 0, lat is not None, math.nan if lat is None else float(lat), v, gap)
        for d, lat, v, gap in heard
    ]
    assert mark_missed(strikes) == 1 and strikes[3].missed
    fit = fit_key(strikes, *NOISE_AUDIO)
    assert fit is not None
    thr, full, alpha = 0.2854991890483217, 19683.243818567153, 0.6140898121075763  # seed 2's key 47
    d = np.linspace(0.33, 0.70, 21)  # loudness ~30 to ~115
    true = full * ((d - thr) / (1 - thr)) ** (-alpha)
    assert np.max(np.abs(fit.latency_us(d) - true)) < 1_000, np.round(fit.latency_us(d) - true)
