"""Karplus-Strong audio of the guitar: the loop, its tuning (<= 1 cent, measured on the
rendered sound), the damper's cut, buzz, and the WAV."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest

from robo_player.performance import HeardNote, Performance
from robo_player.sim.guitar.audio import (
    SAMPLE_RATE,
    excitation,
    f0_of,
    ks_reference,
    loop_params,
    render_note,
    render_wav,
)

# E1 (bass), E2 (guitar), A2, G3, E4, B5 (the matrix's top fret on the high E)
PITCHES = [28, 40, 45, 55, 64, 83]


def measured_f0(y: np.ndarray, guess: float, sr: int = SAMPLE_RATE) -> float:
    """The fundamental's frequency: the peak of a zero-padded Hann spectrum near
    ``guess``, refined by a parabola through the log magnitudes."""
    n = 1 << 22
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)), n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    band = np.flatnonzero((f > guess * 0.97) & (f < guess * 1.03))
    i = int(band[np.argmax(spec[band])])
    a, b, c = np.log(spec[i - 1 : i + 2])
    return float((i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n)


def cents(f: float, ref: float) -> float:
    return 1200.0 * math.log2(f / ref)


@pytest.mark.parametrize("pitch", PITCHES)
def test_the_fast_render_is_the_karplus_strong_loop(pitch: int) -> None:
    x = excitation(pitch, 100)
    ref = ks_reference(pitch, x, 4000)
    fast = render_note(pitch, 100, 4000, seed=3)
    assert np.max(np.abs(fast - ref)) < 1e-6 * np.max(np.abs(ref))


@pytest.mark.parametrize("pitch", PITCHES)
def test_rendered_pitch_is_within_one_cent(pitch: int) -> None:
    y = render_note(pitch, 90, SAMPLE_RATE, seed=1)  # 1 s, undamped
    assert abs(cents(measured_f0(y, f0_of(pitch)), f0_of(pitch))) <= 1.0


def test_without_the_tuning_filter_the_pitch_is_off() -> None:
    """The control: the same loop with the delay rounded to whole samples misses by
    several cents high on the neck, so the measurement above can fail."""
    errs = []
    for pitch in (64, 76, 83):
        x = excitation(pitch, 90)
        y = ks_reference(pitch, x, SAMPLE_RATE // 2, tuned=False)
        errs.append(abs(cents(measured_f0(y, f0_of(pitch)), f0_of(pitch))))
    assert max(errs) > 3.0


def test_the_fret_sets_the_pitch() -> None:
    # string E2 at fret 7 is B2: 7 semitones up
    y0 = render_note(40, 90, SAMPLE_RATE, seed=1)
    y7 = render_note(40 + 7, 90, SAMPLE_RATE, seed=1)
    ratio = measured_f0(y7, f0_of(47)) / measured_f0(y0, f0_of(40))
    assert abs(1200 * math.log2(ratio) - 700.0) < 1.0


def test_the_damper_cuts_the_sound() -> None:
    n, end = SAMPLE_RATE, SAMPLE_RATE // 4
    ring = render_note(52, 100, n, None, seed=2)
    cut = render_note(52, 100, n, end, seed=2)
    assert np.array_equal(ring[:end], cut[:end])
    later = slice(end + int(0.06 * SAMPLE_RATE), end + int(0.1 * SAMPLE_RATE))
    rms = lambda a: float(np.sqrt(np.mean(a * a)))  # noqa: E731
    assert rms(cut[later]) < 1e-2 * rms(ring[later])  # -40 dB within 60 ms


def test_louder_is_louder_and_a_buzz_adds_a_rattle() -> None:
    soft = render_note(57, 40, 8000, seed=4)
    loud = render_note(57, 110, 8000, seed=4)
    assert np.max(np.abs(loud)) > 2 * np.max(np.abs(soft))
    clean = render_note(57, 80, 8000, seed=4)
    buzz = render_note(57, 80, 8000, seed=4, buzz=True)
    d = buzz - clean
    assert np.max(np.abs(d[:1000])) > 0.1 * np.max(np.abs(clean)) and np.all(d[3000:] == 0)


def test_loop_is_stable_and_decays() -> None:
    for pitch in PITCHES:
        _, c, g = loop_params(pitch)
        assert -1 < c < 1 and 0 < g <= 1


def test_wav_of_a_performance(tmp_path: Path) -> None:
    perf = Performance(
        heard=[HeardNote(0, 40, 80.0, 500_000), HeardNote(250_000, 59, 100.0, None)],
        extra={"buzzes": [{"t_us": 250_000, "string": 4, "fret": 0}]},
    )
    path = render_wav(perf, tmp_path / "g.wav")
    with wave.open(str(path)) as w:
        assert w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1
        frames = w.getnframes()
        data = np.frombuffer(w.readframes(frames), dtype="<i2")
    assert frames > SAMPLE_RATE  # the undamped B3 rings on
    assert int(np.abs(data).max()) > 20000
