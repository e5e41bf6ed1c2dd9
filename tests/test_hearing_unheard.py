"""Hearing (issue 11): planned notes the plan-known detector did not hear, and fakes it
heard (docs/hearing.md, session 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio, render_audio_rich
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


# the bench's random piece 2 (truth seed 1) from 1.5 s before its D4 v108 at 14.13 s, struck
# with a D#1 v33: (s, key, velocity); the plan also asks for the C#4 a semitone under the
# D4 (a fake: nobody strikes it)
LOUD = [(0.116, 82, 51), (0.117, 85, 84), (0.118, 51, 93), (0.503, 78, 52), (0.503, 63, 74), (0.504, 55, 31),
        (0.687, 54, 55), (0.689, 48, 35), (0.690, 34, 30), (1.065, 56, 76), (1.066, 77, 108), (1.067, 75, 66),
        (1.498, 34, 33), (1.499, 62, 108)]
SEMITONE = (1.500, 61)


def _semitone_heard(velocity: float | None) -> list[float]:
    """The plan-known detector's onsets of the C#4 (ms from its planned time), the C#4
    struck at ``velocity`` or (None) not struck."""
    notes = [*LOUD, *([(*SEMITONE, velocity)] if velocity is not None else [])]
    y = _take([HeardNote(int((t + 0.1) * 1e6), p, float(v), int((t + 1.1) * 1e6)) for t, p, v in notes])
    plan = sorted([(t + 0.1 + OFFSET_S, p) for t, p, _ in LOUD] + [(SEMITONE[0] + 0.1 + OFFSET_S, SEMITONE[1])])
    t = SEMITONE[0] + 0.1 + OFFSET_S
    return [(o.t_s - t) * 1e3 for o in Detector(y, 48000).detect_intended(plan, 0.08, 0.08, [])
            if o.pitch == SEMITONE[1] and abs(o.t_s - t) < 0.08]


def test_a_semitone_of_a_loud_key_planned_and_not_struck_is_not_heard_by_the_informed_stage() -> None:
    # the search refuses the C#4; the informed stage's activation of it rises most where
    # the D4's strike lies in the middle of the window after (its cut-off partials spread
    # over the C#4's bins), not at its onset: INFORMED_EARLY drops it (measured: heard at
    # -5 ms with the rule off)
    assert _semitone_heard(None) == []


def test_without_the_early_rise_rule_the_informed_stage_hears_the_fake_semitone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "INFORMED_EARLY", float("inf"))
    assert _semitone_heard(None) != []


def test_the_semitone_struck_under_the_loud_key_is_still_heard() -> None:
    # struck soft or mezzo, the C#4 is heard on time with the rule on (measured -5 ms)
    for v in (30.0, 40.0, 60.0):
        got = _semitone_heard(v)
        assert any(abs(d) < 20.0 for d in got), (v, got)


def _fake_semitone_on_the_bass_windows() -> tuple[bool, bool]:
    """On the 8192-sample windows (:attr:`Detector.bass`, the bass rescue's) and the C#4
    planned and not struck: (the informed tests hear it, :meth:`Detector._rose_early` drops it)."""
    y = _take([HeardNote(int((t + 0.1) * 1e6), p, float(v), int((t + 1.1) * 1e6)) for t, p, v in LOUD])
    t = SEMITONE[0] + 0.1 + OFFSET_S
    sounding = [p for _, p, _ in LOUD] + [SEMITONE[1]]
    b = Detector(y, 48000).bass
    return b.informed_heard(SEMITONE[1], t - 0.08, t + 0.08, sounding), b._rose_early(
        SEMITONE[1], t - 0.08, t + 0.08, sounding, t)


def test_the_bass_windows_refuse_the_fake_semitone_by_its_early_rise_too() -> None:
    # the 8192-sample decomposition's tests hear the fake too (measured: rise 895 noise
    # units, 3.4 x the unplanned related keys', explained 0.61); its activation rose most
    # half a long window before the D4's onset, as on the 4096-sample windows
    assert _fake_semitone_on_the_bass_windows() == (True, True)


def test_without_the_early_rise_rule_the_bass_windows_keep_the_fake_semitone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "INFORMED_EARLY", float("inf"))
    assert _fake_semitone_on_the_bass_windows() == (True, False)


# the bench's random piece 1 (truth seed 1, rich voice) from 1.9 s before its chord of
# A#1 v76, F2 v46 and D#3 v60 (s from that chord, key, velocity), every note held 0.4 s;
# the plan also asks for the E2 a semitone under the F2 (a fake: nobody strikes it)
BASS_CHORD = [(-1.917, 91, 68), (-1.916, 56, 35), (-1.69, 72, 77), (-1.479, 57, 52), (-1.478, 63, 33),
              (-1.272, 56, 91), (-1.272, 55, 76), (-1.271, 87, 32), (-1.049, 55, 81), (-0.756, 76, 93),
              (-0.594, 38, 94), (-0.593, 59, 82), (-0.592, 92, 45), (-0.376, 76, 34), (-0.375, 58, 37),
              (0.0, 41, 46), (0.0, 34, 76), (0.001, 51, 60), (0.197, 56, 62)]
BASS_CHORD_AT = 2.1  # the chord's time in the take (s, performance clock)


def _bass_chord_heard(fake: int, notes: list[tuple[float, int, int]], render: object) -> list[tuple[int, float]]:
    """The plan-known onsets (key, ms from the chord) within 100 ms of the chord of
    ``notes`` (rendered by ``render``, each held 0.4 s), the plan asking for ``fake`` too."""
    heard_notes = [HeardNote(int((t + BASS_CHORD_AT) * 1e6), p, float(v), int((t + BASS_CHORD_AT + 0.4) * 1e6))
                   for t, p, v in notes]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), heard_notes, [], 0, render=render).samples()  # type: ignore[arg-type]
    t = BASS_CHORD_AT + OFFSET_S
    plan = sorted([(u + t, p) for u, p, _ in notes] + [(t, fake)])
    return [(o.pitch, (o.t_s - t) * 1e3) for o in Detector(y, 48000).detect_intended(plan, 0.08, 0.08, [])
            if abs(o.t_s - t) < 0.1]


def test_a_bass_key_with_a_weak_fundamental_is_not_vetoed_for_its_octave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "BASS_FREE_FUNDAMENTAL", True)  # (the default; set: the rule these tests hold)
    # on the rich voice the F2's fundamental radiates weakly: on the 8192-sample windows its
    # whole (fundamental-heavy) template explains little of it, and an unplanned related key
    # rose 1 / 1.29 of it (the veto's BASS_VETO_LOOSE_X 1.5: dropped). With its
    # fundamental fitted apart (Detector.bass_tests) it rose 4.1 x theirs and explains 0.87
    # of its bins: kept (measured -9.5 ms); the fake E2 stays unheard
    got = _bass_chord_heard(40, BASS_CHORD, render_audio_rich)
    assert any(p == 41 and abs(ms) < 20.0 for p, ms in got), got
    assert not any(p == 40 for p, _ in got), got


def test_without_the_free_fundamental_the_veto_drops_that_bass_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "BASS_FREE_FUNDAMENTAL", False)
    assert not any(p == 41 for p, _ in _bass_chord_heard(40, BASS_CHORD, render_audio_rich))


# the bench's random piece 1 (plain voice) from 1.7 s before its A1 v96 struck with an
# A#2 v111 and a C#6: the plan also asks for the A0 an octave under the A1 (a fake)
OCTAVE_UNDER = [(-1.664, 82, 69), (-1.203, 37, 61), (-1.202, 46, 62), (-0.917, 47, 70), (-0.917, 42, 108),
                (-0.916, 85, 60), (-0.559, 89, 98), (-0.557, 50, 91), (-0.423, 37, 41), (-0.001, 46, 111),
                (0.0, 33, 96), (0.002, 85, 54)]


def test_a_fake_an_octave_under_a_struck_bass_key_is_not_heard_through_a_free_fundamental(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "BASS_FREE_FUNDAMENTAL", True)
    # with its fundamental free, the A0's upper partials take the struck A1's (its even
    # ones), and it rises 5.6 x the unplanned related keys; but its two columns explain
    # 0.007 of what the others leave in its bins (< BASS_FREE_EXPLAINED): still vetoed
    got = _bass_chord_heard(21, OCTAVE_UNDER, render_audio)
    assert not any(p == 21 for p, _ in got), got
    assert any(p == 33 and abs(ms) < 5.0 for p, ms in got), got


def test_without_the_explained_gate_the_fake_octave_under_is_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "BASS_FREE_FUNDAMENTAL", True)
    monkeypatch.setattr(dm, "BASS_FREE_EXPLAINED", -math.inf)
    assert any(p == 21 for p, _ in _bass_chord_heard(21, OCTAVE_UNDER, render_audio))
