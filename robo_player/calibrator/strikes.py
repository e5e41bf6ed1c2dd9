"""Test strikes and what the sensor heard of them.

What the calibrator may assume about the sensor and the physics family (the silent
latency, the microphone's noise), one strike's record (:class:`StrikeResult`), and the
pairing of heard onsets with strikes through the project's one matcher
(:mod:`robo_player.matching`) in :data:`STRIKE_WINDOW`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..matching import Window, match_onsets
from ..performance import Performance

# --- what the sensor and the physics family let us assume -------------------------------
SILENT_LATENCY_US = 400_000  # a strike slower than this never sounds (docs/simulator.md)
LAT_NOISE_US = 200.0  # onset timing noise of the microphone (s.d.)
VEL_NOISE = 1.0  # loudness noise of the microphone (s.d., velocity units)
# ... through audio: the detector's loudness in a room (measured |error| ~2, docs/hearing.md)
VEL_NOISE_AUDIO = 2.5
# ... as the curves' fit weighs it (with a sync click): the room's colour at a key's
# partials, drawn anew each take, makes one heard loudness ~4 % off at any loudness
# (truth seed 1, 783 strikes against the sounded loudness: s.d. 4.0 %, 3.8-4.2 % from
# velocity 10 to 160; 1.5 % without reverb), so a part that grows with the loudness
# and a small fixed one (docs/calibration.md, "Through a microphone: takes")
VEL_NOISE_AUDIO_ABS = 1.0
VEL_REL_NOISE_AUDIO = 0.04
LAT_NOISE_AUDIO_US = 500.0  # ... and its onsets (a soft or low note: 0.5-1 ms, docs/hearing.md)
# ... plus this fraction of the latency: a slow soft strike's onset is the least sure
# (88 keys seed 1: |error| p90 1.1 ms under 40 ms, 2.0 ms over 220 ms, up to 15 ms), and
# near the threshold it has the most leverage on the curve (docs/hearing.md)
LAT_REL_NOISE_AUDIO = 0.01
# ... plus this for a doubtful onset (:attr:`StrikeResult.doubtful`: a bass strike the
# detector timed without its direct sound; 88 keys seed 4, key 40's soft strikes heard
# +2.2, +6.7, -5.0 ms off bent its soft curve by 2.5 ms; docs/hearing.md)
LAT_DOUBTFUL_AUDIO_US = 5_000.0
# The action's own strike-to-strike spread (not the sensor's: a solenoid does not land
# the same stroke twice; docs/simulator.md, "Spread", an assumed figure, these the top of
# its range): the contact time's s.d. is ACTION_LAT_SD_US + ACTION_LAT_SD_FRAC x the
# latency (0.5 ms at a forte's 15 ms, 5 ms at 250 ms near the threshold), the loudness's
# ACTION_VEL_SD_FRAC of it. The fits weigh each strike by it with the sensor's noise
# (a slow soft strike the least), and judge a fit's residuals against it
# (docs/calibration.md, "Spread").
ACTION_LAT_SD_US = 200.0
ACTION_LAT_SD_FRAC = 0.02
ACTION_VEL_SD_FRAC = 0.02
VEL_CLIP = math.inf  # loudness at or above this is taken as clipped (the sensor does not clip)

# A strike predicted at latency L is given until LATE_FACTOR x L + LATE_MARGIN_US to
# sound (its release, the next strike on its key)
LATE_FACTOR = 1.5
LATE_MARGIN_US = 20_000


def latest_latency_us(lat_us: float) -> float:
    """The latest a strike predicted at ``lat_us`` may sound (inf: unknown)."""
    if not math.isfinite(lat_us):
        return float(SILENT_LATENCY_US)
    return min(float(SILENT_LATENCY_US), LATE_FACTOR * lat_us + LATE_MARGIN_US)


# A strike's onset comes its key's latency after the command, at most the silent limit
# (plus slack); it may read up to 3 s.d. of the sensor's timing noise early.
STRIKE_WINDOW = Window(before_us=int(3 * LAT_NOISE_US), after_us=SILENT_LATENCY_US + 5_000)


@dataclass(slots=True)
class StrikeResult:
    """One test strike and what was heard of it."""

    pitch: int
    drive: float  # commanded fraction after PWM quantisation
    t_us: int
    heard: bool = False
    latency_us: float = math.nan
    velocity: float = math.nan
    # a key-return probe: struck this long after the key's release (µs); its curves are
    # not used for the fit. None for an ordinary strike (the key was fully up).
    probe_gap_us: int | None = None
    # listening: where the onset is expected (µs after the command; nan: anywhere up to
    # the silent latency) and how far off it may be, as a fraction of it
    expect_us: float = math.nan
    expect_tol: float = 0.5
    # listening: its onset comes no sooner than this after the command (µs; 0: unknown):
    # a fraction of the latency its key was heard at a higher drive (listening.soonest_latency_us)
    soonest_us: float = 0.0
    # listening: not heard, yet a softer strike of the key was: the detector missed it
    # (a soft low note's partials barely rise); neither heard nor silent for the fit
    missed: bool = False
    # listening: heard, but its onset is doubtful (the detector's :attr:`Onset.sure`
    # False); the fits weigh its latency with LAT_DOUBTFUL_AUDIO_US more noise
    doubtful: bool = False
    # listening: the heard onset, MCU time as aligned (the take's clock maps it back to
    # the recording, where the loudness over the partials is read: listening.py)
    onset_us: float | None = None


def match_strikes(perf: Performance, pending: list[StrikeResult]) -> int:
    """Attach heard onsets to strikes with :func:`robo_player.matching.match_onsets` in
    :data:`STRIKE_WINDOW` (same pitch, the onset nearest the strike among those from
    just before it to the silent-strike latency after it; one onset per strike).

    Returns the number of heard notes that matched no strike."""
    pairs = match_onsets(
        ((s.t_us, s.pitch) for s in pending), ((h.t_us, h.pitch) for h in perf.heard), STRIKE_WINDOW
    )
    for i, j in pairs.items():
        s, h = pending[i], perf.heard[j]
        s.heard = True
        s.latency_us = float(h.t_us - s.t_us)
        s.velocity = float(h.velocity)
    return len(perf.heard) - len(pairs)
