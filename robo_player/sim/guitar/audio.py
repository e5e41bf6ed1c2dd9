"""Guitar audio: Karplus-Strong with the Jaffe-Smith extensions, rendered per note.

The string loop of one note (Jaffe & Smith 1983)::

    y[n] = x[n] + g * A(z) * Hl(z) * z^-N * y[n]

- ``z^-N``: the delay line, ``N`` whole samples;
- ``Hl(z) = (1 + z^-1) / 2``: the string-damping (averaging) filter, linear phase, a
  delay of exactly 1/2 sample at every frequency;
- ``A(z) = (C + z^-1) / (1 + C z^-1)``: the fractional-delay allpass *tuning filter*;
  ``C`` is solved so that its phase delay *at the fundamental* is ``P - N - 1/2`` with
  ``P = fs / f0`` (not the low-frequency approximation ``(1 - D) / (1 + D)``, whose
  error reaches 10 cents high on the neck), so the loop's total delay at ``f0`` is
  exactly one period: the pitch error is below 0.01 cent (tests measure the rendered
  pitch);
- ``g``: the loss factor ("decay shortening"), per pitch, for a fundamental T60 from
  about 6 s on the low strings to 1.5 s at the top of the neck;
- ``x``: the excitation, one period of seeded noise through the *pick-position comb*
  ``1 - z^-round(beta P)`` (``beta = 0.13``: picked near the bridge) and the *dynamic
  level* lowpass (one pole, darker when softer), scaled by loudness;
- the *fret* sets ``f0`` (the heard pitch);
- the *damper's cut*: from the note's end the loop loss grows, the output times
  ``r^n`` (``r = e^(-1/(fs tau))``, ``tau = 10 ms``), which is exactly the same loop
  with each tap of its filters at delay ``k`` scaled by ``r^k``;
- a *buzzed* note gets a short broadband rattle on top.

Speed: the loop is linear and time-invariant over a note, so the note is the
excitation through the loop's transfer function, computed in the frequency domain
(one FFT pair per note). The loop's response rings long; to keep the circular
convolution from wrapping the tail onto the head, the note is computed on the circle
``|z| = 1/r`` (``y_r[n] = r^n y[n]``, ``r^M = 1e-7``) and unweighted after: exact up to
that factor. :func:`ks_reference` is the sample-by-sample loop, for the tests.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from ...performance import HeardNote, Performance
from ...voicing import f0_hz
from ..audio import write_pcm_wav

SAMPLE_RATE = 44100
PICK_POSITION = 0.13  # fraction of the string from the bridge
DAMPER_TAU_S = 0.010  # the damper's cut: time constant of the fade
FADE_TAUS = 6  # render the cut this many time constants
MAX_RING_S = 6.0  # an undamped note rings at most this long
PAD_S = 0.25
BUZZ_S = 0.04  # the rattle of a buzzed note
_WRAP = 1e-7  # r^M: how much of the response may wrap around the FFT's circle


def f0_of(pitch: int) -> float:
    return f0_hz(pitch)


def t60_s(pitch: int) -> float:
    """Decay (-60 dB) of a note's fundamental: ~6 s on a low E, ~1.5 s at B5."""
    return float(np.clip(6.0 * (f0_of(40) / f0_of(pitch)) ** 0.5, 1.0, 8.0))


def allpass_coefficient(delay: float, omega: float) -> float:
    """``C`` of ``(C + z^-1)/(1 + C z^-1)`` whose phase delay at ``omega`` (rad/sample)
    is ``delay`` samples (0 < delay < 2): bisection on the exact phase."""
    lo, hi = -0.999999, 0.999999  # phase delay falls as C rises
    z = complex(math.cos(omega), -math.sin(omega))
    for _ in range(60):
        c = 0.5 * (lo + hi)
        ph = -math.atan2(((c + z) / (1 + c * z)).imag, ((c + z) / (1 + c * z)).real)
        if ph / omega > delay:
            lo = c
        else:
            hi = c
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=256)
def loop_params(pitch: int, sample_rate: int = SAMPLE_RATE, tuned: bool = True
                ) -> tuple[int, float, float]:  # fmt: skip
    """(N, C, g) of a note's loop. ``tuned=False``: no tuning filter (C = 0, the whole
    delay rounded), for comparison."""
    f0 = f0_of(pitch)
    period = sample_rate / f0
    omega = 2.0 * math.pi / period
    if tuned:
        n = int(math.floor(period - 0.5 - 0.1))  # leave the allpass a delay in [0.1, 1.1)
        c = allpass_coefficient(period - 0.5 - n, omega)
    else:
        n, c = int(round(period - 1.5)), 0.0  # the allpass at C = 0 is one sample of delay
    per_period = 10.0 ** (-3.0 / (t60_s(pitch) * f0))
    g = min(1.0, per_period / math.cos(omega / 2.0))
    return n, c, g


def _noise(pitch: int, sample_rate: int) -> np.ndarray:
    """One period of zero-mean, unit-RMS noise: the string's initial shape (the same
    table for every pluck of a pitch, as in the original Karplus-Strong)."""
    n, _, _ = loop_params(pitch, sample_rate)
    x = np.random.default_rng([pitch, sample_rate]).uniform(-1.0, 1.0, n + 1)
    x -= x.mean()
    return x / max(float(np.sqrt(np.mean(x * x))), 1e-12)


def _pick_comb(pitch: int, sample_rate: int) -> int:
    n, _, _ = loop_params(pitch, sample_rate)
    return max(1, int(round(PICK_POSITION * (n + 1))))


def _dynamics(velocity: float) -> tuple[float, float]:
    """(pole of the dynamic-level lowpass, amplitude) for a loudness in MIDI velocity."""
    loud = min(max(velocity, 0.0) / 127.0, 1.0)
    return 0.15 + 0.6 * (1.0 - loud), loud**1.5  # softer: darker and quieter


def excitation(pitch: int, velocity: float, sample_rate: int = SAMPLE_RATE, pad: int = 400) -> np.ndarray:
    """The excitation in the time domain: the noise table through the pick-position comb
    and the dynamic-level lowpass, scaled by loudness (``pad`` samples of the lowpass's
    tail after it). :func:`render_note` applies the same filters in the frequency domain."""
    x = np.r_[_noise(pitch, sample_rate), np.zeros(pad)]
    m = _pick_comb(pitch, sample_rate)
    x = x - np.r_[np.zeros(m), x[:-m]]  # comb: 1 - z^-m
    pole, amp = _dynamics(velocity)
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x.tolist()):  # the reference: sample by sample
        acc = (1.0 - pole) * v + pole * acc
        y[i] = acc
    return y * amp


def _fast_len(n: int) -> int:
    """A length >= n of the form 2^k * {1, 1.25, 1.5, 1.75} (few distinct sizes: the
    loop spectra are cached per size)."""
    k = max(0, (n - 1).bit_length() - 4)
    base = 1 << k
    for mul in (8, 10, 12, 14, 16):
        if base * mul >= n:
            return base * mul
    return base * 16


@functools.lru_cache(maxsize=32)
def _weights(m: int) -> tuple[np.ndarray, float, np.ndarray]:
    """(r^n for n < m, r, e^(-2 pi j n / m) for n < m) for an FFT of size ``m``."""
    r = _WRAP ** (1.0 / m)
    n = np.arange(m, dtype=np.float64)
    return np.exp(n * math.log(r)), r, np.exp(-2j * np.pi * n / m)


@functools.lru_cache(maxsize=96)
def _pluck_spectrum(pitch: int, m: int, sample_rate: int) -> np.ndarray:
    """The loop's transfer function times the comb-filtered noise table, on the circle
    ``|z| = 1/r`` of an FFT of size ``m`` ((m/2+1,) complex)."""
    n, c, g = loop_params(pitch, sample_rate)
    weights, r, circle = _weights(m)
    k = np.arange(m // 2 + 1)
    zi = r * circle[: m // 2 + 1]  # z^-1 on the circle |z| = 1/r
    wn = circle[(k * n) % m]  # e^-jwN, exact phase
    h = 1.0 / (1.0 - g * (c + zi) / (1.0 + c * zi) * 0.5 * (1.0 + zi) * (r**n) * wn)
    x = _noise(pitch, sample_rate)
    xr = np.zeros(m)
    xr[: len(x)] = x * weights[: len(x)]
    comb = _pick_comb(pitch, sample_rate)
    wc = circle[(k * comb) % m]
    return np.fft.rfft(xr) * (1.0 - r**comb * wc) * h  # type: ignore[no-any-return]


def render_note(pitch: int, velocity: float, n_samples: int, end_sample: int | None = None,
                seed: int = 0, buzz: bool = False, sample_rate: int = SAMPLE_RATE) -> np.ndarray:  # fmt: skip
    """(n_samples,) float64: one plucked note from its onset; cut by the damper at
    ``end_sample`` (None: rings); ``seed``: the buzz's rattle."""
    nn, _, _ = loop_params(pitch, sample_rate)
    m = _fast_len(n_samples + nn + 1)
    spec = _pluck_spectrum(pitch, m, sample_rate)
    weights, r, circle = _weights(m)
    pole, amp = _dynamics(velocity)
    lp = (amp * (1.0 - pole)) / (1.0 - pole * r * circle[: m // 2 + 1])  # dynamic-level lowpass on the circle
    y = np.fft.irfft(spec * lp, m)[:n_samples]
    y /= weights[:n_samples]
    if buzz:
        nb = min(n_samples, int(BUZZ_S * sample_rate))
        rng = np.random.default_rng([seed, pitch, 7])
        env = np.exp(-np.arange(nb) / (0.3 * BUZZ_S * sample_rate))
        y[:nb] += 0.5 * amp * rng.uniform(-1, 1, nb) * env
    if end_sample is not None and end_sample < n_samples:
        e = max(0, end_sample)
        y[e:] *= np.exp(-np.arange(n_samples - e) / (DAMPER_TAU_S * sample_rate))
    return y


def ks_reference(pitch: int, x: np.ndarray, n_samples: int, sample_rate: int = SAMPLE_RATE,
                 tuned: bool = True) -> np.ndarray:  # fmt: skip
    """The string loop sample by sample (slow; the tests hold :func:`render_note` to it)."""
    n, c, g = loop_params(pitch, sample_rate, tuned)
    y = np.zeros(n_samples)
    xs = np.zeros(n_samples)
    xs[: min(len(x), n_samples)] = x[:n_samples]
    l_prev = w_prev = 0.0
    for i in range(n_samples):
        d0 = y[i - n] if i >= n else 0.0
        d1 = y[i - n - 1] if i >= n + 1 else 0.0
        lv = 0.5 * (d0 + d1)
        wv = c * lv + l_prev - c * w_prev
        y[i] = xs[i] + g * wv
        l_prev, w_prev = lv, wv
    return y


def _note_samples(h: HeardNote, sample_rate: int) -> tuple[int, int | None]:
    ring = min(MAX_RING_S, t60_s(h.pitch))
    if h.end_us is None:
        return int(ring * sample_rate), None
    e = max(0, h.end_us - h.t_us) * sample_rate // 1_000_000
    n = min(int(ring * sample_rate), e + int(FADE_TAUS * DAMPER_TAU_S * sample_rate))
    return max(1, n), e


def render_audio(performance: Performance, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(N,) float32 mono samples of the heard notes (buzzed ones as reported in
    ``performance.extra["buzzes"]``), not normalised."""
    notes = [h for h in performance.heard if h.t_us >= 0]
    buzz_at = [(b["t_us"], b.get("string")) for b in performance.extra.get("buzzes", [])]
    spans = []
    end = 0
    for h in notes:
        n, e = _note_samples(h, sample_rate)
        s0 = int(h.t_us * sample_rate // 1_000_000)
        spans.append((h, s0, n, e))
        end = max(end, s0 + n)
    out = np.zeros(end + int(PAD_S * sample_rate), dtype=np.float64)
    for k, (h, s0, n, e) in enumerate(spans):
        buzz = any(abs(t - h.t_us) < 5_000 for t, _ in buzz_at)
        out[s0 : s0 + n] += render_note(h.pitch, h.velocity, n, e, seed=k, buzz=buzz,
                                        sample_rate=sample_rate)  # fmt: skip
    return out.astype(np.float32)


def render_wav(performance: Performance, path: str | Path, *, sample_rate: int = SAMPLE_RATE,
               spec: Any = None) -> Path:  # fmt: skip
    """Write the heard notes as 16-bit mono PCM WAV, atomically (the piano's
    :func:`robo_player.sim.audio.render_wav`, with the guitar's voice)."""
    if not 8000 <= sample_rate <= 192_000:
        raise ValueError(f"sample_rate {sample_rate} out of range (allowed: 8000..192000)")
    return write_pcm_wav(render_audio(performance, sample_rate=sample_rate), path, sample_rate,
                         len(performance.heard))  # fmt: skip


__all__ = ["allpass_coefficient", "excitation", "ks_reference", "loop_params", "render_audio",
           "render_note", "render_wav"]  # fmt: skip
