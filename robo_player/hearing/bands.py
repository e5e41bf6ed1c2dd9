"""The band model of one key's partials (issue 11; sessions 17-19): the restrike's and
the bass rescue's step fit (:func:`.stepfit.step_onset`) and the complex second opinion
(:func:`band_residuals`, ``Detector._joint_complex``) are this one model, fitted over
different stretches and candidates.

Each partial ``fk`` of the key is mixed down to 0 Hz and low-passed by a Hann window of
:data:`BAND_PERIODS` periods of the key's f0 (±f0/2 wide: its own other partials out),
one value each 1 / :data:`DECIMATE_HZ` s (:func:`mixdown`). In that band the other keys'
partials near ``fk`` are phasors turning at their offsets from it, their level and decay
free (two columns, ``e`` and ``t·e``; a key struck inside the stretch switched on through
the window at its onset; one already ringing may bend: ``e`` times a polynomial in time),
:func:`phasor_columns`. Our strike is a step at the candidate onset through the same window
(a phasor of free level, and ``t``-times it: the partial's decay, the room's build-up, a
small error of its frequency). Two sounds at one frequency add here as complex numbers,
not in magnitude: a partial meeting a ringing one in anti-phase (a beat's trough) is not
taken for a later onset, and a key re-struck while it rings is a step on its own phasor.

The least squares of each candidate (:class:`BandFit`): the band projected off the
phasors' span (an orthonormal basis, :func:`orthonormal`), our two step columns likewise,
the 2 x 2 normal equations solved in closed form; what the step removes of the residual
is its gain. A step is 0 before the candidate and its window's (or its rise's) weight for
the few samples after, then constant: each candidate's products with the band and the
basis are a short sum over that rise plus tail sums precomputed once (session 19: the
same figures as summing every sample, at O(rise x columns) a candidate instead of
O(samples x columns)). No LAPACK and no BLAS call in the loop: under load OpenBLAS's
threads made a 250 x 30 QR 180 ms against 0.5 ms (session 18).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..voicing import f0_hz

BAND_PERIODS = 4.0  # the band's window: this many periods of f0 (a Hann: ±f0/2 wide)
DECIMATE_HZ = 1000.0  # the band's samples: 1 ms apart
# a phasor's column that adds under this of its norm to the basis is dropped: the complex
# second opinion's (session 18: a key struck twice before the stretch is one phasor);
# the step fit keeps every column above rounding (session 17's QR kept them all: a
# column adding 1e-7 of itself, an octave's partial 0.04 Hz from another's over 0.4 s,
# is a real direction of the envelopes; random 3's G2 moved 56 ms without it)
DROP_BELOW = 1e-6
KEEP_ALL = 1e-12
REORTH = 0.5 ** 0.5  # a second Gram-Schmidt pass where the first left under this of the norm


def window(f0: float, sr: int) -> np.ndarray:
    """The band's Hann window (its weights sum to 1) of BAND_PERIODS periods of ``f0``."""
    win = np.hanning(max(8, int(BAND_PERIODS / f0 * sr)))
    return win / win.sum()


def decimation(sr: int) -> int:
    """The band's step in samples (1 / DECIMATE_HZ s)."""
    return max(1, int(round(sr / DECIMATE_HZ)))


def step_weights(win: np.ndarray) -> np.ndarray:
    """``cum[m]``: the weight of a window's last ``m`` samples (a step at once seen through
    ``win``; ``m`` >= len reads 1)."""
    return np.concatenate([[0.0], np.cumsum(win[::-1])])


def ramp_shape(win: np.ndarray, ramp: int) -> np.ndarray:
    """``shape[m]``: a step's value in a band whose window ends ``m`` samples after the
    onset (the window's weight over its last ``m`` samples), the sound rising linearly
    over ``ramp`` samples (1: at once, :func:`step_weights`); ``m`` >= len - 1 reads the
    last (1)."""
    if ramp <= 1:
        return step_weights(win)
    n = len(win) + ramp
    rise = np.minimum(1.0, np.arange(1, n + 1) / ramp)
    return np.concatenate([[0.0], np.convolve(win[::-1], rise)[:n]])


class Mixer:
    """The bands of ``y`` over samples [s0, s1) through ``win``, one value each ``dec``
    samples: ``ends`` (N,) the sample each value's window ends on (its last), ``tt`` (N,)
    seconds since the first; :meth:`band` mixes one partial down."""

    def __init__(self, y: np.ndarray, sr: int, s0: int, s1: int, win: np.ndarray, dec: int) -> None:
        self.sr, self.s0, self.win, self.dec = sr, s0, win, dec
        n_w = len(win)
        self.n = np.arange(s0 - n_w + 1, s1)  # the samples the windows read
        self.seg = y[s0 - n_w + 1 : s1]
        self.nfft = 1 << int(math.ceil(math.log2(len(self.n) + n_w)))
        self.wspec = np.fft.fft(win[::-1], self.nfft)
        x_len = len(range(n_w - 1, len(self.n), dec))
        self.ends = np.arange(s0, s1)[::dec][:x_len]
        self.tt = (self.ends - self.ends[0]) / sr if len(self.ends) else np.zeros(0)

    def band(self, fk: float) -> np.ndarray:
        """(N,) complex: the band around ``fk`` Hz. x[i] = sum_m z[i·dec + m] win[m], by
        FFT (pocketfft has no threads; a direct product's BLAS call has)."""
        z = self.seg * np.exp(-2j * np.pi * fk / self.sr * self.n)
        return np.fft.ifft(np.fft.fft(z, self.nfft) * self.wspec)[len(self.win) - 1 : len(self.n) : self.dec]


# a sound in the band model: its partials (Hz) and its onset sample (None: ringing from
# before the band's first window)
Sound = tuple[Sequence[float] | np.ndarray, int | None]


def phasor_columns(fk: float, span_hz: float, tt: np.ndarray, ends: np.ndarray, cum: np.ndarray,
                   strikes: Sequence[Sound], bend: int = 1) -> list[np.ndarray]:
    """The columns of the other sounds in the band around ``fk``: per strike (its partials
    in Hz, its onset sample; None: ringing from before the band's first window) each
    partial within ``span_hz`` of ``fk`` a phasor at its offset, ``e`` and ``t·e``; one
    struck in the stretch switched on through the window (``cum``: :func:`step_weights`),
    one ringing before times a polynomial of degree ``bend`` in time (its envelope's
    bend). One struck after the stretch is left out, and a phasor twice (the same
    frequency and onset) once."""
    cols: list[np.ndarray] = []
    seen: set[tuple[float, int | None]] = set()
    n_w = len(cum) - 1
    for freqs, onset in strikes:
        if onset is not None and (not len(ends) or onset >= ends[-1]):
            continue  # struck after the stretch: nothing of it in the band
        for g in freqs:
            if abs(g - fk) >= span_hz or (g, onset) in seen:
                continue
            seen.add((g, onset))
            e = np.exp(2j * np.pi * (g - fk) * tt)
            if onset is not None:
                e = e * cum[np.clip(ends - onset, 0, n_w)]
                cols += [e, e * tt]
            else:
                cols += [e, e * tt, *(e * (tt / tt[-1]) ** d for d in range(2, bend + 1))]
    return cols


def orthonormal(cols: Sequence[np.ndarray], n: int, drop: float = DROP_BELOW) -> np.ndarray:
    """(n, C') an orthonormal basis of the span of ``cols`` ((n,) complex each): Gram-Schmidt,
    each column orthogonalised against the basis so far, again where that took over
    REORTH of its norm (Daniel-Gragg-Kaufman-Stewart: then orthogonal to working
    precision), one that adds under ``drop`` of its norm dropped. Products by einsum on
    rows (the basis's conjugate kept beside it): no BLAS threads."""
    if not cols:
        return np.zeros((n, 0), dtype=np.complex128)
    rows = np.empty((len(cols), n), dtype=np.complex128)  # (C, n) the basis, one vector a row
    conj = np.empty_like(rows)
    k = 0
    for c in cols:
        v = c.astype(np.complex128)
        n0 = float(np.linalg.norm(v))
        n1 = n0
        for _ in range(2):
            if not k:
                break
            v = v - np.einsum("kn,k->n", rows[:k], np.einsum("kn,n->k", conj[:k], v))
            before, n1 = n1, float(np.linalg.norm(v))
            if n1 > REORTH * before:
                break
        if n1 > drop * n0:
            rows[k] = v / n1
            conj[k] = rows[k].conj()
            k += 1
    return rows[:k].T


def _tail(a: np.ndarray) -> np.ndarray:
    """(N + 1, ...) ``out[n]`` = the sum of ``a[n:]`` over the first axis (``out[N]`` = 0)."""
    out = np.zeros((len(a) + 1, *a.shape[1:]), dtype=a.dtype)
    out[:-1] = np.cumsum(a[::-1], axis=0)[::-1]
    return out


class BandFit:
    """One band ``x`` of ``mix`` (:meth:`Mixer.band`) with the other sounds' columns
    ``cols`` projected out, and a step of ``shape`` (:func:`ramp_shape`) fitted at any
    candidate onset (:meth:`gains`); ``drop``: :func:`orthonormal`'s. ``ss``: what the
    columns leave of the band's energy."""

    def __init__(self, x: np.ndarray, mix: Mixer, cols: Sequence[np.ndarray], shape: np.ndarray,
                 drop: float = DROP_BELOW) -> None:
        self.x, self.ends, self.shape, self.sr, self.dec = x, mix.ends, shape, mix.sr, mix.dec
        tt = mix.tt
        q = orthonormal(cols, len(x), drop)  # (N, C)
        self.qc = q.conj()
        self.qx = np.einsum("nc,n->c", self.qc, x)  # (C,)
        self.ss = float(np.vdot(x, x).real) - float(np.vdot(self.qx, self.qx).real)
        # tail sums (N + 1, ...): the products of a step's constant part (from the sample
        # its rise ends on to the band's end) with the basis, the band and time
        self.t_q = _tail(self.qc)
        self.t_tq = _tail(tt[:, None] * self.qc)
        self.t_x = _tail(x)
        self.t_tx = _tail(tt * x)
        self.t_t = _tail(tt)
        self.t_t2 = _tail(tt * tt)

    def gains(self, t0s: np.ndarray) -> np.ndarray:
        """(T,) the residual's energy a step at each of ``t0s`` (samples) removes: its
        columns ``s`` and ``t·s`` (``s[n]`` = shape[ends[n] - t0], 0 before, the last
        value after its rise) projected off the phasors, least squares in closed form."""
        ends, shape, sr = self.ends, self.shape, self.sr
        n = len(ends)
        t0s = np.asarray(t0s, dtype=np.int64)
        rise = len(shape) - 1  # m >= rise reads shape[rise]
        top = float(shape[rise])
        n0 = np.searchsorted(ends, t0s, side="right")  # the first value after the onset
        n1 = np.searchsorted(ends, t0s + rise, side="left")  # the first at the top
        r = max(1, int(np.max(n1 - n0, initial=0)))
        idx = n0[:, None] + np.arange(r)[None, :]  # (T, R) the rise's values
        inside = idx < n1[:, None]
        idx = np.minimum(idx, n - 1)
        m = ends[idx] - t0s[:, None]  # (T, R) samples since the onset
        u1 = np.where(inside, shape[np.clip(m, 0, rise)], 0.0)
        u2 = u1 * m / sr
        qr = self.qc[idx]  # (T, R, C)
        tau0 = (t0s - ends[0]) / sr  # (T,) the onset in the band's seconds
        left = (n - n1).astype(np.float64)  # (T,) values at the top
        # the step's products over its rise + over its top (m / sr = tt - tau0 there)
        q1 = np.einsum("tr,trc->tc", u1, qr) + top * self.t_q[n1]  # (T, C) Q^H s
        q2 = np.einsum("tr,trc->tc", u2, qr) + top * (self.t_tq[n1] - tau0[:, None] * self.t_q[n1])
        g11 = np.sum(u1 * u1, axis=1) + top * top * left
        g22 = np.sum(u2 * u2, axis=1) + top * top * (self.t_t2[n1] - 2.0 * tau0 * self.t_t[n1] + tau0 * tau0 * left)
        g12 = np.sum(u1 * u2, axis=1) + top * top * (self.t_t[n1] - tau0 * left)
        xr = self.x[idx]
        b1 = np.sum(u1 * xr, axis=1) + top * self.t_x[n1]
        b2 = np.sum(u2 * xr, axis=1) + top * (self.t_tx[n1] - tau0 * self.t_x[n1])
        # the normal equations with the phasors projected out (s^H P s = s^H s - |Q^H s|^2)
        g11 = g11 - np.sum(np.abs(q1) ** 2, axis=1)
        g22 = g22 - np.sum(np.abs(q2) ** 2, axis=1)
        g12 = g12 - np.sum(q1.conj() * q2, axis=1)
        b1 = b1 - np.einsum("tc,c->t", q1.conj(), self.qx)
        b2 = b2 - np.einsum("tc,c->t", q2.conj(), self.qx)
        det = g11 * g22 - np.abs(g12) ** 2
        # a step the phasors hold whole (one struck at that very time at our partial)
        # explains nothing of its own; its decay a column of its own where independent
        live = g11 > 1e-9 * rise / self.dec
        two = live & (det > 1e-9 * g11 * np.maximum(g22, 1e-300))
        return np.where(two, (g22 * np.abs(b1) ** 2 + g11 * np.abs(b2) ** 2 - 2.0 * np.real(g12 * b2 * b1.conj()))
                        / np.where(two, det, 1.0), np.where(live, np.abs(b1) ** 2 / np.where(live, g11, 1.0), 0.0))


@dataclass(frozen=True, slots=True)
class Strike:
    """Another key's sound in the band model: its partials (Hz) and its onset (audio s;
    one before the stretch rings through it)."""

    freqs: np.ndarray
    t_s: float


BAND_PRE_S = 0.10  # the complex second opinion's fit begins this long before the earliest candidate ...
BAND_POST_S = 0.08  # ... and ends this long after the latest
BAND_SPAN = 0.75  # another key's partial within this x our f0 of ours is a phasor of the band


def band_residuals(
    y: np.ndarray, sr: int, pitch: int, freqs: np.ndarray, times: Sequence[float], others: Sequence[Strike],
) -> np.ndarray:
    """(len(times),) the residual (over what the other keys' phasors leave of the bands'
    data: 1 where our step explains nothing) of the band model of our partials ``freqs``
    (Hz) with our key struck at each of ``times`` (audio s), over [min(times) -
    BAND_PRE_S, max(times) + BAND_POST_S]: each partial of ``others`` within BAND_SPAN x
    f0 of ours a phasor (level, decay), switched on at its onset where struck in the
    stretch; our step at once through the window (session 18, the complex second opinion)."""
    f0 = f0_hz(pitch)
    win = window(f0, sr)
    n_w = len(win)
    dec = decimation(sr)
    s0 = max(int(round((min(times) - BAND_PRE_S) * sr)), n_w)
    s1 = min(int(round((max(times) + BAND_POST_S) * sr)), len(y))
    if s1 - s0 < 4 * dec:
        return np.ones(len(times))
    cum = step_weights(win)
    mix = Mixer(y, sr, s0, s1, win, dec)
    t0s = np.round(np.asarray(times) * sr).astype(np.int64)  # (T,)
    strikes: list[Sound] = []
    for o in others:
        on = int(round(o.t_s * sr))
        strikes.append((o.freqs, None if on <= s0 - n_w else on))
    out = np.zeros(len(times))
    total = 0.0
    for fk in freqs:
        if fk > 0.45 * sr:
            break
        x = mix.band(fk)
        fit = BandFit(x, mix, phasor_columns(fk, BAND_SPAN * f0, mix.tt, mix.ends, cum, strikes), cum)
        out += fit.ss - fit.gains(t0s)
        total += fit.ss
    return out / total if total > 0 else np.ones(len(times))
