"""The microphone's gain (issue 11): ``sim://?gain_db=`` and the take's level that the
hearing fits instead of knowing it (robo_player/hearing/level.py)."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.calibrator.offline import fixed_take, learn_from_recording
from robo_player.driver import open_port
from robo_player.errors import TransportError
from robo_player.hearing.level import (
    anchor_level_db,
    band_top_hz,
    level_db,
    remove_level,
    take_level_db,
)
from robo_player.hearing.recording import Recording
from robo_player.performance import HeardNote
from robo_player.sim.room import Room, RoomTake
from robo_player.spec import load_spec
from robo_player.voicing import power_for_velocity, velocity_for_power


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


@pytest.mark.parametrize(("url", "message"), [
    ("sim://?gain_db=6", r"sim://\?gain_db=6: option gain_db='6' out of range \(allowed: -60..0\)"),
    ("sim://?gain_db=-61", r"option gain_db='-61' out of range \(allowed: -60..0\)"),
    ("sim://?gain_db=loud", r"option gain_db='loud' must be a number in -60..0"),
    ("sim://?sensor=notes&gain_db=-30", r"option gain_db needs sensor=audio \(this is sensor=notes\)"),
])
def test_gain_db_is_checked(spec, url: str, message: str) -> None:  # noqa: ANN001
    with pytest.raises(TransportError, match=message):
        open_port(url, spec)


def test_gain_db_reaches_the_room(spec) -> None:  # noqa: ANN001
    with open_port("sim://?gain_db=-36.5", spec) as dev:
        assert dev.instrument.microphone.room.gain_db == -36.5  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"room: gain_db 3.0 out of range \(allowed: -60..0\)"):
        Room(gain_db=3.0)


@pytest.mark.parametrize("level", [-12.0, 12.0])
def test_removing_a_level_gives_back_the_velocity(level: float) -> None:
    # a note heard through a microphone ``level`` dB off the reference: louder ones go far
    # past 127 (+12 dB doubles a velocity), and must survive to be brought back
    pitch, sr = 45, 48000
    f = band_top_hz(pitch, sr)
    for v in (20.0, 64.0, 127.0, 162.0):
        heard = velocity_for_power(pitch, power_for_velocity(pitch, v, f) * 10.0 ** (level / 10.0), f)
        assert remove_level(pitch, heard, level, sr) == pytest.approx(v, abs=1e-3)
    pairs = [(pitch, velocity_for_power(pitch, power_for_velocity(pitch, v, f) * 10.0 ** (level / 10.0), f), v)
             for v in (30.0, 90.0, 150.0)]
    assert take_level_db(pairs + [(pitch, float("nan"), 80.0)], sr) == (pytest.approx(level, abs=1e-6), 3)
    assert take_level_db([], sr) == (0.0, 0)
    # a stray (a note heard far off what was meant) does not move it: the middle half
    stray = [(pitch, 127.0, 20.0)]
    assert take_level_db(pairs * 3 + stray, sr) == (pytest.approx(level, abs=1e-6), 10)


@pytest.mark.parametrize("level", [-7.0, 0.0, 5.0])
def test_the_anchor_is_the_keys_mean_loudness_in_velocity(level: float) -> None:
    """The calibration's anchor: the level at which the keys' mean loudness (velocity
    units, every key alike) is the nominal. Keys whose loudness spreads symmetric in
    velocity but not in their middle half, at pitches across the keyboard, heard through
    a microphone ``level`` dB off the reference; two strays (a key that barely sounded, a
    wrong strike) are left out. The middle half's mean (take_level_db, verify's rule) and
    the mean in dB both read such keys off (docs/calibration.md, "Loudness through the microphone")."""
    sr, want = 48000, 135.0
    ratios = [0.8, 0.8, 0.81, 0.82, 0.9, 1.0, 1.03, 1.05, 1.07, 1.1, 1.2, 1.2, 1.2, 1.2]
    ratios.append(len(ratios) + 1.0 - sum(ratios))  # the keys' mean loudness is the nominal exactly
    pitches = list(range(24, 24 + 6 * len(ratios), 6))

    def heard(p: int, v: float) -> float:
        f = band_top_hz(p, sr)
        return velocity_for_power(p, power_for_velocity(p, v, f) * 10.0 ** (level / 10.0), f)

    pairs = [(p, heard(p, r * want), want) for p, r in zip(pitches, ratios, strict=True)]
    strays = [(30, heard(30, 0.25 * want), want), (90, heard(90, 2.5 * want), want)]
    got, n = anchor_level_db(pairs + strays, sr, 0.12)
    assert n == len(pairs)
    assert got == pytest.approx(level, abs=1e-3)
    assert np.mean([remove_level(p, h, got, sr) / e for p, h, e in pairs]) == pytest.approx(1.0, abs=1e-4)
    # what the other rules read on the same keys
    assert abs(take_level_db(pairs + strays, sr)[0] - level) > 0.15
    in_db = float(np.mean([level_db(p, h, e, sr) for p, h, e in pairs]))
    assert abs(in_db - level) > 0.05
    assert anchor_level_db([(30, float("nan"), want)], sr, 0.12) == (0.0, 0)


def test_learning_from_recordings_at_two_gains(spec) -> None:  # noqa: ANN001
    # calibrate --from-recording: a recorder of unknown gain; the same take recorded
    # 12 dB apart gives the same curves (told the reference gain, they were 2x apart)
    plan, played = fixed_take(spec, pitches=[60, 67])
    cals, levels = [], []
    for gain in (-30, -18):
        with open_port(f"sim://?sensor=audio&truth_seed=4&gain_db={gain}", spec) as dev:
            take = dev.play(plan).audio
        assert take is not None
        cal, rep = learn_from_recording(spec, Recording(take.samples(), take.sample_rate), played, "take.wav")
        cals.append(cal)
        levels.append(rep.audio_level_db)
        assert rep.audio_level_keys == 2
    assert levels[1] - levels[0] == pytest.approx(12.0, abs=0.3)
    for p in (60, 67):
        for d in (0.5, 0.7, 0.85, 1.0):
            assert cals[0].keys[p].velocity_at(d) == pytest.approx(cals[1].keys[p].velocity_at(d), abs=1.0), (p, d)


def _lead_in_sd(notes: list[HeardNote], gain_db: float = -24.0) -> tuple[float, np.ndarray]:
    """The noise's sd over the take's first 40 ms (before any note) and the samples."""
    y = RoomTake(Room(offset_s=0.1, drift_ppm=0.0, gain_db=gain_db), notes, [], 0).samples().astype(np.float64)
    return float(np.std(y[: int(0.04 * 48000)])), y


def test_room_noise_is_fixed_whatever_is_played() -> None:
    """A soft calibration strike is heard against the same noise as a loud chord (the
    noise once followed each take's mean power: a quiet take was a quiet room)."""
    soft, _ = _lead_in_sd([HeardNote(300_000, 60, 15.0, 600_000)])
    loud, _ = _lead_in_sd([HeardNote(300_000, p, 120.0, 900_000) for p in (48, 52, 55, 60, 64)])
    assert soft == pytest.approx(loud, rel=0.05)


def test_a_quiet_microphone_is_a_noisy_one() -> None:
    """The converter's floor does not follow the gain: 36 dB less gain costs signal to noise."""
    note = [HeardNote(300_000, 60, 64.0, 800_000)]
    snr = []
    for gain in (-24.0, -60.0):
        sd, y = _lead_in_sd(note, gain)
        snr.append(20 * np.log10(float(np.std(y[int(0.45 * 48000) : int(0.75 * 48000)])) / sd))
    assert snr[0] - snr[1] > 10.0, snr
