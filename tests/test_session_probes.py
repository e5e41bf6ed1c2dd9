"""The session's windows end before the key's own next strike in the take (its return
probe), with the recorder path's guard (listening.own_reach_us): a soft strike's wide look,
run to the silent latency, took its own probe's onset (keys 21, 27, 35 of truth seed 1,
161-179 ms late, with the probe after the soft strike: docs/calibration.md "Session 29,
probe" and "Session 30, probe")."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from robo_player.calibrator.listening import NEXT_GUARD, expected_window, listen_round, own_reach_us
from robo_player.calibrator.strikes import SILENT_LATENCY_US, StrikeResult
from robo_player.hearing import listen
from robo_player.hearing.align import ClockFit
from robo_player.hearing.detector import Onset
from robo_player.hearing.listen import OWN_REACH_US
from robo_player.spec import load_spec

FULL = SILENT_LATENCY_US + 5_000


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _take() -> list[StrikeResult]:
    """Key 27 at drive 0.30 (predicted at 96 ms), its probe 252 ms on (its release + 48
    ms), key 40 between."""
    return [
        StrikeResult(27, 0.30, 1_000_000, expect_us=96_000.0, expect_tol=0.15),
        StrikeResult(40, 0.50, 1_120_000, expect_us=40_000.0, expect_tol=0.15),
        StrikeResult(27, 1.0, 1_252_000, probe_gap_us=48_000, expect_us=60_000.0, expect_tol=0.15),
    ]


def test_a_strike_s_windows_end_before_its_own_probe_s_rise(spec) -> None:  # noqa: ANN001
    strikes = _take()
    full_lat = float(spec.nominal.latency_us[-1])
    guard = NEXT_GUARD * full_lat
    reach = own_reach_us(spec, strikes, True)
    assert reach == [int(252_000 + guard - OWN_REACH_US), None, None]
    w = [expected_window(s, 0.0, True, r) for s, r in zip(strikes, reach, strict=True)]
    # the soonest the probe's onset can read: the fastest full-drive latency after its
    # command; its rise shows OWN_REACH_US before that
    assert w[0].wide is not None and w[0].wide[1] + OWN_REACH_US <= 252_000 + 0.75 * full_lat
    assert w[0].after_us == expected_window(strikes[0], 0.0).after_us  # its own window well before: as it was
    assert w[1] == expected_window(strikes[1], 0.0) and w[2] == expected_window(strikes[2], 0.0)
    assert expected_window(strikes[0], 0.0).wide == (0, FULL)  # uncapped: into the probe's onset
    # struck patterns (aligned times early by up to 1.25 x the nominal): the guard before the command
    assert own_reach_us(spec, strikes, False)[0] == int(252_000 - guard - OWN_REACH_US)
    # a round-0 strike (no prediction) and a probe are capped too
    s0 = StrikeResult(27, 0.30, 1_000_000)
    assert expected_window(s0, 0.0, True, 100_000).after_us == 100_000
    assert expected_window(strikes[2], 0.0, True, 30_000).after_us == 30_000


@dataclass
class _Blind:
    """A detector that takes any onset in a window as the key asked for (a bass key's
    dense partials through the owner test): ``onsets`` are audio s (the clock 1:1)."""

    onsets: list[tuple[float, int]]
    y: np.ndarray

    def find(self, pitch: int, a0: float, a1: float, **_: object) -> Onset | None:
        for t, p in self.onsets:
            if p == pitch and a0 <= t <= a1:
                return Onset(t_s=t, pitch=pitch, velocity=80.0, rise_db=20.0)
        return None


def test_a_silent_soft_strike_is_not_heard_at_its_own_probe_s_onset(spec, monkeypatch) -> None:  # noqa: ANN001
    """Key 27's strike at 0.30 is silent, its probe sounds 30 ms after its command: the
    soft strike's wide look ends before the probe's rise (with the wide look to the
    silent latency it was "heard" at the probe's onset, 282 ms after its command)."""
    det = _Blind([(1.282, 27), (1.160, 40)], np.full(48_000, 0.1))
    monkeypatch.setattr(listen, "Detector", lambda *a, **k: det)
    monkeypatch.setattr(listen, "align_clicks", lambda *a, **k: ClockFit(0.0, 1.0, 0.0, 2))
    perf = SimpleNamespace(audio=SimpleNamespace(samples=lambda: np.zeros(1), sample_rate=48_000))

    def hear() -> list[float | None]:
        strikes = _take()
        listen_round(perf, strikes, spec, [0], "take", 0.0, None)  # type: ignore[arg-type]
        return [s.latency_us / 1000 if s.heard else None for s in strikes]

    assert hear() == [None, pytest.approx(40.0), pytest.approx(30.0)]
    monkeypatch.setattr("robo_player.calibrator.listening.own_reach_us", lambda spec, s, a: [None] * len(s))
    assert hear() == [pytest.approx(282.0), pytest.approx(40.0), pytest.approx(30.0)]  # the defect
