"""The onsets of planned keys struck close together (a chord, a roll, a run), timed
jointly by analysis by synthesis (issue 11: the detector's notes heard 20-100 ms off).

Over a short stretch of audio the magnitude spectrogram (Hann windows of
:data:`JOINT_N` samples, hop :data:`JOINT_HOP_S`) at the keys' partials is modelled as

    X(f, t) = sum_p sum_k A_pk · S_pk(f) · E(t - tau_p) + b_f + c_f · t

where ``S_pk`` is the window's main lobe at partial k of key p (its frequency measured
from the stretch's long windows: the string's stretch), ``E`` the magnitude a
partial struck at 0 (the attack of ATTACK_S) shows through the window centred at t (zero
before the window reaches the strike, rising over one window length), ``A_pk >= 0`` the
partial's amplitude (one per partial: the room colours each), and ``b_f + c_f t`` what
was already ringing in bin f (a line: a ringing partial's decay over the stretch). For
given onsets (:func:`residuals`: ours at each candidate, the others held) the background
is a line fitted per bin and the amplitudes non-negative least squares. A loud key's
partials that fill a soft key's bins are then explained from the loud key's onset (its
own bins pin its amplitude and the window's lobe its leakage), and the soft key's onset
is where what is left rises. The model is separable (each column a spectrum times an
envelope), so the normal equations are built from (partials x partials) spectral
products and (keys x keys) envelope products, never from the (bins x frames) columns.

Magnitudes do not add: a partial struck while another at a nearby frequency rings (a
neighbour's partial a few Hz off, our own key re-struck) beats with it, and a magnitude
model takes the beat's crest for the onset. :func:`.bands.band_residuals` (session 18) is the
complex model of one key's partials' bands (:mod:`.bands`, the step fit's model): each
band mixed down to 0 Hz, the other keys' partials in it phasors of free complex amplitude
and decay, ours a step at the candidate onset; there the two sounds add as complex
numbers and the beat is explained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..voicing import ATTACK_S, f0_hz

JOINT_N = 2048  # the windows (samples): a minor third's fundamentals ~1.6 bins apart at 200 Hz
JOINT_HOP_S = 0.001
JOINT_LOBE = 2.0  # a partial's bins: its window's main lobe (Hann: +-2 bins)
JOINT_F_MAX_HZ = 5000.0  # partials above this add cost, not timing (the upper ones are weak)
JOINT_GRID_S = 0.002  # the candidates' step (the detector's grid of a rolled chord's side)
JOINT_PRE_S = 0.030  # the stretch starts this long before the earliest onset allowed ...
JOINT_POST_S = 0.060  # ... and ends this long after the latest
JOINT_MAX_STRETCH = 0.012  # partial k searched in k·f0 .. k·f0·(1 + this · (k/8)²)
# each partial's envelope: a steady part and one decaying with these time constants (s;
# non-negative amplitudes: any decay from none to the fastest is a mix of them)
JOINT_DECAYS_S = (0.08,)


_TABLE: dict[tuple[int, int], np.ndarray] = {}
TABLE_STEP = 8  # the table's strike positions: every this many samples
TABLE_DELTAS = np.arange(0.0, JOINT_LOBE + 0.5 + 1e-9, 1.0 / 16.0)  # bins off the partial


def _transient_table(n: int, sr: int) -> np.ndarray:
    """(n / TABLE_STEP + 1, len(TABLE_DELTAS)) the magnitude a partial struck at window
    sample ``s = j·TABLE_STEP`` (its attack the linear rise of ATTACK_S) shows in a bin
    ``TABLE_DELTAS`` bins off it, over a steady partial's at its own bin: a truncated
    sinusoid's spectrum is wider than a steady one's (the window's main lobe alone would
    leave the strike's spread in the neighbours' bins, which a key struck there then
    takes: the soft key of a roll timed on the loud one's strike)."""
    key = (n, sr)
    if key not in _TABLE:
        w = np.hanning(n)
        a = max(1, int(round(ATTACK_S * sr)))
        m = np.arange(n)
        ramp = 1.0 - np.arange(a) / a  # what the attack takes off the first a samples
        rows = np.arange(0, n + 1, TABLE_STEP)
        out = np.empty((len(rows), len(TABLE_DELTAS)))
        for j, d in enumerate(TABLE_DELTAS):
            v = w * np.exp(-2j * np.pi * d * m / n)  # (n,)
            tail = np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])  # tail[s] = sum_{m>=s} v
            # the attack: sum_{i<a} v[s+i] (1 - i/a), by a correlation
            vp = np.concatenate([v, np.zeros(a)])
            att = np.correlate(vp, ramp, mode="valid")[: n + 1] if len(vp) >= a else np.zeros(n + 1)
            att = np.concatenate([att, np.zeros(max(0, n + 1 - len(att)))])
            out[:, j] = np.abs(tail[rows] - att[rows])
        _TABLE[key] = out / float(w.sum())
    return _TABLE[key]


def _active_set_nnls(g: np.ndarray, b: np.ndarray, passive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x >= 0 minimising x·g·x - 2 b·x, its passive set) for g symmetric positive
    semi-definite (m, m): Lawson-Hanson's active set on the normal equations, started
    from ``passive`` (a neighbouring problem's: a few steps instead of m)."""
    m = len(b)
    x = np.zeros(m)
    p = np.zeros(m, dtype=bool) if passive is None else passive.copy()
    ridge = 1e-9 * float(np.trace(g)) / max(m, 1) + 1e-30
    gr = g + ridge * np.eye(m)
    tol = 1e-12 * (abs(float(b.max())) + 1e-30)
    for _ in range(3 * m):
        for _ in range(3 * m):  # the passive set's solution, kept feasible
            idx = np.nonzero(p)[0]
            if not len(idx):
                break
            z = np.zeros(m)
            z[idx] = np.linalg.solve(gr[np.ix_(idx, idx)], b[idx])
            if (z[idx] > 0.0).all():
                x = z
                break
            neg = p & (z <= 0.0)
            alpha = float(np.min(x[neg] / np.maximum(x[neg] - z[neg], 1e-300)))
            x = x + alpha * (z - x)
            p &= x > 1e-15
            x[~p] = 0.0
        w = b - gr @ x
        free = ~p & (w > tol)
        if not free.any():
            break
        p[int(np.argmax(np.where(free, w, -np.inf)))] = True
    return x, p


LOBE_BINS = 5  # a column's bins: the partial's nearest and two either side


class _Stretch:
    """One stretch's data and model: frames centred at ``centres`` (samples), the bins
    that hold the keys' partials, and per (key, partial, envelope component) a column:
    a block over the partial's LOBE_BINS bins x frames."""

    def __init__(self, y: np.ndarray, sr: int, t_lo: float, t_hi: float, freqs: Sequence[np.ndarray]) -> None:
        n = JOINT_N
        self.sr, self.n = sr, n
        hop = max(1, int(round(JOINT_HOP_S * sr)))
        c0 = int(round(t_lo * sr))
        nf = max(2, int((t_hi - t_lo) * sr / hop) + 1)
        self.centres = c0 + hop * np.arange(nf)  # (frames,) samples
        self.bin_hz = sr / n
        h = LOBE_BINS // 2
        firsts = [[max(1, int(round(f / self.bin_hz)) - h) for f in fk] for fk in freqs]
        self.bins = np.array(sorted({b0 + j for fs in firsts for b0 in fs for j in range(LOBE_BINS)}))
        pos = {int(b): i for i, b in enumerate(self.bins)}
        self.nc = 1 + len(JOINT_DECAYS_S)
        key, row, off = [], [], []
        for i, fk in enumerate(freqs):
            for f, b0 in zip(fk, firsts[i], strict=True):
                for _ in range(self.nc):
                    key.append(i)
                    row.append(pos[b0])
                    off.append(np.abs(np.arange(b0, b0 + LOBE_BINS) - f / self.bin_hz))
        m = len(key)
        self.key_of = np.array(key, dtype=int)
        self.comp = np.tile(np.arange(self.nc), m // self.nc if self.nc else 0)
        rows = np.array(row, dtype=int)[:, None] + np.arange(LOBE_BINS)[None, :]  # (m, LOBE_BINS) rows of bins
        self.off = np.array(off).reshape(m, LOBE_BINS) * 16.0  # in TABLE_DELTAS steps
        idx = (self.centres - n // 2)[:, None] + np.arange(n)[None, :]
        seg = np.where((idx >= 0) & (idx < len(y)), y[np.clip(idx, 0, len(y) - 1)], 0.0)
        win = np.hanning(n)
        x = np.abs(np.fft.rfft(seg * win, axis=1)[:, self.bins]) / float(win.sum())  # (frames, bins)
        # the background line per bin (b_f + c_f t) projected out of the data and of
        # every column alike: the joint least squares with it free
        tt = np.arange(nf, dtype=np.float64)
        self.q, _ = np.linalg.qr(np.stack([np.ones(nf), tt - tt.mean()], axis=1))  # (frames, 2)
        xd = (x - self.q @ (self.q.T @ x)).T  # (bins, frames)
        self.x_ss = float(np.sum(xd * xd))
        self.xc = xd[rows]  # (m, LOBE_BINS, frames): each column's data
        self.table = _transient_table(n, sr)
        self.blocks = np.zeros((m, LOBE_BINS, nf))
        self.g = np.zeros((m, m))
        self.b = np.zeros(m)
        self.passive: np.ndarray | None = None
        # per key, the (column, other column, row in each) whose bins meet
        r = np.array(row)
        self.pairs: list[tuple[np.ndarray, ...]] = []
        for i in range(len(freqs)):
            pc, po, ic, io = [], [], [], []
            for c in np.nonzero(self.key_of == i)[0]:
                for o in np.nonzero(np.abs(r - r[c]) < LOBE_BINS)[0]:
                    for j in range(LOBE_BINS):
                        jo = r[c] + j - r[o]
                        if 0 <= jo < LOBE_BINS:
                            pc.append(c)
                            po.append(o)
                            ic.append(j)
                            io.append(jo)
            self.pairs.append(tuple(np.array(a, dtype=int) for a in (pc, po, ic, io)))

    def place(self, key: int, tau_s: float) -> None:
        """Start ``key``'s columns at ``tau_s`` (audio s): their blocks, their rows of
        the normal equations."""
        tab = self.table
        s = np.clip((tau_s * self.sr - (self.centres - self.n / 2.0)) / TABLE_STEP, 0.0, len(tab) - 1.0)
        j0 = np.minimum(np.floor(s).astype(int), len(tab) - 2)  # (frames,) the strike's place
        fr = (s - j0)[None, None, :]
        mine = np.nonzero(self.key_of == key)[0]
        di = self.off[mine]  # (c, LOBE_BINS)
        d0 = np.minimum(np.floor(di).astype(int), len(TABLE_DELTAS) - 2)
        df = (di - d0)[:, :, None]
        # (c, LOBE_BINS, frames): bilinear in the table (strike place, bins off)
        lo = tab[j0[None, None, :], d0[:, :, None]] * (1 - df) + tab[j0[None, None, :], d0[:, :, None] + 1] * df
        hi = tab[j0[None, None, :] + 1, d0[:, :, None]] * (1 - df) + tab[j0[None, None, :] + 1, d0[:, :, None] + 1] * df
        e = lo * (1 - fr) + hi * fr
        after = np.maximum(self.centres / self.sr - tau_s, 0.0)
        decays = np.stack([np.ones_like(after), *(np.exp(-after / d) for d in JOINT_DECAYS_S)])  # (nc, frames)
        e = e * decays[self.comp[mine]][:, None, :]
        e -= (e @ self.q) @ self.q.T  # the background line out
        self.blocks[mine] = e
        self.b[mine] = np.sum(e * self.xc[mine], axis=(1, 2))
        pc, po, ic, io = self.pairs[key]
        v = np.sum(self.blocks[pc, ic] * self.blocks[po, io], axis=1)
        self.g[np.ix_(mine, np.arange(len(self.b)))] = 0.0
        self.g[:, mine] = 0.0
        np.add.at(self.g, (pc, po), v)
        self.g[:, mine] = self.g[mine].T

    def solve(self) -> tuple[float, np.ndarray]:
        """(the residual sum of squares, (columns,) amplitudes >= 0)."""
        a, self.passive = _active_set_nnls(self.g, self.b, self.passive)
        return self.x_ss - 2.0 * float(a @ self.b) + float(a @ self.g @ a), a


def partial_freqs(det_frames: np.ndarray, bin_hz: float, pitch: int, t_s: float, hop_s: float,
                  f_max: float = JOINT_F_MAX_HZ) -> np.ndarray:
    """Partial frequencies (Hz) of ``pitch`` struck near ``t_s`` measured on long windows
    (``det_frames``: (frames, bins) magnitudes, hop ``hop_s``, bin ``bin_hz``): per
    partial k the peak of what appeared (the window 20..105 ms after less the one ending
    at ``t_s`` - 20 ms) in k·f0 .. k·f0·(1 + JOINT_MAX_STRETCH·(k/8)²), interpolated on a
    parabola; k·f0 where nothing appeared there."""
    f0 = f0_hz(pitch)
    nfr, nb = det_frames.shape
    i_after = min(nfr - 1, max(0, int(round((t_s + 0.02) / hop_s))))
    i_before = int(round((t_s - 0.02) / hop_s)) - max(1, int(round(1.0 / bin_hz / hop_s)))  # (a window's length before)
    gained = det_frames[i_after] - (det_frames[i_before] if i_before >= 0 else 0.0)
    out = []
    for k in range(1, 9):
        lo = k * f0
        hi = lo * (1.0 + JOINT_MAX_STRETCH * (k / 8.0) ** 2)
        if hi > f_max:
            break
        b0, b1 = max(1, int(math.floor(lo / bin_hz))), min(nb - 2, int(math.ceil(hi / bin_hz)))
        if b1 < b0:
            out.append(lo)
            continue
        j = b0 + int(np.argmax(gained[b0 : b1 + 1]))
        a, b, c = (float(gained[j - 1]), float(gained[j]), float(gained[j + 1]))
        if b <= 0.0 or b < a or b < c:
            out.append(lo)
            continue
        den = a - 2.0 * b + c
        d = 0.5 * (a - c) / den if den < 0.0 else 0.0
        out.append(float(np.clip((j + max(-0.5, min(0.5, d))) * bin_hz, lo, hi)))
    return np.array(out)


def _partial_ranges(pitch: int, f_max: float = JOINT_F_MAX_HZ) -> list[tuple[float, float]]:
    """The (lo, hi) Hz :func:`partial_freqs` searches each partial of ``pitch`` in (and
    so returns it within)."""
    f0 = f0_hz(pitch)
    out = []
    for k in range(1, 9):
        lo, hi = k * f0, k * f0 * (1.0 + JOINT_MAX_STRETCH * (k / 8.0) ** 2)
        if hi > f_max:
            break
        out.append((lo, hi))
    return out


@lru_cache(maxsize=8192)
def may_meet(pitch: int, other: int, span: float) -> bool:
    """Whether a partial of ``other`` can lie within ``span`` x f0 of one of ``pitch``'s, both
    as :func:`partial_freqs` measures them (their search ranges): where not, ``other`` has
    no phasor in ``pitch``'s bands and need not be measured."""
    d = span * f0_hz(pitch)
    return any(lo - d < hi2 and lo2 < hi + d for lo, hi in _partial_ranges(pitch) for lo2, hi2 in _partial_ranges(other))


def residuals(
    y: np.ndarray, sr: int, starts: Sequence[float], freqs: Sequence[np.ndarray], times: Sequence[float],
    t_lo: float, t_hi: float,
) -> np.ndarray:
    """(len(times),) the fit's residual (over the data's) over the stretch [t_lo - JOINT_PRE_S,
    t_hi + JOINT_POST_S] with key 0's onset at each of ``times`` and the other keys' at
    their ``starts`` (their partial frequencies ``freqs``, Hz)."""
    st = _Stretch(y, sr, t_lo - JOINT_PRE_S, t_hi + JOINT_POST_S, freqs)
    for i, t in enumerate(starts):
        if i:
            st.place(i, float(t))
    out = np.empty(len(times))
    for j, t in enumerate(times):
        st.place(0, float(t))
        out[j] = st.solve()[0]
    return out / (st.x_ss if st.x_ss > 0 else 1.0)
