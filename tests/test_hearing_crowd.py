"""Hearing (issue 11, session 22, crowd): soft planned keys from key 52 up that other keys'
sound covers. The complex rescue (:meth:`Detector._complex_rescue`) hears a soft re-strike
of a key still ringing under the pedal by its step in the band model, and not a key the
plan asks for that nobody struck; the crowd rule's fallback (CROWD_FALLBACK) hears a soft
key struck with a louder one a twelfth above by its own partials, and never replaces an
onset the owner test passed. Every take here is composed for the test (no corpus notes)."""

from __future__ import annotations

import pytest

from robo_player.hearing import detector as dm
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio, render_audio_rich
from robo_player.sim.room import Renderer, Room, RoomTake

OFFSET_S = 0.2
LEAD_S = 0.1  # the takes' first note this long after the recording's start
WINDOW_S = 0.08  # the plan-known search window, either side (the bench's)
# (s, key, velocity): a bass A#2 and a loud A#4 together, then C#4, F4, the C#4 again,
# soft, while its first strike rings (every note held 3 s: a pedal), A#3, the A#4 again,
# soft, F4. The soft C#4 adds little magnitude to its own ringing partials
RESTRIKE = [(0.0, 46, 50), (0.002, 70, 80), (0.25, 61, 45), (0.5, 65, 40), (0.75, 61, 22),
            (1.0, 58, 40), (1.25, 70, 22), (1.5, 65, 35)]
SOFT_RESTRIKE = (0.75, 61)
# a soft C4 struck with a louder G5 (its third partial: a twelfth above), an E2 before and
# a D3 after
TWELFTH = [(0.0, 40, 50), (0.3, 60, 25), (0.3, 79, 60), (0.8, 52, 40)]
SOFT_TWELFTH = (0.3, 60)


def _onsets(notes: list[tuple[float, int, float]], render: Renderer, *, drop: tuple[float, int] | None = None,
            informed: bool = True, hold_s: float = 3.0) -> list[dm.Onset]:
    """The plan-known pass over the take of ``notes`` (``drop``: planned, not struck)."""
    heard = [HeardNote(int((t + LEAD_S) * 1e6), p, float(v), int((t + LEAD_S + hold_s) * 1e6))
             for t, p, v in notes if (t, p) != drop]
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), heard, [], 0, render=render).samples()  # type: ignore[arg-type]
    plan = sorted((t + LEAD_S + OFFSET_S, p) for t, p, _ in notes)
    return Detector(y, 48000).detect_intended(plan, WINDOW_S, WINDOW_S, [], informed=informed)


def _at(ons: list[dm.Onset], note: tuple[float, int], within_s: float) -> list[float]:
    """The onsets of ``note``'s key within ``within_s`` of its time (audio s)."""
    t = note[0] + LEAD_S + OFFSET_S
    return [o.t_s for o in ons if o.pitch == note[1] and abs(o.t_s - t) <= within_s]


@pytest.mark.parametrize("render", [render_audio_rich, render_audio], ids=["rich", "plain"])
def test_a_soft_restrike_of_a_ringing_key_is_heard_by_its_step(render: Renderer) -> None:
    # neither the search (its new share is 0 in magnitudes) nor the informed stage hears
    # it; its step in the band model removes most of what the ringing keys' phasors leave
    assert _at(_onsets(RESTRIKE, render), SOFT_RESTRIKE, 0.02)


@pytest.mark.parametrize("render", [render_audio_rich, render_audio], ids=["rich", "plain"])
def test_without_the_complex_rescue_the_soft_restrike_goes_unheard(render: Renderer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "COMPLEX_RESCUE", False)
    assert not _at(_onsets(RESTRIKE, render), SOFT_RESTRIKE, 0.02)


@pytest.mark.parametrize("render", [render_audio_rich, render_audio], ids=["rich", "plain"])
@pytest.mark.parametrize("drop", [SOFT_RESTRIKE, (1.25, 70), (0.5, 65), (1.0, 58)])
def test_a_planned_key_nobody_struck_stays_unheard(render: Renderer, drop: tuple[float, int]) -> None:
    # the plan still asks for it; the keys ringing around it (its own earlier strike among
    # them for the C#4 and the A#4) leave nothing that a step of it explains
    assert not _at(_onsets(RESTRIKE, render, drop=drop), drop, WINDOW_S)


def test_a_soft_key_under_a_louder_twelfth_is_heard_by_its_own_partials() -> None:
    # the search alone (informed=False): its new sound is under the G5's and under
    # PLANNED_MIN_NEW, the crowd rule gave it away; its partials the G5 does not reach rose
    assert _at(_onsets(TWELFTH, render_audio_rich, informed=False, hold_s=1.0), SOFT_TWELFTH, 0.02)


def test_without_the_fallback_the_crowd_rule_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dm, "CROWD_FALLBACK", ())
    assert not _at(_onsets(TWELFTH, render_audio_rich, informed=False, hold_s=1.0), SOFT_TWELFTH, 0.02)


def test_the_fallback_never_replaces_a_candidate_the_owner_test_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    # a C4 struck alone, heard on time; a G5 (its twelfth) 60 ms later lifts the C4's
    # partials again: a later candidate of the C4. Here the owner test refuses that one and
    # the fallback would give it a huge share: were the fallback's shares weighed with the
    # others', it would win over the on-time one. It is asked only where none passed
    notes = [(0.0, 40, 50), (0.3, 60, 40), (0.36, 79, 80), (0.8, 52, 40)]
    t_c4 = 0.3 + LEAD_S + OFFSET_S
    real = Detector.new_share

    def share(self: Detector, pitch: int, t_s: float, *args: object, fallback: bool = False, **kw: object) -> float:
        if pitch == 60 and t_s > t_c4 + 0.02:
            return 1e6 if fallback else 0.0
        return real(self, pitch, t_s, *args, fallback=fallback, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Detector, "new_share", share)
    monkeypatch.setattr(dm, "JOINT", False)  # (the search's own choice: no joint second opinion)
    ons = _onsets(notes, render_audio_rich, informed=False, hold_s=1.0)
    assert _at(ons, (0.3, 60), 0.02)
    assert not _at(ons, (0.36, 60), 0.015)  # (the later candidate's time: not taken)
