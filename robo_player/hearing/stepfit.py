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
from typing import Any

import numpy as np

from ..voicing import f0_hz
from .bands import (
    BAND_PERIODS,
    DECIMATE_HZ,
    KEEP_ALL,
    BandFit,
    Mixer,
    decimation,
    phasor_columns,
    ramp_shape,
    step_weights,
    window,
)

__all__ = ["BAND_PERIODS", "DECIMATE_HZ", "step_bands", "step_check", "step_frequency", "step_onset", "step_weights"]

# the partials' stretch: k·f0·(1 + s·k²/2), s on this grid (the string's inharmonicity is
# not known: the grid spans a bass string's and more; the best fit picks)
STRETCHES = (1e-3 / 16, 2e-3 / 16, 4e-3 / 16, 8e-3 / 16)
PRE_S = 0.2  # the fit begins this long before the search window (the ringing keys' level) ...
ATTACK_CLEAR_S = 0.01  # ... or this long after the window of the last strike before it has passed
MIN_PRE_S = 0.02  # ... but at least this long before the search window
POST_S = 0.1  # and ends this long after it (the step's level) or at the next strike
MIN_POST_S = 0.02  # ... but at least this long after it
SPAN = 0.75  # a sounding key's partial within SPAN x f0 of ours is one of the band's phasors
N_PARTIALS = 8
FINE_STEPS = 16  # fine: the onset on a grid of this many steps per decimated sample (~60 us)


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
    :data:`N_PARTIALS`). The band model: :mod:`.bands`."""
    got = _step_fit(y, sr, pitch, t_lo_s, t_hi_s, strikes, attack_s=attack_s, bend=bend, fine=fine,
                    settled_s=settled_s, partials=partials)
    return None if got is None else (got[0], got[1])


def _span(sr: int, n_w: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
          settled_s: float | None) -> tuple[float, float] | None:
    """The fit's stretch (start s, end s) around the search window [t_lo_s, t_hi_s] (the
    bands' window ``n_w`` samples long), as :func:`step_onset` says; None where
    ``settled_s`` cannot be kept."""
    last = max([u for u, _ in strikes if u < t_lo_s - ATTACK_CLEAR_S] + [t_lo_s - PRE_S])
    clear = ATTACK_CLEAR_S if settled_s is None else max(ATTACK_CLEAR_S, settled_s)
    start = min(max(t_lo_s - PRE_S, last + n_w / sr + clear), t_lo_s - MIN_PRE_S)
    if settled_s is not None and start < last + n_w / sr + clear:
        return None
    # ... and ends before the next strike after the window (the fit's model holds the
    # strikes up to its end: a later one unmodelled drew the step to the window's end)
    end = min([u for u, _ in strikes if u > t_hi_s] + [t_hi_s + POST_S])
    return start, max(end, t_hi_s + MIN_POST_S)


def _frame(y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
           settled_s: float | None) -> tuple[np.ndarray, int, Mixer, list[tuple[int, int | None]]] | None:
    """The fits' pieces for ``pitch`` around [t_lo_s, t_hi_s]: the bands' window, the
    decimation, the mixer over the fit's stretch (:func:`_span`) and each strike's onset
    sample (None: it rings from before the bands' first window); None where the stretch
    cannot be kept or lies outside ``y``."""
    win = window(f0_hz(pitch), sr)
    n_w = len(win)
    dec = decimation(sr)
    span = _span(sr, n_w, t_lo_s, t_hi_s, strikes, settled_s)
    if span is None:
        return None
    s0, s1 = int(span[0] * sr), int(span[1] * sr)
    if s0 - n_w + 1 < 0 or s1 > len(y):
        return None
    onsets = [(q, None if u * sr <= s0 - n_w else int(u * sr)) for u, q in strikes]
    return win, dec, Mixer(y, sr, s0, s1, win, dec), onsets


def _bands(mix: Mixer, pitch: int, onsets: Sequence[tuple[int, int | None]], s: float, cum: np.ndarray,
           shape: np.ndarray, bend: int, partials: Sequence[int] | None) -> list[tuple[np.ndarray, list[np.ndarray], BandFit]]:
    """Per partial of ``pitch`` at stretch ``s`` (below 0.45 x the rate; ``partials`` only,
    where given): its band, the other sounds' columns (``onsets``: (key, onset sample or
    None)), and the band's fit."""
    f0 = f0_hz(pitch)

    def stretched(q: int) -> list[float]:
        fq = f0_hz(q)
        return [j * fq * (1.0 + s * j * j / 2.0) for j in range(1, N_PARTIALS + 1)]

    theirs = {q: stretched(q) for q, _ in onsets if q != pitch}
    out = []
    for k in range(1, N_PARTIALS + 1):
        fk = k * f0 * (1.0 + s * k * k / 2.0)
        if fk > 0.45 * mix.sr:
            break
        if partials is not None and k not in partials:
            continue
        # our own earlier strikes ring on at this partial
        sounds = [([fk] if q == pitch else theirs[q], on) for q, on in onsets]
        cols = phasor_columns(fk, SPAN * f0, mix.tt, mix.ends, cum, sounds, bend)
        x = mix.band(fk)
        out.append((x, cols, BandFit(x, mix, cols, shape, KEEP_ALL)))
    return out


def _step_fit(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    *, attack_s: float = 0.0, bend: int = 1, fine: bool = False, settled_s: float | None = None,
    partials: Sequence[int] | None = None, at_s: float | None = None,
) -> tuple[float, float, float] | None:
    """:func:`step_onset`'s fit: (onset s, its fraction, and with ``at_s`` the largest
    fraction over the stretches that a step at ``at_s`` removes, else 0)."""
    frame = _frame(y, sr, pitch, t_lo_s, t_hi_s, strikes, settled_s)
    if frame is None:
        return None
    win, dec, mix, onsets = frame
    t0s = np.arange(int(t_lo_s * sr), int(t_hi_s * sr), dec)  # (T,) the step's candidates
    if not len(t0s):
        return None
    cum = step_weights(win)
    shape = ramp_shape(win, max(1, int(round(attack_s * sr))))

    def gains(fits: list[BandFit], cand: np.ndarray) -> np.ndarray:
        """The residual's energy a step at each of ``cand`` (samples) removes, summed over the bands."""
        return np.sum([f.gains(cand) for f in fits], axis=0)

    best: tuple[float, float, list[BandFit], float] | None = None
    at_frac = 0.0  # (at_s) the largest fraction a step there removes
    for s in STRETCHES:
        fits = [fit for _, _, fit in _bands(mix, pitch, onsets, s, cum, shape, bend, partials)]
        total = sum(f.ss for f in fits)
        if total <= 0.0:
            continue
        gain = gains(fits, t0s)
        if at_s is not None:
            at_frac = max(at_frac, float(gains(fits, np.array([int(round(at_s * sr))]))[0]) / total)
        j = int(np.argmax(gain))
        if best is None or gain[j] / total > best[1]:
            best = (float(t0s[j]), float(gain[j]) / total, fits, total)
    if best is None or not math.isfinite(best[1]):
        return None
    t0, frac, fits, total = best
    if fine:
        cand = np.arange(t0 - dec, t0 + dec + 1, max(1, dec // FINE_STEPS)).astype(np.int64)
        gain = gains(fits, cand)
        j = int(np.argmax(gain))
        t0, frac = float(cand[j]), max(frac, float(gain[j]) / total)
    return t0 / sr, frac, at_frac


def step_check(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    at_s: float, *, partials: Sequence[int] | None = None,
) -> tuple[float, float, float] | None:
    """(the step fit's onset s, the fraction of the bands' residual its step removes, the
    fraction a step at ``at_s`` removes) of ``pitch`` in [t_lo_s, t_hi_s], as
    :func:`step_onset` fits it (its defaults; ``partials``: these only, numbers from 1);
    None where it cannot fit. A step at an onset the salience timed elsewhere removes
    less where that onset is not the key's strike in its bands (the bass retime,
    ``Detector._bass_retime``)."""
    return _step_fit(y, sr, pitch, t_lo_s, t_hi_s, strikes, at_s=at_s, partials=partials)


def _step_setup(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    at_s: float, reach_s: float,
) -> tuple[Any, Any, np.ndarray, Any, Any] | None:
    """The step fit's frame of ``pitch`` in [t_lo_s, t_hi_s] and the step times within
    ``reach_s`` of ``at_s``: (mix, onsets, step starts, weights, ramp shape); None where it
    cannot fit (:func:`step_frequency`, :func:`step_bands`)."""
    frame = _frame(y, sr, pitch, t_lo_s, t_hi_s, strikes, None)
    if frame is None:
        return None
    win, dec, mix, onsets = frame
    t0s = np.arange(int((at_s - reach_s) * sr), int((at_s + reach_s) * sr) + 1, dec)
    return mix, onsets, t0s, step_weights(win), ramp_shape(win, 1)


def step_frequency(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    at_s: float, reach_s: float, offsets: int, partials: Sequence[int] | None = None,
) -> tuple[float, float] | None:
    """(the largest fraction of the bands' residual that a step of ``pitch`` within
    ``reach_s`` of ``at_s`` removes, over the stretches; and at that stretch its frequency
    share: what such steps at our partials remove, summed over the bands, over what they
    remove at the best frequency in each band, ``offsets`` frequencies over ±f0/2 of our
    partial tried), as :func:`step_check` fits ``pitch`` in [t_lo_s, t_hi_s]; None where it
    cannot fit (``partials``: these only, numbers from 1). A key not struck whose bands hold a struck neighbour's partials (a tone, a
    semitone: 6-12 % of k·f0 away) takes a step of that neighbour's at our partials only
    in part (the step's ``t``-column bends its frequency a little): the step fits better
    at the neighbour's frequency, a struck key's at its own. The bands with the other
    sounds' columns are turned by the offset together, so the fit is the same fit with
    the step moved in frequency."""
    f0 = f0_hz(pitch)
    setup = _step_setup(y, sr, pitch, t_lo_s, t_hi_s, strikes, at_s, reach_s)
    if setup is None:
        return None
    mix, onsets, t0s, cum, shape = setup
    best: tuple[float, list[tuple[np.ndarray, list[np.ndarray], BandFit]]] | None = None
    for s in STRETCHES:
        bands = _bands(mix, pitch, onsets, s, cum, shape, 1, partials)
        total = sum(b[2].ss for b in bands)
        if total <= 0.0:
            continue
        frac = float(np.sum([b[2].gains(t0s) for b in bands], axis=0).max()) / total
        if best is None or frac > best[0]:
            best = (frac, bands)
    if best is None or not math.isfinite(best[0]):
        return None
    own = other = 0.0
    for x, cols, fit in best[1]:
        g0 = float(fit.gains(t0s).max())
        top = g0
        for d in np.linspace(-0.5 * f0, 0.5 * f0, offsets):
            turn = np.exp(-2j * np.pi * d * mix.tt)
            top = max(top, float(BandFit(x * turn, mix, [c * turn for c in cols], shape, KEEP_ALL).gains(t0s).max()))
        own += g0
        other += top
    return best[0], own / other if other > 0.0 else 0.0


def step_bands(
    y: np.ndarray, sr: int, pitch: int, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
    at_s: float, reach_s: float, partials: Sequence[int],
) -> dict[int, tuple[float, float]] | None:
    """Per partial of ``pitch`` in ``partials`` (numbers from 1; below 0.45 x the rate): (the
    energy a step within ``reach_s`` of ``at_s`` removes from its band, the band's residual
    without it), the step at the one time and stretch that remove most summed over the
    bands, as :func:`step_check` fits ``pitch`` in [t_lo_s, t_hi_s] (``strikes``: the
    plan's other strikes); None where it cannot fit. Where the strike's sound lies, band
    by band: a key whose partials are a subset of another's steps in those bands only
    (``Detector._kin_clean``)."""
    setup = _step_setup(y, sr, pitch, t_lo_s, t_hi_s, strikes, at_s, reach_s)
    if setup is None:
        return None
    mix, onsets, t0s, cum, shape = setup
    best: tuple[float, dict[int, tuple[float, float]]] | None = None
    for s in STRETCHES:
        bands = _bands(mix, pitch, onsets, s, cum, shape, 1, partials)
        if not bands:
            return None
        ks = [k for k in range(1, N_PARTIALS + 1) if k in partials][: len(bands)]
        gains = np.array([b[2].gains(t0s) for b in bands])  # (bands, T)
        ss = [b[2].ss for b in bands]
        total = sum(ss)
        if total <= 0.0:
            continue
        j = int(np.argmax(gains.sum(axis=0)))
        frac = float(gains[:, j].sum()) / total
        if math.isfinite(frac) and (best is None or frac > best[0]):
            best = (frac, {k: (float(gains[i, j]), float(ss[i])) for i, k in enumerate(ks)})
    return None if best is None else best[1]
