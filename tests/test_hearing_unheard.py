"""Hearing (issue 11): planned notes the plan-known detector did not hear, and fakes it
heard (docs/hearing.md, session 16)."""

from __future__ import annotations

import numpy as np

from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2


def _take(notes: list[HeardNote]) -> np.ndarray:
    return RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), notes, [], 0).samples()  # type: ignore[arg-type]


def test_a_soft_bass_key_the_search_heard_is_kept_where_the_bass_windows_hear_it() -> None:
    # a soft bass key (33-50, v 30-40) struck with a louder key a sixth to a tenth above, a
    # loud related key (a semitone, tone, fourth, fifth, octave, twelfth) ringing from
    # 0.2-1.4 s before; all three planned. The search hears the soft key on time, but on
    # the 4096-sample windows an unplanned semitone's template takes its sound (its
    # activation rises < INFORMED_VETO_RISE) and the veto dropped it; on the 8192-sample
    # windows (Detector.bass) it rises >= BASS_KEEP_RISE and is kept. Seeds 0-15
    # (measured): heard within 20 ms 11 before, 14 after
    heard = 0
    for seed in range(16):
        rng = np.random.default_rng(seed)
        p = int(rng.integers(33, 51))
        r = p + int(rng.choice([12, 5, 7, 19, -5, 1, -1, 2]))
        q = p + int(rng.choice([9, 10, 14, 15, 16]))
        t1, t2 = 0.3, 0.3 + float(rng.uniform(0.2, 1.4))
        notes = [HeardNote(int(t1 * 1e6), r, 108.0, int((t2 + 0.6) * 1e6)),
                 HeardNote(int(t2 * 1e6), p, float(rng.uniform(30, 40)), int((t2 + 0.5) * 1e6)),
                 HeardNote(int(t2 * 1e6), q, float(rng.uniform(60, 90)), int((t2 + 0.5) * 1e6))]
        det = Detector(_take(notes), 48000)
        plan = sorted((h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes)
        t = t2 + OFFSET_S
        heard += any(o.pitch == p and abs(o.t_s - t) < 0.02 for o in det.detect_intended(plan, 0.08, 0.08, []))
    assert heard >= 13, heard


def _soft_bass_under_a_ringing_kin(seed: int) -> tuple[list[HeardNote], int, float]:
    # a soft bass key (33-45, v 32-45) struck 0.25-0.6 s after a loud related key (a tone
    # either way, a fourth, a fifth below, an octave: v 90-110, still held), every other
    # seed with a key two to three octaves up struck with it (a chord)
    rng = np.random.default_rng(seed)
    p = int(rng.integers(33, 46))
    r = p + int(rng.choice([2, -2, 5, -7, 12]))
    t1, t2 = 0.3, 0.3 + float(rng.uniform(0.25, 0.6))
    notes = [HeardNote(int(t1 * 1e6), r, float(rng.uniform(90, 110)), int((t2 + 0.6) * 1e6)),
             HeardNote(int(t2 * 1e6), p, float(rng.uniform(32, 45)), int((t2 + 0.5) * 1e6))]
    if rng.random() < 0.5:
        q = p + int(rng.integers(24, 41))
        notes.append(HeardNote(int(t2 * 1e6), q, float(rng.uniform(45, 80)), int((t2 + 0.5) * 1e6)))
    return notes, p, t2 + OFFSET_S


def test_a_soft_bass_key_the_bass_windows_hear_is_timed_where_its_salience_does_not_rise() -> None:
    # the soft key's partials share the 2048-sample bins with the ringing key's, so its
    # salience rises < BASS_RISE_DB and the informed stage on the 8192-sample windows,
    # which hears it, could not time it: unheard. The step fit in its partials' bands
    # (hearing/stepfit.py) times it. Seeds 0-11 (measured): heard within 20 ms 6 before, 10 after
    heard = 0
    for seed in range(12):
        notes, p, t = _soft_bass_under_a_ringing_kin(seed)
        det = Detector(_take(notes), 48000)
        plan = sorted((h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes)
        heard += any(o.pitch == p and abs(o.t_s - t) < 0.02 for o in det.detect_intended(plan, 0.08, 0.08, []))
    assert heard >= 9, heard


def test_the_soft_bass_key_planned_and_not_struck_stays_unheard() -> None:
    # the same takes without the soft key, which the plan still asks for: the step fit
    # runs only where the 8192-sample windows hear the key, so none is heard (measured: 0 of 12)
    for seed in range(12):
        notes, p, _ = _soft_bass_under_a_ringing_kin(seed)
        plan = sorted((h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes)
        det = Detector(_take([h for h in notes if h.pitch != p]), 48000)
        assert not any(o.pitch == p for o in det.detect_intended(plan, 0.08, 0.08, [])), seed
