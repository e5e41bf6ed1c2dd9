"""A take's level: the one number between what the detector hears and what was meant.

The detector turns a strike's power into MIDI velocity at its reference microphone
(:data:`~robo_player.hearing.detector.REFERENCE_GAIN_DB`, the level law of
:mod:`robo_player.voicing`). A real microphone's gain is unknown (the microphone, its
distance, the preamp): every heard velocity is then off by the same factor of power.
:func:`take_level_db` fits that factor as one number over pairs of heard and
expected power (dB, the mean of the middle half), and :func:`remove_level` takes it
out of a heard velocity. ``robo-player verify`` pairs the heard notes with the plan's
velocities (:func:`robo_player.hearing.cli.level_to_plan`); the calibration through audio pairs
every key's full-drive strike with the spec's nominal velocity at full drive (the one
loudness the calibrator knows before it has measured anything: docs/hearing.md).

That anchor cannot tell the microphone's gain from the instrument's common loudness. A
measured microphone (``--mic-gain-db G[:TOL]``, :class:`MicGain`, :func:`parse_mic_gain`)
can: :func:`fuse_level` weighs the known gain with the anchor by their uncertainties,
and :class:`TakeLevel` says what each said and where the level came from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..voicing import VELOCITY_MAX, f0_hz, power_for_velocity, velocity_for_power
from .detector import band_hi_hz


def band_top_hz(pitch: int, sample_rate: int) -> float:
    """The top of the band whose partials the detector's loudness sums (its ``f_hi``,
    as it hands it to the level law)."""
    return band_hi_hz(f0_hz(pitch), sample_rate) + 1.0


def level_db(pitch: int, heard: float, expected: float, sample_rate: int) -> float | None:
    """Heard power over expected power of one note (dB), or None where either cannot
    say it (not finite, silent, or at the top of the detector's scale)."""
    if not (math.isfinite(heard) and math.isfinite(expected)) or expected <= 0.0:
        return None
    if not 0.0 < heard < VELOCITY_MAX - 1.0:
        return None
    f = band_top_hz(pitch, sample_rate)
    return 10.0 * math.log10(power_for_velocity(pitch, heard, f) / power_for_velocity(pitch, expected, f))


def take_level_db(pairs: Iterable[tuple[int, float, float]], sample_rate: int) -> tuple[float, int]:
    """The take's level (dB) from ``(pitch, heard velocity, expected velocity)`` pairs:
    the interquartile mean of their :func:`level_db` (the mean of the middle half; the
    median under 4 pairs); (0.0, 0) when no pair can say it.

    Not the median: the pairs differ by the keys' own loudness and the detector's noise,
    both spread without gross outliers, and the mean of the middle half is the steadier
    of the two and still ignores a quarter of strays each side (a calibration's first
    round, 12 keys, truth seeds 1-6: level error rms 0.63 dB by the median, 0.49 by
    this; docs/hearing.md)."""
    d = sorted(x for p, h, e in pairs if (x := level_db(p, h, e, sample_rate)) is not None)
    if not d:
        return 0.0, 0
    if len(d) < 4:
        return float(np.median(d)), len(d)
    q = len(d) // 4
    return float(np.mean(d[q : len(d) - q])), len(d)


# an anchor's pair farther than this many s.d. of one pair (the keys' own spread and the
# ear's noise: :func:`anchor_pair_sd_db`) from the pairs' median is a stray (a wrong
# strike heard, a key that barely sounded), not a key of the instrument
ANCHOR_STRAY_SD = 3.0


def anchor_level_db(pairs: Iterable[tuple[int, float, float]], sample_rate: int,
                    ratio_sd: float) -> tuple[float, int]:  # fmt: skip
    """The take's level (dB) that makes the **mean loudness** of ``(pitch, heard
    velocity, expected velocity)`` pairs the expected one: every pair weighs alike, in
    velocity units (the spec's tolerance of a key's loudness is a spread in velocity
    around its nominal, :data:`~robo_player.spec.model.KEY_LOUDNESS_TOLERANCE`), less the
    strays: pairs whose loudness ratio lies more than ANCHOR_STRAY_SD x ``ratio_sd`` (one
    pair's s.d. as a fraction of the expected) from the median. (0.0, 0) when no pair can
    say it. Returns the level and how many pairs told it.

    Not the mean of the middle half (:func:`take_level_db`, kept for ``verify``, whose
    pairs are a plan's notes): the keys of one instrument spread without gross outliers,
    and half of them carry 1.4x the s.d. of all of them (a uniform spread of +-20 % over
    88 keys: 1.73 % against 1.23 %); not the mean in dB either: the mean of a loudness
    spread symmetric in velocity is, in dB, its mean less ~half its variance (-0.7 % of
    velocity at +-20 %). docs/calibration.md, "Loudness through the microphone"."""
    ok = [(p, h, e) for p, h, e in pairs if level_db(p, h, e, sample_rate) is not None]
    if not ok:
        return 0.0, 0
    lvl = float(np.median([level_db(p, h, e, sample_rate) for p, h, e in ok]))
    keep = ok
    for _ in range(8):  # the level law's power is not one power of velocity: iterate
        r = np.array([remove_level(p, h, lvl, sample_rate) / e for p, h, e in ok])
        med = float(np.median(r))
        keep = [x for x, ri in zip(ok, r, strict=True) if abs(ri - med) <= ANCHOR_STRAY_SD * ratio_sd * med]
        m = float(np.mean([ri for ri in r if abs(ri - med) <= ANCHOR_STRAY_SD * ratio_sd * med]))
        # the mean ratio m as a level, at the kept pairs' own pitches and loudness
        step = float(np.mean([level_db(p, e * m, e, sample_rate) or 0.0 for p, _, e in keep]))
        lvl += step
        if abs(step) < 1e-4:
            break
    return lvl, len(keep)


def anchor_pair_sd_db(pitch: int, want: float, tolerance: float, noise: float, sample_rate: int) -> float:
    """What one strike at nominal loudness ``want`` can tell of the take's level (dB, one
    s.d.): its key's own loudness within ``tolerance`` of the nominal (a fraction, a
    uniform spread: / sqrt(3)) and the ear's loudness noise ``noise`` (velocity, s.d.),
    through the level law at ``pitch`` (its slope barely moves with pitch)."""
    loud = level_db(pitch, want * (1.0 + tolerance / math.sqrt(3.0)), want, sample_rate) or 0.0
    ear = (level_db(pitch, want + noise, want, sample_rate) or 0.0) if noise > 0 else 0.0
    return math.hypot(loud, ear)


def remove_level(pitch: int, velocity: float, level: float, sample_rate: int) -> float:
    """``velocity`` as heard by a microphone ``level`` dB quieter (the take's level out)."""
    if level == 0.0 or not math.isfinite(velocity) or velocity <= 0.0:
        return velocity
    f = band_top_hz(pitch, sample_rate)
    return velocity_for_power(pitch, power_for_velocity(pitch, velocity, f) * 10.0 ** (-level / 10.0), f)


# A measured microphone chain (``--mic-gain-db G[:TOL]``): a measurement microphone with
# its per-unit calibration file (a miniDSP UMIK-1's sensitivity, ~0.1 dB) or a sound
# level calibrator's 94 dB SPL tone gives the chain's gain; G is in the sense of the
# simulated room's ``gain_db`` (sim/room.py: a velocity-127 note's level law times this
# gain, dBFS), its range the room's (a test holds them together)
MIC_GAIN_DB_RANGE = (-60.0, 0.0)
MIC_GAIN_TOL_DB = 0.3  # the stated tolerance when none is given (dB, taken as one s.d.)
MIC_GAIN_TOL_MAX_DB = 20.0  # a tolerance past this says nothing the anchor does not


@dataclass(frozen=True, slots=True)
class MicGain:
    """The microphone chain's gain, measured (dB, the room's ``gain_db`` sense) and the
    tolerance its maker states (dB, one s.d.)."""

    gain_db: float
    tol_db: float = MIC_GAIN_TOL_DB


def parse_mic_gain(text: str, where: str = "--mic-gain-db") -> MicGain:
    """``G`` or ``G:TOL`` (dB) as a :class:`MicGain`; a clear error for anything else."""
    g_txt, _, tol_txt = str(text).strip().partition(":")
    try:
        gain = float(g_txt)
        tol = float(tol_txt) if tol_txt else MIC_GAIN_TOL_DB
    except ValueError as err:
        raise UsageError(f"{where}: {text!r} is not G or G:TOL in dB (e.g. -30.8 or -30.8:0.2)") from err
    lo, hi = MIC_GAIN_DB_RANGE
    if not (math.isfinite(gain) and lo <= gain <= hi):
        raise UsageError(f"{where}: gain {g_txt} dB is out of range (allowed: {lo:g}..{hi:g} dB, as the room's gain_db)")
    if not (math.isfinite(tol) and 0.0 < tol <= MIC_GAIN_TOL_MAX_DB):
        raise UsageError(f"{where}: tolerance {tol_txt} dB is out of range (allowed: > 0 .. {MIC_GAIN_TOL_MAX_DB:g} dB)")
    return MicGain(gain, tol)


@dataclass(frozen=True, slots=True)
class TakeLevel:
    """A take's level and where it came from: ``by`` is ``"anchor"`` (the strikes'
    loudness against the spec's nominal alone), ``"mic gain"`` (no strike told it) or
    ``"mic gain + anchor"`` (the two weighed by their uncertainties)."""

    level_db: float
    by: str
    anchor_db: float | None = None  # what the anchor alone said (None: no pair)
    anchor_sd_db: float | None = None  # its uncertainty: one pair's / sqrt(pairs)
    anchor_n: int = 0
    mic_db: float | None = None  # what the known gain says (the gain less the reference)
    mic_sd_db: float | None = None

    def line(self, against: str, pairs: str) -> str:
        """The CLI's line: the level, ``against`` what, and where it came from (``pairs``:
        what the anchor's pairs are, e.g. "keys at full drive against the spec's nominal")."""
        anchor = ("nothing heard to anchor it" if self.anchor_db is None else
                  f"{self.anchor_db:+.2f} +- {self.anchor_sd_db or 0.0:.2f} dB from {self.anchor_n} {pairs}")
        if self.mic_db is None:
            return f"the take's level: {self.level_db:+.2f} dB against {against}, by the anchor ({anchor})"
        return (f"the take's level: {self.level_db:+.2f} dB against {against}, by {self.by}: the measured "
                f"microphone {self.mic_db:+.2f} +- {self.mic_sd_db or 0.0:.2f} dB, the anchor {anchor}")

    def to_json(self) -> dict[str, object]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 3)

        return {"level_db": r(self.level_db), "by": self.by, "anchor_db": r(self.anchor_db),
                "anchor_sd_db": r(self.anchor_sd_db), "anchor_n": self.anchor_n, "mic_db": r(self.mic_db),
                "mic_sd_db": r(self.mic_sd_db)}  # fmt: skip


def fuse_level(anchor_db: float, anchor_n: int, pair_sd_db: float, mic: MicGain | None,
               reference_db: float) -> TakeLevel:  # fmt: skip
    """The take's level from the anchor (``anchor_db`` over ``anchor_n`` pairs, each
    uncertain by ``pair_sd_db``: the spec's full-drive loudness tolerance and the ear's
    noise) and, where given, the measured microphone gain ``mic`` (its level: the gain
    less the ear's ``reference_db``): their mean weighed by the inverse variances.

    From audio alone the microphone's gain and the strikes' common loudness cannot be
    told apart: the anchor takes the spec's nominal for the latter, and is off by the
    instrument's own mean loudness against it; a known gain breaks the confound."""
    if mic is None:
        if not anchor_n:
            return TakeLevel(0.0, "none")
        sd = pair_sd_db / math.sqrt(anchor_n)
        return TakeLevel(anchor_db, "anchor", anchor_db, sd, anchor_n)
    known = mic.gain_db - reference_db
    if not anchor_n:
        return TakeLevel(known, "mic gain", None, None, 0, known, mic.tol_db)
    sd = pair_sd_db / math.sqrt(anchor_n)
    w_a, w_m = 1.0 / max(sd, 1e-9) ** 2, 1.0 / mic.tol_db**2
    fused = (w_a * anchor_db + w_m * known) / (w_a + w_m)
    return TakeLevel(fused, "mic gain + anchor", anchor_db, sd, anchor_n, known, mic.tol_db)


__all__ = ["ANCHOR_STRAY_SD", "MIC_GAIN_DB_RANGE", "MIC_GAIN_TOL_DB", "MicGain", "TakeLevel", "anchor_level_db",
           "anchor_pair_sd_db", "band_top_hz", "fuse_level",
           "level_db", "parse_mic_gain", "remove_level", "take_level_db"]
