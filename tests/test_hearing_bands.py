"""The band model of one key's partials (robo_player/hearing/bands.py, session 19): the
step fit's and the complex second opinion's one model; its solver against a dense least
squares, its basis, and the keys it leaves out."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.hearing import bands, joint
from robo_player.voicing import f0_hz


def _dense_gains(x: np.ndarray, ends: np.ndarray, cols: list[np.ndarray], shape: np.ndarray, sr: int,
                 t0s: np.ndarray) -> np.ndarray:
    """What a step at each of ``t0s`` removes of the residual, by the full least squares
    over every sample (the columns, then the columns and the step's two)."""
    a = np.stack(cols, axis=1) if cols else np.zeros((len(x), 0), dtype=complex)

    def rss(m: np.ndarray) -> float:
        if not m.shape[1]:
            return float(np.vdot(x, x).real)
        c = np.linalg.lstsq(m, x, rcond=None)[0]
        r = x - m @ c
        return float(np.vdot(r, r).real)

    base = rss(a)
    out = []
    for t0 in t0s:
        m = ends - t0
        s = shape[np.clip(m, 0, len(shape) - 1)]
        out.append(base - rss(np.column_stack([a, s, s * np.maximum(m, 0) / sr])))
    return np.array(out)


@pytest.mark.parametrize("ramp", [1, 96])
def test_the_step_fits_tail_sums_are_the_dense_least_squares(ramp: int) -> None:
    # BandFit.gains sums a step's products over its rise and takes its top from tail sums
    # precomputed once: the same gains as the least squares over every sample, for
    # candidates before, in and after the band, on and off its sample grid
    rng = np.random.default_rng(0)
    sr, pitch = 48000, 57
    win = bands.window(f0_hz(pitch), sr)
    dec = bands.decimation(sr)
    y = rng.normal(size=sr)
    s0, s1 = 12000, 24000
    mix = bands.Mixer(y, sr, s0, s1, win, dec)
    shape = bands.ramp_shape(win, ramp)
    # noise's band and a step struck at sample 18000
    x = mix.band(2 * f0_hz(pitch)) + 3.0 * shape[np.clip(mix.ends - 18000, 0, len(shape) - 1)]
    cum = bands.step_weights(win)
    cols = bands.phasor_columns(0.0, 100.0, mix.tt, mix.ends, cum, [([13.0, -40.0], None), ([5.0], 16000)])
    t0s = np.array([s0 - 3000, s0 + 5, 15007, 17950, 18000, 18011, s1 - 30, s1 + 500])
    fit = bands.BandFit(x, mix, cols, shape)
    want = _dense_gains(x, mix.ends, cols, shape, sr, t0s)
    assert np.allclose(fit.gains(t0s), want, rtol=1e-7, atol=1e-9 * float(np.vdot(x, x).real)), (fit.gains(t0s), want)
    assert int(np.argmax(fit.gains(t0s))) == 4  # the step's own onset


def test_the_basis_spans_the_columns_and_drops_a_repeated_phasor() -> None:
    n = 200
    tt = np.arange(n) / 1000.0
    e1, e2 = np.exp(2j * np.pi * 7.0 * tt), np.exp(2j * np.pi * -31.0 * tt)
    cols = [e1, e1 * tt, e2, e2 * tt, 2.0 * e1]  # the last: e1 again (a key struck twice before)
    q = bands.orthonormal(cols, n)
    assert q.shape == (n, 4)
    assert np.allclose(q.conj().T @ q, np.eye(4), atol=1e-12)
    for c in cols:
        assert np.linalg.norm(c - q @ (q.conj().T @ c)) < 1e-10 * np.linalg.norm(c)
    # the step fit keeps a column that adds little but more than rounding (a partial
    # 0.003 Hz from another's over 0.2 s: 5e-7 of it outside their span, a direction of
    # the envelopes); the complex second opinion drops it
    near = np.exp(2j * np.pi * 7.003 * tt)
    assert bands.orthonormal([e1, e1 * tt, near], n, bands.KEEP_ALL).shape[1] == 3
    assert bands.orthonormal([e1, e1 * tt, near], n).shape[1] == 2


def test_a_key_with_no_partial_in_our_bands_is_left_out_and_that_changes_nothing() -> None:
    # joint.may_meet: whether another key's partials (as partial_freqs measures them) can
    # lie within BAND_SPAN x f0 of ours; where not, the complex model has no column of it
    # and the detector need not measure it (its cost on dense rows)
    assert joint.may_meet(60, 72, bands.BAND_SPAN)  # an octave: our 2nd partial its 1st
    assert joint.may_meet(60, 61, bands.BAND_SPAN)
    assert not joint.may_meet(40, 90, bands.BAND_SPAN)  # far above our 8 partials
    assert not joint.may_meet(30, 72, bands.BAND_SPAN)  # our 8th partial at 370 Hz, its 1st at 523
    rng = np.random.default_rng(1)
    sr, pitch, t = 48000, 30, 0.5
    y = rng.normal(size=sr)
    ours = joint.partial_freqs(np.ones((100, 4097)), sr / 8192, pitch, t, 0.01)
    far = bands.Strike(joint.partial_freqs(np.ones((100, 4097)), sr / 8192, 72, t - 0.2, 0.01), t - 0.2)
    near = bands.Strike(joint.partial_freqs(np.ones((100, 4097)), sr / 8192, 42, t - 0.2, 0.01), t - 0.2)
    times = list(t + np.arange(-0.02, 0.021, 0.001))
    with_far = bands.band_residuals(y, sr, pitch, ours, times, [near, far])
    assert np.array_equal(with_far, bands.band_residuals(y, sr, pitch, ours, times, [near]))
    assert not np.array_equal(with_far, bands.band_residuals(y, sr, pitch, ours, times, []))
