"""How loud a struck note sounds: the level law shared by the simulator's synthesis and
the hearing's loudness scale.

A note of MIDI velocity ``v`` has partials ``k = 1..8`` of amplitude
``(v/127)**2 * k**-1.2 * exp(-(k-1) * (0.55 - 0.35 * min(v/127, 1)))`` at the
microphone's reference gain (louder: richer in high partials). Amplitude grows with the
square of velocity (a 40 dB range over velocities 1..127), the usual reading of MIDI
velocity as loudness. :func:`velocity_for_power` inverts the law: the velocity whose
partials carry a given mean power.
"""

from __future__ import annotations

import numpy as np

MAX_PARTIALS = 8
# a struck note's attack: its partials (sine phase: the string starts from rest) grow
# linearly over this long (the hammer's contact); the synthesis renders it, and the
# detector measures its own response on a reference tone with it (hearing/detector.py)
ATTACK_S = 0.002
VELOCITY_MAX = 1016.0  # the top of velocity_for_power's scale: 127 x 8 (+36 dB of power)


def f0_hz(pitch: int) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def partial_amplitudes(velocity: float, k: np.ndarray) -> np.ndarray:
    """(K,) amplitudes of partials ``k`` of a note of ``velocity`` (any pitch)."""
    loud = max(velocity, 0.0) / 127.0
    bright = 0.55 - 0.35 * min(loud, 1.0)
    return loud**2 * k**-1.2 * np.exp(-(k - 1.0) * bright)


def partials_below(pitch: int, f_max_hz: float) -> np.ndarray:
    """(K,) partial numbers 1..8 of ``pitch`` (harmonic) below ``f_max_hz``."""
    k = np.arange(1, MAX_PARTIALS + 1, dtype=np.float64)
    return k[k * f0_hz(pitch) < f_max_hz]


def power_for_velocity(pitch: int, velocity: float, f_max_hz: float) -> float:
    """Mean power (sum of a_k**2 / 2) of the partials below ``f_max_hz`` at onset."""
    a = partial_amplitudes(velocity, partials_below(pitch, f_max_hz))
    return float(np.sum(a * a) / 2.0)


def velocity_for_power(pitch: int, power: float, f_max_hz: float) -> float:
    """The velocity (0..``VELOCITY_MAX``) whose partials below ``f_max_hz`` carry mean
    ``power``. The scale reaches far past 127: a microphone louder than the detector's
    reference (a hot preamp, a near microphone) hears a velocity-127 note at 2x the
    velocity per +12 dB, and the take's level (:mod:`robo_player.hearing.level`) is
    taken out of it afterwards, which a clamped value could not survive."""
    if power <= 0.0:
        return 0.0
    lo, hi = 0.0, VELOCITY_MAX
    for _ in range(40):  # monotone in velocity: bisect
        mid = 0.5 * (lo + hi)
        if power_for_velocity(pitch, mid, f_max_hz) < power:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
