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
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ONSET_WINDOW", "Window", "match_onsets"]


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


def match_onsets(
    intended: Iterable[tuple[int, int]],
    heard: Iterable[tuple[int, int]],
    window: Window = ONSET_WINDOW,
) -> dict[int, int]:
    """Pair ``intended`` notes with ``heard`` onsets, both given as ``(t_us, pitch)``.

    Returns {index in ``intended`` -> index in ``heard``} for every pair (see the module
    docstring for the rule); indices not in it are unheard notes and stray onsets.
    """
    want = list(intended)
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
        lo = bisect.bisect_left(ts, t - window.before_us)
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

