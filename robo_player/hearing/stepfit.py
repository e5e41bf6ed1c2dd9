"""The onset of a planned bass key that the long windows hear but the salience cannot
time, by a least-squares fit of a step in each of its partials' bands (issue 11).

Below D3 a soft key under a louder related key ringing (a tone, a fifth, an octave) or
struck in a chord lifts its partials' 2048-sample bins by under 6 dB: a semitone's or
a tone's partials share them, so the salience rise that times every other note is not
there. The 8192-sample decomposition (:attr:`Detector.bass`) still says the key was
struck in the window; it cannot say when (its windows are 170 ms long).

Here each partial ``k·f0`` of the key (its string's stretch searched on a grid,
:data:`STRETCHES`) is mixed down to 0 Hz and low-passed by a Hann window of
:data:`BAND_PERIODS` periods of f0 (±f0/2: the key's own other partials out),
decimated to :data:`DECIMATE_HZ`. In that band the sound before the key's strike is
the sum of the partials of the keys the plan has sounding (each a phasor turning at its
offset from ``k·f0``, its level and decay free: two columns, ``e`` and ``t·e``; a key
struck inside the fit enters as its own step at its planned time), and the strike adds
a step at ``t0`` through the same window (a phasor of free level, and ``t``-times it:
the partial's decay, the room's build-up, a small error of its frequency). For each
``t0`` on a 1 ms grid over the search window the least-squares fit's residual is
taken; the onset is the ``t0`` where the step removes most of the residual, summed over
the partials (the fit's own weighting: each band's noise is the room's, white, so the
sum is the maximum-likelihood choice), over the stretches tried.

A fit, not a threshold: the step is found where it explains the samples, however much
the neighbours' partials around it dominate its bins. It reads the pins' sound only (the
audio); the plan gives which keys may sound and where the search looks, never the onset.
docs/hearing.md, "Measured", session 17.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..voicing import f0_hz

# the partials' stretch: k·f0·(1 + s·k²/2), s on this grid (the string's inharmonicity is
# not known: the grid spans a bass string's and more; the best fit picks)
STRETCHES = (1e-3 / 16, 2e-3 / 16, 4e-3 / 16, 8e-3 / 16)
BAND_PERIODS = 4.0  # the band's window: this many periods of f0 (a Hann: ±f0/2 wide)
DECIMATE_HZ = 1000.0  # the band's samples: 1 ms apart
PRE_S = 0.2  # the fit begins this long before the search window (the ringing keys' level) ...
ATTACK_CLEAR_S = 0.01  # ... or this long after the window of the last strike before it has passed
MIN_PRE_S = 0.02  # ... but at least this long before the search window
POST_S = 0.1  # and ends this long after it (the step's level) or at the next strike
MIN_POST_S = 0.02  # ... but at least this long after it
SPAN = 0.75  # a sounding key's partial within SPAN x f0 of ours is one of the band's phasors
N_PARTIALS = 8
FINE_STEPS = 16  # fine: the onset on a grid of this many steps per decimated sample (~60 us)


def _band(y: np.ndarray, sr: int, fk: float, s0: int, s1: int, win: np.ndarray, dec: int) -> tuple[np.ndarray, np.ndarray]:
    """(x (N,) complex, ends (N,)) the band of ``y`` around ``fk`` Hz: mixed down, through
    ``win`` (its weights sum to 1), one value each ``dec`` samples; ``ends``: the sample
    each value's window ends on (its last sample)."""
    n_w = len(win)
    n = np.arange(s0 - n_w + 1, s1)
    z = y[n] * np.exp(-2j * np.pi * fk / sr * n)
    x = sliding_window_view(z, n_w)[::dec] @ win
    return x, np.arange(s0, s1)[::dec][: len(x)]


def step_weights(win: np.ndarray) -> np.ndarray:
    """``cum[m]``: the weight of a window's last ``m`` samples (a step at once seen through
    ``win``; ``m`` >= len reads 1)."""
    return np.concatenate([[0.0], np.cumsum(win[::-1])])


def _shape(win: np.ndarray, ramp: int) -> np.ndarray:
    """``shape[m]``: a step's value in a band whose window ends ``m`` samples after the
    onset (the window's weight over its last ``m`` samples), the sound rising linearly
    over ``ramp`` samples (1: at once); ``m`` >= len - 1 reads 1."""
    n = len(win) + ramp
    rise = np.minimum(1.0, np.arange(1, n + 1) / ramp)
    return np.concatenate([[0.0], np.convolve(win[::-1], rise)[:n]])


def step_onset(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    *, attack_s: float = 0.0, bend: int = 1, fine: bool = False, settled_s: float | None = None,
    partials: Sequence[int] | None = None,
) -> tuple[float, float] | None:
    """(onset s, the fraction of the bands' residual its step removes) of ``pitch`` struck
    in [t_lo_s, t_hi_s] (audio s), or None where the audio is too short for the fit.
    ``strikes``: the plan's other strikes (audio s, key) that may sound in the bands (the
    keys struck up to a few seconds before, those in the window; ``pitch``'s own earlier
    strikes ring on at its partials). ``attack_s``: the strike's sound rises linearly over
    this long (the step's shape; 0: at once, the step's onset then lies about half the
    rise late); ``bend``: the sound already ringing before the fit is its phasor ``e``
    times a polynomial of this degree in time (1: level and decay; more: its envelope's
    bend, the room's build-up and an exponential over 0.2 s after a loud strike);
    ``fine``: the onset refined on a grid of :data:`FINE_STEPS` per decimated sample
    (else the 1 ms grid's); ``settled_s``: the fit begins this long (at least
    :data:`ATTACK_CLEAR_S`) after the last strike before the window has passed the bands'
    window, and where it cannot (that strike too near the window), None: its attack and
    the room's build-up would be in the fit, which the ringing's model does not hold;
    ``partials``: fit only these partials (numbers from 1; None: the first
    :data:`N_PARTIALS`)."""
    f0 = f0_hz(pitch)
    n_w = int(BAND_PERIODS / f0 * sr)
    dec = max(1, int(sr / DECIMATE_HZ))
    last = max([u for u, _ in strikes if u < t_lo_s - ATTACK_CLEAR_S] + [t_lo_s - PRE_S])
    clear = ATTACK_CLEAR_S if settled_s is None else max(ATTACK_CLEAR_S, settled_s)
    start = min(max(t_lo_s - PRE_S, last + n_w / sr + clear), t_lo_s - MIN_PRE_S)
    if settled_s is not None and start < last + n_w / sr + clear:
        return None
    # ... and ends before the next strike after the window (the fit's model holds the
    # strikes up to its end: a later one unmodelled drew the step to the window's end)
    end = min([u for u, _ in strikes if u > t_hi_s] + [t_hi_s + POST_S])
    end = max(end, t_hi_s + MIN_POST_S)
    s0, s1 = int(start * sr), int(end * sr)
    if s0 - n_w + 1 < 0 or s1 > len(y):
        return None
    t0s = np.arange(int(t_lo_s * sr), int(t_hi_s * sr), dec)  # (T,) the step's candidates
    if not len(t0s):
        return None
    win = np.hanning(n_w)
    win /= win.sum()
    cum = step_weights(win)
    ramp = max(1, int(round(attack_s * sr)))
    shape = cum if ramp == 1 else _shape(win, ramp)

    def gains(bands: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], cand: np.ndarray) -> np.ndarray:
        """The residual's energy a step at each of ``cand`` (samples) removes, summed
        over the bands (x projected off the ringing, its window ends, the ringing's basis)."""
        gain = np.zeros(len(cand))
        for xp, ends, q_basis in bands:
            m = ends[None, :] - cand[:, None]  # (T, N) samples since the candidate onset
            st = shape[np.clip(m, 0, len(shape) - 1)]
            steps = np.stack([st, st * np.maximum(m, 0) / sr], axis=2).astype(np.complex128)  # (T, N, 2)
            if q_basis is not None:
                steps = steps - np.matmul(q_basis, np.matmul(q_basis.conj().T, steps))
            sh = np.conj(np.swapaxes(steps, 1, 2))  # (T, 2, N)
            g2 = np.matmul(sh, steps) + 1e-12 * np.eye(2)
            b = np.matmul(sh, xp)  # (T, 2)
            c = np.linalg.solve(g2, b[..., None])[..., 0]
            gain += np.einsum("ti,ti->t", b.conj(), c).real
        return gain

    best: tuple[float, float, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], float] | None = None
    for s in STRETCHES:
        bands: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        total = 0.0
        for k in range(1, N_PARTIALS + 1):
            fk = k * f0 * (1.0 + s * k * k / 2.0)
            if fk > 0.45 * sr:
                break
            if partials is not None and k not in partials:
                continue
            x, ends = _band(y, sr, fk, s0, s1, win, dec)
            tt = (ends - ends[0]) / sr
            cols: list[np.ndarray] = []
            seen: set[tuple[float, int | None]] = set()
            for u, q in strikes:
                if u * sr >= s1:
                    continue
                fq = f0_hz(q)
                gs = [fk] if q == pitch else [j * fq * (1.0 + s * j * j / 2.0) for j in range(1, N_PARTIALS + 1)]
                us = int(u * sr) if u * sr > s0 - n_w else None  # struck inside the fit: a step of its own
                for g in gs:
                    if abs(g - fk) >= SPAN * f0 or (round(g, 3), us) in seen:
                        continue
                    seen.add((round(g, 3), us))
                    e = np.exp(2j * np.pi * (g - fk) * tt)
                    if us is not None:
                        e = e * cum[np.clip(ends - us, 0, n_w)]
                    cols += [e, e * tt] + ([e * (tt / tt[-1]) ** d for d in range(2, bend + 1)] if us is None else [])
            if cols:
                q_basis, _ = np.linalg.qr(np.stack(cols, axis=1))  # (N, C)
                bands.append((x - q_basis @ (q_basis.conj().T @ x), ends, q_basis))
            else:
                bands.append((x, ends, None))
            total += float(np.vdot(bands[-1][0], bands[-1][0]).real)
        if total <= 0.0:
            continue
        gain = gains(bands, t0s)
        j = int(np.argmax(gain))
        if best is None or gain[j] / total > best[1]:
            best = (float(t0s[j]), float(gain[j]) / total, bands, total)
    if best is None or not math.isfinite(best[1]):
        return None
    t0, frac, bands, total = best
    if fine:
        cand = np.arange(t0 - dec, t0 + dec + 1, max(1, dec // FINE_STEPS)).astype(np.int64)
        gain = gains(bands, cand)
        j = int(np.argmax(gain))
        t0, frac = float(cand[j]), max(frac, float(gain[j]) / total)
    return t0 / sr, frac
