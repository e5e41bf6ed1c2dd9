"""Strike-to-strike spread of the simulated actuators (docs/simulator.md, "Spread").

A real solenoid does not land the same stroke twice: friction, supply ripple, the
plunger's rest position and the hammer's (or pick's) contact vary a little from one
stroke to the next. The hidden truth gives every actuator its own spread, drawn within
the ranges below; the physics draws each stroke's deviation from it.

The draws are *counter based*: the n-th stroke of an actuator takes its deviation from a
hash of (the truth's seed, a stream for the kind of part, the actuator, n), never from a
shared generator. So the same truth and the same commands give the same result, a
firmware port (whose trace has the same strokes as ``sim://``) hears the same spread,
a replay from a checkpoint (the live ear's forks) draws what the drain draws, and a
stroke added on one key does not reshuffle any other key's.

The figures are **assumed** (no published stroke-to-stroke figure for a hobby solenoid
action was found; the best published reproduction accuracy of a computer-controlled
grand, the Bösendorfer SE/CEUS, is ±2 ms against the recorded original, Goebl & Bresin,
JASA 114(4) 2003, which bounds the spread of a servo-controlled action from above, and
they report larger timing errors for soft tones): timing s.d. ``TIMING_SD_US`` plus
``TIMING_SD_FRAC`` of the stroke's latency (the slower the stroke, the more friction
acts on it), loudness s.d. ``LOUDNESS_SD_FRAC`` of the loudness, in velocity terms.

The two deviations of a stroke are correlated, negatively (``SPREAD_CORR``, assumed too):
most of a stroke's deviation is the energy it got (supply ripple, friction, the
plunger's rest position), and a weaker stroke is both later and softer; the hammer's
contact and the string's response add a part of each that the other does not share.
The pedal's latency spreads too (``PEDAL_SD_FRAC`` of it: a bigger solenoid moving a
trapwork linkage and every damper), and so does a damper's fall after its key's
release (the key's own timing figures, on the fall's time ``R/3``).
"""

from __future__ import annotations

import zlib

import numpy as np

# Per-actuator spread ranges, uniform, drawn in the hidden truth: (low, high).
TIMING_SD_US = (100.0, 200.0)  # s.d. of the contact time, fixed part, µs
TIMING_SD_FRAC = (0.01, 0.02)  # ... plus this share of the stroke's latency
LOUDNESS_SD_FRAC = (0.01, 0.02)  # s.d. of the loudness, share of it (velocity units)
# correlation of a stroke's timing and loudness deviations: a late stroke is softer
SPREAD_CORR = (-0.8, -0.4)
PEDAL_SD_FRAC = (0.01, 0.03)  # s.d. of the pedal's latency, share of it (0.3-1.8 ms)
PRESS_SD_FRAC = (0.03, 0.06)  # s.d. of a fret contact's settle time, share of it
Z_MAX = 4.0  # a stroke's deviation is clipped at this many s.d. (a bounded mechanism)
# On by default (session 13): an instrument that repeats itself exactly flatters every
# figure measured on it; ``sim://?spread=0`` plays the formulas exactly (the tests that
# hold the physics to them).
SPREAD_DEFAULT = True
# ``sim://?spread_draw=D`` (session 32): the strokes drawn again, the truth's spread seed
# plus D times this (D = 1: session 31's one-off "+1000" draws, a patch of
# ``Truth.spread_seed`` in a script, which this reproduces to the byte); D = 0, the default,
# is the truth's own draw, so every figure measured before holds. (Truth seed S's draw D
# takes the stroke numbers truth seed S + 1000 D takes at draw 0, on other keys with other
# spreads: no figure compares the two.) A calibration's result moves with its strokes' draw by about a
# change's size (docs/calibration.md "Session 31, probe" and "Session 32, gain"): a change
# is judged over draws. SPREAD_DRAW_MAX bounds the option (a draw is any of them).
SPREAD_DRAW_STRIDE = 1000
SPREAD_DRAW_MAX = 1_000_000

# Streams: one per kind of part, so that the piano's keys, a guitar's pickers and its
# pressers never draw the same numbers.
STREAM_KEY = 0x6B6579  # a piano key's stroke
STREAM_PICK = 0x7069636B  # a guitar picker's stroke
STREAM_PRESS = 0x70726573  # a guitar fret contact (presser or fret solenoid)
STREAM_PEDAL = 0x706564616C  # a change of the piano's pedal
STREAM_DAMPER = 0x64616D70  # a piano key's damper falling after its release

_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C1
    x = x ^ (x >> np.uint64(27))
    x = x * _C2
    return x ^ (x >> np.uint64(31))


def stroke_normals(
    seed: int, stream: int, part: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals per stroke, clipped at ``Z_MAX``: stroke ``n[i]``
    (0, 1, 2, … per part) of part ``part[i]`` (a pitch, a string, an actuator), for the
    truth's ``seed`` and a kind of part (``stream``). Shapes (S,) in, (S,), (S,) out."""
    base = _mix(np.array([(int(seed) * 0x100000001B3 + int(stream)) & _M64], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        key = _mix(base + (np.asarray(part, dtype=np.int64).astype(np.uint64) << np.uint64(40))
                   + np.asarray(n, dtype=np.int64).astype(np.uint64))  # fmt: skip
        h1 = _mix(key + _GOLDEN)
        h2 = _mix(key + _GOLDEN + _GOLDEN)
    scale = 1.0 / float(1 << 53)
    u1 = (h1 >> np.uint64(11)).astype(np.float64) * scale  # [0, 1)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) * scale
    r = np.sqrt(-2.0 * np.log1p(-u1))  # Box-Muller; 1 - u1 in (0, 1]
    z1 = np.clip(r * np.cos(2.0 * np.pi * u2), -Z_MAX, Z_MAX)
    z2 = np.clip(r * np.sin(2.0 * np.pi * u2), -Z_MAX, Z_MAX)
    return z1, z2


def correlated(z_t: np.ndarray, z_v: np.ndarray, corr: np.ndarray | float) -> np.ndarray:
    """The loudness's standard normal correlated ``corr`` with the timing's ``z_t``, from
    an independent ``z_v`` (clipped at ``Z_MAX`` as the draws are)."""
    c = np.asarray(corr, dtype=np.float64)
    return np.clip(c * z_t + np.sqrt(1.0 - c * c) * z_v, -Z_MAX, Z_MAX)


def content_seed(doc: object) -> int:
    """A seed for a truth without one (a hand-made file): a checksum of its contents, so
    the same file always spreads the same way."""
    return zlib.crc32(repr(doc).encode("utf-8"))


def draw_seed(seed: int, draw: int) -> int:
    """The strokes' seed for ``draw`` of the truth's spread seed ``seed``: ``seed`` itself
    for draw 0 (the truth's own strokes), else ``seed + draw * SPREAD_DRAW_STRIDE``."""
    if not 0 <= draw <= SPREAD_DRAW_MAX:
        raise ValueError(f"spread draw {draw} out of range (allowed: 0..{SPREAD_DRAW_MAX})")
    return int(seed) + int(draw) * SPREAD_DRAW_STRIDE


def timing_sd_us(latency_us: np.ndarray, sd_us: np.ndarray, sd_frac: np.ndarray) -> np.ndarray:
    """The s.d. of a stroke's contact time (µs): the fixed part and the latency's share,
    as independent sources."""
    return np.sqrt(sd_us * sd_us + (sd_frac * latency_us) ** 2)


__all__ = [
    "LOUDNESS_SD_FRAC",
    "PEDAL_SD_FRAC",
    "PRESS_SD_FRAC",
    "SPREAD_CORR",
    "SPREAD_DRAW_MAX",
    "SPREAD_DRAW_STRIDE",
    "STREAM_DAMPER",
    "STREAM_KEY",
    "STREAM_PEDAL",
    "STREAM_PICK",
    "STREAM_PRESS",
    "TIMING_SD_FRAC",
    "TIMING_SD_US",
    "Z_MAX",
    "content_seed",
    "correlated",
    "draw_seed",
    "stroke_normals",
    "timing_sd_us",
]
