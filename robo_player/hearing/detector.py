"""Onsets and loudness of struck piano notes in mono audio (44.1 or 48 kHz), numpy only.

Two questions, one front end:

- **key known** (calibration strikes: this key, somewhere in this window):
  :meth:`Detector.find` returns the start of the key's attack and its loudness, or
  None if the key did not sound there;
- **key unknown** (a whole performance): :meth:`Detector.detect` returns every onset
  with its pitch, chosen by a harmonic template over the 88 piano pitches.

Front end: a power spectrogram (Hann window of 2048 samples, hop 2 ms) and, per pitch,
its harmonic salience: the power at partials ``k·f0`` (k = 1..8, a bin of tolerance
each side and up to +4 % for the string's inharmonicity) summed. A strike is where a
pitch's salience rises steeply (> :data:`MIN_RISE_DB` over 40 ms); the frame gives the
onset to a few ms. Then the sample-accurate part, in the time domain: the recording
band-passed to the note's partials (0.8·f0 .. 8·f0 + 4 %, at most 10 kHz), its
envelope ``|analytic signal|²`` smoothed over 0.25 ms, the background before the onset
taken off, and the attack's amplitude between 20 % and 70 % of its peak fitted by a
line: the onset is where that line leaves zero (the start of the attack, not its
middle, so the detector does not lag louder or softer notes).

Loudness: the note's mean power in its band over 3..13 ms after the onset, less the
background, divided by the microphone's reference gain, turned into MIDI velocity by
the level law of :mod:`robo_player.voicing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import HearingError
from ..voicing import f0_hz, velocity_for_power

SAMPLE_RATES = (44100, 48000)
N_FFT = 2048
HOP_S = 0.002
MIN_RISE_DB = 9.0  # a pitch's salience must rise this much over RISE_S to be a strike
RISE_S = 0.040
F_MAX_HZ = 10_000.0
INHARMONIC = 0.04  # partials may sit this much above k·f0
REFERENCE_GAIN_DB = -24.0  # the simulator's room: a velocity-127 note's level law x this
CLIP_LEVEL = 0.999
LOWEST, HIGHEST = 21, 108


@dataclass(frozen=True, slots=True)
class Onset:
    """One struck note heard in a recording (audio clock, seconds)."""

    t_s: float
    pitch: int
    velocity: float  # loudness in MIDI velocity units (voicing's level law)
    rise_db: float  # how steeply the pitch's salience rose: the detection's strength


def check_audio(samples: np.ndarray, sample_rate: int, where: str) -> np.ndarray:
    """``samples`` as float64 mono, or a :class:`HearingError` that says what is wrong."""
    if sample_rate not in SAMPLE_RATES:
        raise HearingError(
            f"{where}: sample rate {sample_rate} Hz is not taken (allowed: 44100, 48000 Hz)"
        )
    y = np.asarray(samples, dtype=np.float64)
    if y.ndim != 1:
        raise HearingError(f"{where}: {y.ndim}-D audio (the detector takes mono)")
    if len(y) < sample_rate // 10:
        raise HearingError(f"{where}: {len(y) / sample_rate:.3f} s of audio (need >= 0.1 s)")
    return y


def clipped_fraction(y: np.ndarray) -> float:
    return float(np.mean(np.abs(y) >= CLIP_LEVEL)) if len(y) else 0.0


def _band(freqs: np.ndarray, f_lo: float, f_lo_full: float, f_hi: float) -> np.ndarray:
    """A smooth band-pass gain: raised-cosine edges (no brick wall, whose ringing would
    reach before the onset): 0 below ``f_lo``, 1 from ``f_lo_full`` to ``f_hi``, 0 above
    1.3 · ``f_hi``."""
    f = np.abs(freqs)
    up = np.clip((f - f_lo) / max(f_lo_full - f_lo, 1e-9), 0.0, 1.0)
    down = np.clip((1.3 * f_hi - f) / (0.3 * f_hi), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


_DELAY: dict[tuple[int, int], float] = {}


def detector_delay_s(pitch: int, sample_rate: int) -> float:
    """The fine stage's own delay for ``pitch`` (its band filter and one-period smoothing
    make low notes read late): measured once on a synthetic harmonic tone (partials
    1..8 at 1/k, a step onset, no noise) and taken off every onset it reports."""
    key = (pitch, sample_rate)
    if key not in _DELAY:
        sr = sample_rate
        t = np.arange(int(0.5 * sr)) / sr
        f0 = f0_hz(pitch)
        y = np.zeros_like(t)
        on = t >= 0.25
        for k in range(1, 9):
            if k * f0 < 0.45 * sr:
                y[on] += 0.01 / k * np.sin(2 * np.pi * k * f0 * (t[on] - 0.25))
        det = Detector.__new__(Detector)
        det.y, det.sr, det.gain = y, sr, 1.0
        _DELAY[key] = det._refine(pitch, 0.25, 0.0).t_s - 0.25
    return _DELAY[key]


class Detector:
    """The detector over one recording; spectrogram and per-pitch salience are cached."""

    def __init__(
        self, samples: np.ndarray, sample_rate: int, *, where: str = "audio",
        gain_db: float = REFERENCE_GAIN_DB,
    ) -> None:
        self.y = check_audio(samples, sample_rate, where)
        self.sr = sample_rate
        self.where = where
        self.gain = 10.0 ** (gain_db / 20.0)
        self.hop = int(round(HOP_S * sample_rate))
        self._spec: np.ndarray | None = None
        self._sal: dict[int, np.ndarray] = {}
        self.peak = float(np.abs(self.y).max())
        self.clipped = clipped_fraction(self.y)

    # ---- front end -------------------------------------------------------------------
    @property
    def spec(self) -> np.ndarray:
        """(frames, N_FFT/2+1) power; frame i is centred on sample i·hop."""
        if self._spec is None:
            pad = np.pad(self.y, (N_FFT // 2, N_FFT // 2))
            n = 1 + (len(pad) - N_FFT) // self.hop
            win = np.hanning(N_FFT)
            out = np.empty((n, N_FFT // 2 + 1), dtype=np.float32)
            for i0 in range(0, n, 512):  # blocks keep the frame matrix small
                i1 = min(n, i0 + 512)
                idx = (np.arange(i0, i1) * self.hop)[:, None] + np.arange(N_FFT)[None, :]
                out[i0:i1] = np.abs(np.fft.rfft(pad[idx] * win, axis=1)) ** 2
            self._spec = out
        return self._spec

    def salience(self, pitch: int) -> np.ndarray:
        """(frames,) harmonic salience of ``pitch`` (power at its partials, summed)."""
        s = self._sal.get(pitch)
        if s is None:
            spec = self.spec
            bin_hz = self.sr / N_FFT
            f0 = f0_hz(pitch)
            s = np.zeros(spec.shape[0], dtype=np.float64)
            for k in range(1, 9):
                fk = k * f0
                if fk > min(F_MAX_HZ, 0.45 * self.sr):
                    break
                lo = max(0, int(math.floor(fk / bin_hz)) - 1)
                hi = int(math.ceil(fk * (1 + INHARMONIC * min(1.0, k / 8)) / bin_hz)) + 1
                s += spec[:, lo : hi + 1].max(axis=1)
            self._sal[pitch] = s
        return s

    def rise_db(self, pitch: int) -> np.ndarray:
        """(frames,) dB rise of the pitch's salience over RISE_S, centred on each frame."""
        lag = max(1, int(round(RISE_S / HOP_S / 2)))
        level = 10.0 * np.log10(self.salience(pitch) + self.floor())
        r = np.full(len(level), -np.inf)
        r[lag:-lag] = level[2 * lag :] - level[: -2 * lag]
        return r

    def floor(self) -> float:
        """A power floor under which salience is noise (keeps log rises of noise small)."""
        if not hasattr(self, "_floor"):
            self._floor = float(np.percentile(self.spec.sum(axis=1), 20)) / (N_FFT / 2) * 4 + 1e-12
        return self._floor

    # ---- key known ---------------------------------------------------------------------
    def find(self, pitch: int, t_lo_s: float, t_hi_s: float) -> Onset | None:
        """The onset of ``pitch`` in [t_lo_s, t_hi_s] (audio seconds), or None if the key
        did not sound there (its salience never rose by MIN_RISE_DB)."""
        r = self.rise_db(pitch)
        f0, f1 = max(0, int(t_lo_s / HOP_S)), min(len(r), int(math.ceil(t_hi_s / HOP_S)) + 1)
        if f1 <= f0:
            return None
        i = f0 + int(np.argmax(r[f0:f1]))
        if not r[i] >= MIN_RISE_DB:
            return None
        o = self._refine(pitch, self._midpoint(pitch, i), float(r[i]))
        return Onset(o.t_s - detector_delay_s(pitch, self.sr), o.pitch, o.velocity, o.rise_db)

    def _midpoint(self, pitch: int, i: int) -> float:
        """Audio time where the pitch's salience is halfway from before the rise at frame
        ``i`` to its top after it: a window centred on a step onset holds half of it."""
        s = self.salience(pitch)
        lag = int(round(RISE_S / HOP_S / 2))
        lo = float(s[max(0, i - lag)])
        top_i = i + int(np.argmax(s[i : i + 2 * lag + 1]))
        half = 0.5 * (lo + float(s[top_i]))
        j = top_i
        while j > max(0, i - lag) and s[j] > half:
            j -= 1
        # interpolate between frames j (<= half) and j + 1 (> half)
        a, b = float(s[j]), float(s[min(j + 1, len(s) - 1)])
        frac = (half - a) / (b - a) if b > a else 0.0
        return (j + frac) * self.hop / self.sr

    # ---- the sample-accurate part ------------------------------------------------------
    def _refine(self, pitch: int, t_coarse: float, rise: float) -> Onset:
        """Half-energy time of the note's band envelope, smoothed over one period of f0
        (the partials' beats cancel), and the note's loudness."""
        sr = self.sr
        f0 = f0_hz(pitch)
        f_hi = min(F_MAX_HZ, 0.45 * sr, 8.6 * f0)
        period = 1.0 / f0
        half_w = 0.06 + period
        s0 = max(0, int((t_coarse - half_w) * sr))
        s1 = min(len(self.y), int((t_coarse + half_w) * sr))
        seg = self.y[s0:s1]
        n = len(seg)
        freqs = np.fft.fftfreq(n, 1.0 / sr)
        band = np.where(freqs > 0, 2.0, 0.0) * _band(freqs, 0.1 * f0, 0.6 * f0, f_hi)
        env = np.abs(np.fft.ifft(np.fft.fft(seg) * band)) ** 2
        w = max(1, int(round(period * sr)))
        cs = np.concatenate([[0.0], np.cumsum(env)])
        idx = np.arange(n)
        lo, hi = np.clip(idx - w // 2, 0, n), np.clip(idx - w // 2 + w, 0, n)
        sm = (cs[hi] - cs[lo]) / np.maximum(hi - lo, 1)  # (n,) centred boxcar of one period
        c = int(t_coarse * sr) - s0
        ms = int(0.001 * sr)
        half_n = w // 2
        cross = float(c)
        for _ in range(3):  # background and top from around the last crossing
            x = int(cross)
            pre = sm[max(0, x - half_n - 20 * ms) : max(1, x - half_n - ms)]
            post = sm[min(n - 1, x + half_n + 2 * ms) : min(n, x + half_n + 9 * ms)]
            b = float(np.median(pre)) if len(pre) else 0.0
            top = float(np.median(post)) if len(post) else b
            half = b + 0.5 * (top - b)
            # the first crossing of half forward from the background (later dips of the
            # envelope, from beats the boxcar does not cancel, do not count)
            start = max(0, x - half_n - 10 * ms)
            above = np.nonzero(sm[start : min(n, x + half_n + 10 * ms)] > half)[0]
            if not len(above) or above[0] == 0:
                break
            j = start + int(above[0]) - 1
            a0, a1 = float(sm[j]), float(sm[j + 1])
            cross = j + ((half - a0) / (a1 - a0) if a1 > a0 else 0.0)
        t_on = (s0 + cross) / sr
        # loudness: the note's band power over one period (>= 10 ms) from 3 ms after the
        # half-energy point, less the background
        k0 = int((t_on - s0 / sr + 0.003) * sr)
        k1 = k0 + max(w, int(0.010 * sr))
        p_note = float(np.mean(env[max(0, k0) : max(k0 + 1, min(n, k1))])) - b
        # |analytic|^2 of a partial of amplitude a is a^2 (its mean power is a^2 / 2)
        vel = velocity_for_power(pitch, max(p_note, 0.0) / 2.0 / self.gain**2, f_hi + 1.0)
        return Onset(t_on, pitch, vel, rise)
