"""Audio rendering (WAV) and the piano roll (PNG) of a performance."""

from __future__ import annotations

import math
import wave

import numpy as np
import pytest

from robo_player.driver.ports import HeardNote, Performance
from robo_player.plan import Command, Op, Plan
from robo_player.sim import open_sim
from robo_player.sim.audio import DAMPER_FADE_S, FADE_TAUS, PAD_S, render_audio, render_wav
from robo_player.sim.pianoroll import plot_pianoroll
from robo_player.spec import load_spec


def read_wav(path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as wf:
        params = wf.getparams()
        data = np.frombuffer(wf.readframes(params.nframes), dtype="<i2")
    return params, data


def test_wav_is_valid_nonsilent_and_has_the_right_length(tmp_path) -> None:
    perf = Performance(heard=[
        HeardNote(500_000, 60, 80.0, 1_500_000),
        HeardNote(700_000, 64, 60.0, 1_500_000),
        HeardNote(900_000, 67, 100.0, 1_500_000),
    ])
    path = render_wav(perf, tmp_path / "out.wav")
    params, data = read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 44100)
    expect_s = 1.5 + FADE_TAUS * DAMPER_FADE_S + PAD_S
    assert params.nframes == pytest.approx(expect_s * 44100, abs=2)
    peak = np.abs(data).max()
    assert 0.85 * 32767 <= peak <= 32767  # normalised, not clipped
    before = data[: int(0.49 * 44100)]
    sounding = data[int(0.6 * 44100) : int(1.4 * 44100)]
    after = data[int((1.5 + FADE_TAUS * DAMPER_FADE_S) * 44100) :]
    assert np.abs(before).max() == 0  # silence before the first onset
    assert np.sqrt(np.mean(sounding.astype(float) ** 2)) > 1000
    assert np.abs(after).max() < 0.02 * peak  # dampers have stopped it
    assert not (tmp_path / "out.wav.tmp").exists()


def test_wav_pitch_is_right() -> None:
    perf = Performance(heard=[HeardNote(0, 69, 90.0, 1_000_000)])
    y = render_audio(perf, sample_rate=44100)[: 44100 // 2]
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    f = np.fft.rfftfreq(len(y), 1 / 44100)
    assert f[np.argmax(spec)] == pytest.approx(440.0, abs=3)


def test_pedal_and_half_pedal_shape_the_release() -> None:
    note = HeardNote(0, 48, 90.0, 500_000)
    dry = render_audio(Performance(heard=[note]))
    half = render_audio(Performance(heard=[note], pedal=[(0, 40)]))
    win = slice(int(0.62 * 44100), int(0.7 * 44100))
    assert np.abs(half[win]).max() > 3 * np.abs(dry[win]).max()
    # a note never damped rings on (the pedal kept it)
    ring = render_audio(Performance(heard=[HeardNote(0, 48, 90.0, None)]))
    assert len(ring) > 3 * 44100 and np.abs(ring[2 * 44100 : 2 * 44100 + 2000]).max() > 0.05 * np.abs(ring).max()


def test_empty_performance_writes_silence(tmp_path) -> None:
    params, data = read_wav(render_wav(Performance(), tmp_path / "e.wav"))
    assert params.nframes == int(PAD_S * 44100) and not data.any()


def test_louder_notes_are_louder() -> None:
    soft = render_audio(Performance(heard=[HeardNote(0, 60, 30.0, 400_000)]))
    loud = render_audio(Performance(heard=[HeardNote(0, 60, 110.0, 400_000)]))
    assert np.abs(loud).max() > 5 * np.abs(soft).max()


def test_pianoroll_png_from_a_simulated_take(tmp_path) -> None:
    spec = load_spec("piano-88-grand")
    intended, cmds = [], []
    for i in range(24):
        p = 48 + (i * 5) % 24
        k = spec.key(p)
        t = 300_000 + 120_000 * i
        v = 30 + 4 * i
        intended.append((t + 40_000, p, 200_000, float(v)))
        cmds.append(Command(t, Op.STRIKE, k.channel, drive=int(k.pwm_max * (0.3 + 0.025 * i)),
                            pulse_us=35_000, hold=int(0.35 * k.pwm_max), note=i))
        cmds.append(Command(t + 200_000, Op.RELEASE, k.channel, note=i))
    plan = Plan(cmds, 300_000, spec.name, spec.spec_hash)
    plan.sort()
    with open_sim("sim://", spec, truth_seed=2) as dev:
        perf = dev.play(plan)
    assert len(perf.heard) >= 20
    out = plot_pianoroll(intended, perf.heard, tmp_path / "roll.png", title="test take")
    head = out.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert not (tmp_path / "roll.png.tmp").exists()
    wav = render_wav(perf, tmp_path / "take.wav", spec=spec)
    params, data = read_wav(wav)
    last_end = max(h.end_us for h in perf.heard)
    assert params.nframes >= math.floor(last_end / 1e6 * 44100) and np.abs(data).max() > 10_000


def test_pianoroll_has_a_legend_and_splits_a_long_piece_into_rows(tmp_path) -> None:
    from robo_player.sim.pianoroll import MAX_ROWS, ROW_S, pianoroll_figure, roll_rows

    assert roll_rows(10.0) == (ROW_S, 1)
    assert roll_rows(129.0) == (ROW_S, 5)
    row_s, rows = roll_rows(3600.0)  # an hour: longer rows, never an endless image
    assert rows == MAX_ROWS and row_s * rows >= 3600.0
    # a 2-minute piece: 4 rows of 30 s, each covering its own stretch of time
    intended = [(i * 500_000, 60 + i % 12, 300_000, 80.0) for i in range(240)]
    heard = [HeardNote(t + 2_000, p, 78.0, t + d) for t, p, d, _v in intended]
    heard.append(HeardNote(5_000_000, 30, 50.0, None))  # a stray onset
    fig = pianoroll_figure(intended, heard, title="long")
    rows_ax = [ax for ax in fig.axes if ax.get_ylabel() == "MIDI pitch"]
    assert len(rows_ax) == 4
    assert [ax.get_xlim() for ax in rows_ax] == [(30.0 * r, 30.0 * (r + 1)) for r in range(4)]
    legend = rows_ax[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("intended" in t for t in labels) and any("no intended" in t for t in labels)
    out = plot_pianoroll(intended, heard, tmp_path / "long.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
