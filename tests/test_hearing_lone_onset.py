"""A lone strike's onset with a hammer's knock on it: the energy fit's partial bands less the
bands halfway between the partials (``detector.LONE_GAP_BANDS``; docs/hearing.md, "Session
21, thump")."""

from __future__ import annotations

import numpy as np
import pytest

import robo_player.hearing.detector as detector
from robo_player.hearing.detector import Detector
from robo_player.performance import HeardNote
from robo_player.sim.audio import RENDERERS, Voice
from robo_player.sim.room import Room, RoomTake

GAIN_DB = -24.0
PITCHES = tuple(range(51, 109, 3))  # where the energy fit times a lone strike (DIRECT_MAX_PITCH up)


def _onset_errors_ms(voice: str, velocity: float, monkeypatch: pytest.MonkeyPatch) -> dict[bool, np.ndarray]:
    """Each key of PITCHES struck alone at ``velocity`` in ``voice`` (no room: the knock's
    part alone), its onset as the calibration hears it (:meth:`Detector.find`, ``alone``)
    less the true one (ms), with the rule off and on."""
    out: dict[bool, list[float]] = {False: [], True: []}
    for p in PITCHES:
        room = Room(gain_db=GAIN_DB, seed=4, rt60_s=0.0, snr_db=80.0)
        rt = RoomTake(room, [HeardNote(500_000, p, velocity, 580_000)], [], 0, render=RENDERERS[Voice(voice)])
        y, t = rt.samples(), rt._audio_us(500_000) / 1e6
        for rule in (False, True):
            monkeypatch.setattr(detector, "LONE_GAP_BANDS", rule)
            o = Detector(y, rt.sample_rate, gain_db=GAIN_DB).find(p, t - 0.03, t + 0.03, alone=True)
            assert o is not None, f"{voice}: key {p} not heard"
            out[rule].append(1e3 * (o.t_s - t))
    return {k: np.array(v) for k, v in out.items()}


def test_the_rich_voices_thump_moves_lone_strikes_onsets_less_with_the_gaps_taken_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rich voice's hammer thump (broadband noise of a few ms, fixed per key) pulled
    the energy fit's onset of a soft strike up to 0.9 ms early or late (keys 63, 69, 84:
    −0.9 / −0.8 / −0.9 ms at velocity 20): its broadband part, in the partials' bands and
    in the gaps between them alike, is taken off with the gaps' bands."""
    err = _onset_errors_ms("rich", 20.0, monkeypatch)
    off, on = (float(np.mean(np.abs(err[r]))) for r in (False, True))
    assert on < 0.85 * off, (np.round(err[False], 2), np.round(err[True], 2))


def test_the_plain_voices_lone_onsets_stay_where_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    """No knock (the plain voice): the gaps hold only the partials' skirts; the fit's delay
    is measured with the gaps off too (``energy_response``), so the onsets do not move."""
    err = _onset_errors_ms("plain", 20.0, monkeypatch)
    assert float(np.max(np.abs(err[True] - err[False]))) < 0.05, np.round(err[True] - err[False], 3)
    assert float(np.mean(np.abs(err[True]))) < 0.1, np.round(err[True], 3)
