"""The plan-known detector's timing of chord notes (issue 11: notes heard 20-100 ms off,
the detector's largest F1 loss; docs/hearing.md, session 16)."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2


def _rolled(rng: np.random.Generator) -> list[HeardNote]:
    """A chord rolled downwards in thirds (three loud keys 8-35 ms apart), its lowest key
    soft and last: ASAP Beethoven 8/1's chords, where that key was heard 21-46 ms early."""
    base = int(rng.integers(50, 60))
    gaps = np.sort(rng.uniform(0.008, 0.035, 3))[::-1]
    t = 0.4
    notes = [HeardNote(int((t - g) * 1e6), p, float(rng.uniform(70, 95)), int((t + 0.5) * 1e6))
             for p, g in zip((base + 9, base + 6, base + 3), gaps, strict=True)]
    notes.append(HeardNote(int(t * 1e6), base, float(rng.uniform(40, 75)), int((t + 0.5) * 1e6)))
    return notes


@pytest.mark.xfail(strict=True, reason="the last key of a rolled chord is timed on the loud keys' rise "
                   "(docs/hearing.md 'Not done': measured 1 of 6 within 20 ms)")
def test_the_last_key_of_a_rolled_chord_is_heard_at_its_own_strike() -> None:
    # the loud keys' partials leak into the soft key's bins (a third is under 3 bins of the
    # 2048-sample window at 200-260 Hz): its salience, its frame and its midpoints all
    # rise with the first key struck; the plan's exact times are given (no latency error)
    rng = np.random.default_rng(5)
    close, early = 0, []
    for _ in range(6):
        notes = _rolled(rng)
        det = Detector(RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), notes, [], 0).samples(), 48000)
        plan = [(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes]
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        last = notes[-1]
        t = last.t_us / 1e6 + OFFSET_S
        errs = [o.t_s - t for o in heard if o.pitch == last.pitch]
        close += any(abs(e) < 0.020 for e in errs)
        early.append(round(1e3 * min(errs, key=abs), 1) if errs else None)
        # the rolled keys themselves are heard on time (their partials are clear)
        for h in notes[:-1]:
            th = h.t_us / 1e6 + OFFSET_S
            assert any(o.pitch == h.pitch and abs(o.t_s - th) < 0.010 for o in heard), (h, early)
    assert close >= 5, early
