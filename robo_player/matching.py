"""The one matcher of heard onsets to intended notes.

A sensor (a microphone on a real piano, the simulator's model of one) reports onsets:
a time and a pitch. Every judgement of a performance starts by pairing them with what
was meant: the report (onset and loudness error per note), the piano roll (colour per
heard note) and the calibrator (latency and loudness per test strike) all pair here.

The rule: an intended note and a heard onset pair when they have the same pitch and
``heard.t_us - intended.t_us`` lies in the :class:`Window` ``[-before_us, +after_us]``.
Pairs are one-to-one: intended notes are taken in time order (ties in the given order)
and each takes the unused onset of its pitch nearest in time inside its window (ties:
the earlier onset). An onset left over is a stray (a note nobody asked for, or a second
onset of one strike); an intended note left over was not heard.

Causality, where the strikes are known (``strikes``: the time each intended note's
strike was commanded; the report passes the plan's): a strike cannot be heard before
it can sound, so an onset sooner than :data:`MIN_LATENCY_SHARE` (a third) of the
planned latency ``L = t_us - strike`` after the strike is not that note's, whatever the
window. Everything the plan does not know (supply sag, a partly returned key, a warm
coil, a short pulse) only slows a strike; only a key faster than its curve makes it
come sooner, and over the keys the simulator draws (threshold 0.15–0.30, ``L_f``
15–25 ms, ``α`` 0.6–0.8 against the nominal 0.22, 20 ms, 0.7) an uncalibrated strike
sounds at least 0.38 of its nominal latency after it wherever this bound is tighter
than the window (``L`` < 120 ms; worst case over those ranges; the lowest share of any
pair measured on the hidden pieces was 0.485: docs/hardware.md). The onset so
refused is typically the previous strike of the same key, sounding ~200 ms late near
its silent threshold (latency ``L_f·u^-α`` grows without bound as ``u`` -> 0): the
later note must not take it (Chopin's étude op. 25/8, piano-61-diy, uncalibrated:
C#5 strikes heard 19 ms after the next strike's command, 63 ms before its target,
were paired with it: a false "heard"). With the window alone a full-drive strike
(``L`` ~ 20 ms) could be paired with an onset up to 60 ms *before* it.

Windows:

- :data:`ONSET_WINDOW` (±80 ms) pairs a note's planned onset time with the heard onset:
  the report and the piano roll. It is far wider than the planner's onset error (under
  a millisecond on the demo) and the sensor's timing noise (0.2 ms), so a late or early
  note is still judged as itself rather than as unheard; a neighbour on the same key is
  reached only when the note's own onset is missing, as the nearest onset goes first.
- The calibrator pairs a strike's *command* time with its onset, which comes a key's
  latency later (up to the silent-strike limit): it passes a window of its own,
  ``Window(before_us=3 * sensor noise, after_us=silent latency + 5 ms)``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MIN_LATENCY_SHARE", "ONSET_WINDOW", "Window", "match_onsets"]


@dataclass(frozen=True, slots=True)
class Window:
    """How far a heard onset may be from its intended time, µs:
    ``-before_us <= heard_t_us - intended_t_us <= after_us``."""

    before_us: int
    after_us: int

    def __post_init__(self) -> None:
        if self.before_us < 0 or self.after_us < 0:
            raise ValueError(
                f"Window: before_us {self.before_us}, after_us {self.after_us}: allowed >= 0"
            )


ONSET_WINDOW = Window(before_us=80_000, after_us=80_000)

# No strike sounds sooner after its command than this share of its planned latency
# (module doc, "Causality").
MIN_LATENCY_SHARE = 1 / 3


def _earliest(t_us: int, strike_us: int | None, window: Window) -> int:
    """The earliest onset that can be the sound of a note meant at ``t_us`` whose strike
    was commanded at ``strike_us`` (None: unknown, the window alone)."""
    lo = t_us - window.before_us
    if strike_us is None:
        return lo
    return max(lo, strike_us + math.ceil(max(0, t_us - strike_us) * MIN_LATENCY_SHARE))


def match_onsets(
    intended: Iterable[tuple[int, int]],
    heard: Iterable[tuple[int, int]],
    window: Window = ONSET_WINDOW,
    strikes: Sequence[int | None] | None = None,
) -> dict[int, int]:
    """Pair ``intended`` notes with ``heard`` onsets, both given as ``(t_us, pitch)``;
    ``strikes``: each intended note's strike time (None where unknown), for the
    causality rule.

    Returns {index in ``intended`` -> index in ``heard``} for every pair (see the module
    docstring for the rule); indices not in it are unheard notes and stray onsets.
    """
    want = list(intended)
    if strikes is not None and len(strikes) != len(want):
        raise ValueError(f"match_onsets: {len(strikes)} strikes for {len(want)} intended notes")
    by_pitch: dict[int, list[tuple[int, int]]] = {}  # pitch -> [(t_us, heard index)]
    for j, (t, p) in enumerate(heard):
        by_pitch.setdefault(p, []).append((t, j))
    times: dict[int, list[int]] = {}
    for p, hs in by_pitch.items():
        hs.sort()
        times[p] = [t for t, _ in hs]
    used: set[int] = set()
    out: dict[int, int] = {}
    for i in sorted(range(len(want)), key=lambda k: want[k][0]):
        t, p = want[i]
        ts = times.get(p)
        if not ts:
            continue
        hs = by_pitch[p]
        lo = bisect.bisect_left(ts, _earliest(t, None if strikes is None else strikes[i], window))
        hi = bisect.bisect_right(ts, t + window.after_us)
        best, best_d = -1, 0
        for k in range(lo, hi):
            j = hs[k][1]
            d = abs(ts[k] - t)
            if j not in used and (best < 0 or d < best_d):
                best, best_d = j, d
        if best >= 0:
            used.add(best)
            out[i] = best
    return out

