"""Rule-based expressive rendering of a plain score, after KTH's Director Musices.

Each rule has a quantity ``k`` (1 = the rule's default strength, 0 = off), exposed as
``robo-player perform --k-NAME``:

- **phrase arch** (``phrase_arch``): phrases (cut at rests and long notes) start slow
  and soft, speed up and swell towards their middle, and slow down and fade at their
  end. At k = 1: +-6 % tempo, +-8 velocity units.
- **high-loud** (``high_loud``): higher notes louder, +3 velocity units an octave above
  the piece's mean pitch (about 3 dB/octave in DM).
- **duration contrast** (``duration_contrast``): short notes (inter-onset interval
  < 600 ms) shorter and softer, up to -16 ms / -4 velocity at k = 1 (linear in how far
  under 600 ms); long notes (IOI > 1 s) +2 velocity, their length unchanged.
- **melodic charge** (``melodic_charge``): melody notes far from the tonic on the circle
  of fifths (the key estimated from the pitch-class profile) are louder and longer:
  +0.8 velocity and +0.5 % duration per fifth of distance.
- **final ritard** (``final_ritard``): the last 3 s slow down along Friberg & Sundberg's
  runner curve ``v(x) = (1 + (w**q - 1) x)**(1/q)``, q = 3, down to w = 1 - 0.45 k.
- **timing noise** (``noise_ms``): onset deviations with a 1/f power spectrum (long-range
  correlated, as human timing is; Hennig et al. 2011), standard deviation ``noise_ms``
  (10 ms by default), shared by the notes of one onset so chords stay together.

**Tempo kept on average** (``keep_tempo``, default on): the IOI changes of phrase arch,
duration contrast and melodic charge are rescaled so that together they keep the score's
total duration (unscaled they shortened pieces by about 9 %, mostly duration contrast);
the final ritard, asked for by its own k, still lengthens the end.

Deterministic for a given seed. Pure numpy (no torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..score import Note, PedalEvent, Score

log = logging.getLogger(__name__)

# Krumhansl-Kessler major-key profile, C major.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True, slots=True)
class RenderRules:
    phrase_arch: float = 1.0
    high_loud: float = 1.0
    duration_contrast: float = 1.0
    melodic_charge: float = 1.0
    final_ritard: float = 1.0
    noise_ms: float = 10.0
    seed: int = 0
    keep_tempo: bool = True

    def __post_init__(self) -> None:
        for name in ("phrase_arch", "high_loud", "duration_contrast", "melodic_charge", "final_ritard"):
            v = getattr(self, name)
            if not -3.0 <= v <= 3.0:
                raise UsageError(f"--k-{name.replace('_', '-')} {v}: out of range (allowed -3..3)")
        if not 0.0 <= self.final_ritard * 0.45 < 1.0:
            raise UsageError(f"--k-final-ritard {self.final_ritard}: out of range (allowed 0..2.2)")
        if not 0.0 <= self.noise_ms <= 100.0:
            raise UsageError(f"--noise-ms {self.noise_ms}: out of range (allowed 0..100)")


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples with a 1/f power spectrum, zero mean, unit standard deviation."""
    if n < 2:
        return np.zeros(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = 1.0
    spec /= np.sqrt(f)  # amplitude ~ f^-1/2  => power ~ 1/f
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    sd = x.std()
    return x / sd if sd > 0 else x


def spectral_slope(x: np.ndarray) -> float:
    """Least-squares slope of log power against log frequency (about -1 for 1/f, 0 for
    white noise), over the lower half of the frequencies."""
    x = np.asarray(x, float) - np.mean(x)
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x))
    sel = slice(1, max(3, len(f) // 2))
    return float(np.polyfit(np.log(f[sel]), np.log(p[sel] + 1e-30), 1)[0])


def estimate_key(pitches: np.ndarray, weights: np.ndarray) -> int:
    """Tonic pitch class (0..11) of the best-correlating major or minor profile."""
    hist = np.bincount(pitches % 12, weights=weights, minlength=12)
    best, tonic = -np.inf, 0
    for t in range(12):
        for prof in (_MAJOR, _MINOR):
            r = np.corrcoef(hist, np.roll(prof, t))[0, 1] if hist.std() > 0 else 0.0
            if r > best:
                best, tonic = r, t
    return tonic


def _phrases(onsets: np.ndarray, melody_dur: np.ndarray, max_len_us: int = 8_000_000) -> np.ndarray:
    """Phrase index per unique onset: a new phrase after a gap or a long note."""
    n = len(onsets)
    idx = np.zeros(n, dtype=int)
    if n < 2:
        return idx
    ioi = np.diff(onsets)
    med = float(np.median(ioi)) if len(ioi) else 1.0
    start = onsets[0]
    for i in range(1, n):
        gap = onsets[i] - (onsets[i - 1] + melody_dur[i - 1])
        boundary = gap > 0.25 * med or melody_dur[i - 1] > 2.5 * med or onsets[i] - start > max_len_us
        idx[i] = idx[i - 1] + (1 if boundary else 0)
        if boundary:
            start = onsets[i]
    return idx


def perform(score: Score, rules: RenderRules | None = None) -> Score:
    """The score with expressive velocities and timing (see the module docstring)."""
    rules = rules or RenderRules()
    if not score.notes:
        return Score(notes=[], pedal=list(score.pedal), tempo_map=list(score.tempo_map),
                     ticks_per_beat=score.ticks_per_beat, source=score.source)
    rng = np.random.default_rng(rules.seed)
    notes = score.notes
    pitch = np.array([n.pitch for n in notes])
    on = np.array([n.onset_us for n in notes], dtype=np.int64)
    dur = np.array([n.duration_us for n in notes], dtype=np.int64)
    vel = np.array([n.velocity for n in notes], dtype=float)

    # The unique onsets form the time grid; the melody is the highest note at each onset.
    grid, inv = np.unique(on, return_inverse=True)
    g = len(grid)
    mel_pitch = np.full(g, -1)
    mel_dur = np.zeros(g, dtype=np.int64)
    for i in range(len(notes)):
        if pitch[i] > mel_pitch[inv[i]]:
            mel_pitch[inv[i]], mel_dur[inv[i]] = pitch[i], dur[i]
    ioi = np.diff(np.r_[grid, grid[-1] + max(mel_dur[-1], 1)]).astype(float)  # µs, per onset
    tempo = np.ones(g)  # IOI multiplier per onset (> 1 = slower)
    dvel = np.zeros(len(notes))

    # phrase arch
    ph = _phrases(grid, mel_dur)
    pos = np.zeros(g)
    for p in np.unique(ph):
        sel = np.flatnonzero(ph == p)
        t0, t1 = grid[sel[0]], grid[sel[-1]] + ioi[sel[-1]]
        pos[sel] = (grid[sel] + ioi[sel] / 2 - t0) / max(1.0, float(t1 - t0))
    arch = np.sin(np.pi * pos)  # 0 at the phrase ends, 1 in the middle
    k = rules.phrase_arch
    tempo *= 1.0 + k * 0.06 * (1.0 - 2.0 * arch)
    dvel += k * 8.0 * (2.0 * arch[inv] - 1.0)

    # high-loud
    dvel += rules.high_loud * 3.0 * (pitch - pitch.mean()) / 12.0

    # duration contrast (on the melody's IOIs)
    k = rules.duration_contrast
    short = np.clip((600_000 - ioi) / 600_000, 0.0, 1.0)
    tempo -= k * 16_000 * short / np.maximum(ioi, 1.0)
    tempo = np.maximum(tempo, 0.5)
    dvel += k * (-4.0 * short[inv] + 2.0 * (ioi[inv] > 1_000_000))

    # melodic charge
    k = rules.melodic_charge
    tonic = estimate_key(pitch, dur.astype(float))
    fifths = (7 * (pitch - tonic)) % 12
    charge = np.minimum(fifths, 12 - fifths)  # 0..6 fifths from the tonic
    is_mel = pitch == mel_pitch[inv]
    dvel += k * 0.8 * charge * is_mel
    mel_charge = np.zeros(g)
    mel_charge[inv[is_mel]] = charge[is_mel]
    tempo *= 1.0 + k * 0.005 * mel_charge
    if rules.keep_tempo:  # the rules above reshape the timing; they do not change the tempo
        tempo *= float(ioi.sum()) / max(float((ioi * tempo).sum()), 1.0)

    # final ritard over the last 3 s (score time)
    k = rules.final_ritard
    end = float(grid[-1] + ioi[-1])
    span = min(3_000_000.0, end - float(grid[0]))
    if k > 0 and span > 0:
        w, q = 1.0 - 0.45 * k, 3.0
        x = np.clip((grid + ioi / 2 - (end - span)) / span, 0.0, 1.0)
        v = (1.0 + (w ** q - 1.0) * x) ** (1.0 / q)  # relative tempo, 1 -> w
        tempo /= v

    # new onset times: scaled IOIs plus 1/f timing noise (shared within an onset)
    new_ioi = ioi * tempo
    new_grid = np.r_[0.0, np.cumsum(new_ioi)[:-1]] + float(grid[0])
    if rules.noise_ms > 0 and g > 1:
        new_grid = new_grid + pink_noise(g, rng) * rules.noise_ms * 1000.0
        for i in range(1, g):  # keep onsets in order, at least a third of the IOI apart
            new_grid[i] = max(new_grid[i], new_grid[i - 1] + new_ioi[i - 1] / 3.0)
        new_grid = np.maximum(new_grid, 0.0)
    # ends map through the same piecewise-linear time map
    xs = np.r_[grid, grid[-1] + ioi[-1]].astype(float)
    ys = np.r_[new_grid, new_grid[-1] + new_ioi[-1]]
    ends = on + dur
    slope = new_ioi[-1] / ioi[-1]
    new_end = np.where(ends <= xs[-1], np.interp(ends, xs, ys), ys[-1] + (ends - xs[-1]) * slope)
    new_on = new_grid[inv]
    new_dur = np.maximum(1.0, new_end - new_on)
    new_vel = np.clip(np.round(vel + dvel), 1, 127).astype(int)
    out = [Note(int(pitch[i]), int(round(new_on[i])), int(round(new_dur[i])), int(new_vel[i]),
                notes[i].channel, notes[i].track) for i in range(len(notes))]
    pedal = [PedalEvent(int(round(np.interp(p.t_us, xs, ys))), p.value, p.channel) for p in score.pedal]
    return Score(notes=out, pedal=pedal, ticks_per_beat=score.ticks_per_beat, source=score.source)
