"""Calibration: learn each key's curves by playing test strikes and listening.

The calibrator sees the instrument only as a :class:`~robo_player.driver.ports.Device`:
it sends plans of STRIKE + RELEASE commands and reads back what the sensor heard
(``Performance.heard``: onset time, pitch, loudness). It never reads the simulator's
hidden truth, exactly as it could not on a real piano.

Per key it fits the physical family of a solenoid-driven action (see
``docs/simulator.md`` and ``docs/calibration.md``), with the commanded drive ``d`` of a
strike at the spec's default pulse:

- latency ``L(d) = A * (d - theta) ** -alpha`` (drive start to string contact, µs);
- loudness ``V(d) = a + b * (1 - exp(-k * (d - theta)))`` (MIDI velocity units),

sharing the silent threshold ``theta``. Both are fitted by weighted least squares
(numpy only: a profile search over the one non-linear parameter and a linear solve
for the rest). If a fit is poor, the key falls back to monotone (isotonic)
interpolation of its measurements. The fitted curves are written as dense tables into
a :class:`~robo_player.spec.calibration.KeyCurve`.

The strike schedule is adaptive and runs in rounds; each round is one ``play`` of one
plan in which every key that still needs strikes is struck in parallel with the others,
within the spec's power budget (overlapping pulses and supply current), each key
getting time to return between its strikes and every coil staying cool.

Each key's return time ``R`` (how long a released key needs to come back up) is
measured with a key-return probe: one full-drive strike a known gap ``g < R`` after a
release, inside round 1. The key is not fully up, so the strike sounds as a drive
``d * g / R`` would; the key's own fitted curves turn the heard latency and loudness
into that drive, hence ``R`` (stored with a safety margin as ``KeyCurve.return_us``).

One job per module:

- :mod:`.strikes`: what the sensor lets us assume, a strike's record, and pairing heard
  onsets with strikes (through :mod:`robo_player.matching`);
- :mod:`.fitting`: one key's latency and loudness curves, and their dense table;
- :mod:`.scheduler`: one round's strikes placed within the power and heat limits;
- :mod:`.drives`: which drives each key is struck at next;
- :mod:`.key_return`: the key-return probes and what they say about ``R``;
- :mod:`.pedal`: the pedal's latency;
- :mod:`.session`: the rounds, and :func:`calibrate` / :func:`calibrate_session`.
"""

from __future__ import annotations

from .drives import FIRST_ROUND_U, MAX_STRIKES_PER_KEY, ROUND_TARGETS
from .fitting import (
    ALPHA_PRIOR,
    K_PRIOR,
    TABLE_POINTS,
    KeyFit,
    curve_from_fit,
    fit_key,
    fit_latency,
    fit_velocity,
    isotonic,
)
from .key_return import (
    MAX_PROBES,
    PROBE_DRIVE,
    PROBE_FULL_RATIO,
    PROBE_GAP_FRACTION,
    PROBE_MIN_GAP_US,
    RETURN_MARGIN_SD,
    RETURN_MARGIN_US,
    ReturnEstimate,
    drive_from_heard,
    probe_estimate,
    return_estimate,
)
from .scheduler import (
    RELEASE_MARGIN_US,
    RETURN_GAP_US,
    SETTLE_US,
    STAGGER_US,
    SUPPLY_MARGIN,
    THERMAL_MARGIN,
)
from .session import CalibrationReport, Progress, calibrate, calibrate_session
from .strikes import (
    LAT_NOISE_US,
    SILENT_LATENCY_US,
    STRIKE_WINDOW,
    VEL_CLIP,
    VEL_NOISE,
    StrikeResult,
)

__all__ = [
    "ALPHA_PRIOR",
    "FIRST_ROUND_U",
    "K_PRIOR",
    "LAT_NOISE_US",
    "MAX_PROBES",
    "MAX_STRIKES_PER_KEY",
    "PROBE_DRIVE",
    "PROBE_FULL_RATIO",
    "PROBE_GAP_FRACTION",
    "PROBE_MIN_GAP_US",
    "RELEASE_MARGIN_US",
    "RETURN_GAP_US",
    "RETURN_MARGIN_SD",
    "RETURN_MARGIN_US",
    "ROUND_TARGETS",
    "SETTLE_US",
    "SILENT_LATENCY_US",
    "STAGGER_US",
    "STRIKE_WINDOW",
    "SUPPLY_MARGIN",
    "TABLE_POINTS",
    "THERMAL_MARGIN",
    "VEL_CLIP",
    "VEL_NOISE",
    "CalibrationReport",
    "KeyFit",
    "Progress",
    "ReturnEstimate",
    "StrikeResult",
    "calibrate",
    "calibrate_session",
    "curve_from_fit",
    "drive_from_heard",
    "fit_key",
    "fit_latency",
    "fit_velocity",
    "isotonic",
    "probe_estimate",
    "return_estimate",
]
