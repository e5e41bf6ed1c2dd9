"""The next soft targets after a soft strike not heard: never at or under it again
(calibrator/drives.py, ``next_requests``' floor; docs/calibration.md, "Session 30, velocity"),
and a target so moved is looked for where its drive sounds (``floor_latency_us``; "Session
31, velocity")."""

from __future__ import annotations

import math

from robo_player.calibrator.drives import (
    FLOOR_FRACTIONS,
    ROUND_TARGETS,
    next_requests,
    round_targets,
)
from robo_player.calibrator.fitting import fit_key
from robo_player.calibrator.listening import ONSET_GAP_US, expected_window, mark_missed
from robo_player.calibrator.scheduler import build_round
from robo_player.calibrator.session import NOISE_AUDIO
from robo_player.calibrator.strikes import VEL_REL_NOISE_AUDIO, StrikeResult
from robo_player.spec import load_spec

LAT_TOP_US = 300_000.0  # piano-88-grand's: min(pipeline delay, 0.8 x the silent latency)

# key 50 of truth seed 2, room 0 (make demo's session, main's order), rounds 0 and 1 as
# heard: (drive, latency us or None: not heard, loudness, probe gap). The truth: threshold
# 0.158; 0.101 silent, 0.166 sounding at 359 ms (loudness 12), not heard.
KEY_50 = [
    (1.0, 19_300, 123.0, None), (0.5321, 33_200, 92.0, None), (0.3370, 46_600, 61.0, None),
    (0.1013, None, 0.0, None), (0.1658, None, 0.0, None), (0.7162, 26_500, 126.0, None),
    (1.0, 26_600, 124.0, 48_000),
]


def _key_50() -> list[StrikeResult]:
    return [
        StrikeResult(50, d, 0, lat is not None, math.nan if lat is None else float(lat), v, gap)
        for d, lat, v, gap in KEY_50
    ]


def test_after_a_soft_strike_not_heard_the_next_soft_targets_go_above_it() -> None:
    """The curve through the heard strikes (all at 0.337 and up) puts the threshold under
    both strikes not heard, so :func:`mark_missed` takes them as missed (neither heard
    nor silent) and the fit leaves them out. The next round's soft targets (276 and
    225 ms) then landed at 0.069 and 0.077, under both, and were silent again: the
    curve's slow end stayed an extrapolation. Now they go between the loudest drive not
    heard (0.166) and the softest heard (0.337), the slower one nearer the floor."""
    strikes = _key_50()
    assert mark_missed(strikes) == 2 and strikes[3].missed and strikes[4].missed
    fit = fit_key(strikes, *NOISE_AUDIO, vel_rel_noise=VEL_REL_NOISE_AUDIO)
    assert fit is not None and fit.drive_for_latency(0.92 * LAT_TOP_US) < 0.1013  # the fit's own aim
    gap = 0.3370 - 0.1658
    for rounds in (round_targets(True), ROUND_TARGETS):  # through audio one soft target, else two
        reqs = next_requests(strikes, fit, 7, 2, LAT_TOP_US, rounds)
        soft = sorted(r.drive for r, (kind, _) in zip(reqs, rounds[1], strict=True) if kind == "lat")
        assert len(soft) == sum(kind == "lat" for kind, _ in rounds[1]) >= 1
        # the slowest target 0.35 of the way from the floor, the next 0.65 (the loud ones
        # where the fit puts them, above the floor)
        assert all(math.isclose(d, 0.1658 + f * gap) for d, f in zip(soft, (0.35, 0.65), strict=False)), soft
        loud = [(r.drive, f) for r, (kind, f) in zip(reqs, rounds[1], strict=True) if kind == "u"]
        assert all(math.isclose(d, fit.theta + f * (1 - fit.theta)) and d > 0.1658 for d, f in loud)


def test_a_missed_strike_above_the_softest_heard_is_no_floor() -> None:
    """A strike not heard above a heard drive is the detector's miss (mark_missed), not a
    bound on the threshold: the soft targets still aim where the fit says, under it."""
    strikes = _key_50()
    strikes[4] = StrikeResult(50, 0.45, 0, False)  # not heard, above 0.337 (heard)
    strikes[3] = StrikeResult(50, 0.30, 0, True, 52_000.0, 55.0)
    mark_missed(strikes)
    assert strikes[4].missed
    fit = fit_key(strikes, *NOISE_AUDIO, vel_rel_noise=VEL_REL_NOISE_AUDIO)
    assert fit is not None
    reqs = next_requests(strikes, fit, 7, 2, LAT_TOP_US, ROUND_TARGETS)
    assert math.isclose(reqs[0].drive, fit.drive_for_latency(0.92 * LAT_TOP_US))
    assert reqs[0].drive < 0.30


# key 22 of truth seed 1, room 0 (make demo's session), rounds 0 and 1 as heard. The
# truth: threshold 0.1975 (0.126 and 0.196 silent; 0.196 marked missed, as the curve
# through the heard strikes puts it above the threshold); 0.337 sounds at 58.2 ms (read
# 45.8). Round 2's soft target moved over the floor to 0.246 sounds at 111.6 ms.
KEY_22 = [
    (1.0, 19_717, 120.9, None), (0.5321, 34_573, 90.4, None), (0.3370, 45_843, 50.9, None),
    (0.1260, None, 0.0, None), (0.1963, None, 0.0, None), (0.7206, 26_202, 108.4, None),
    (1.0, 19_875, 111.5, 48_000),
]
KEY_22_TRUTH_US = {0.246: 111_600.0, 0.288: 76_000.0}  # the moved drives' truth latencies


def test_a_moved_target_is_looked_for_where_its_drive_sounds() -> None:
    """A soft target moved over the floor is a louder strike than the fit aimed at:
    its predicted onset (the window it is heard in, the onset gap the scheduler keeps)
    follows the moved drive, not the latency first aimed at. Before, key 22's moved
    strike (0.246) was looked for at 276 ms ([223, 329] ms) while it sounded at 112 ms,
    and its wide look took a neighbour's onset at 12 ms as its own."""
    strikes = [
        StrikeResult(22, d, 0, lat is not None, math.nan if lat is None else float(lat), v, gap)
        for d, lat, v, gap in KEY_22
    ]
    mark_missed(strikes)
    assert strikes[4].missed  # the floor: 0.196, not heard under the softest heard (0.337)
    fit = fit_key(strikes, *NOISE_AUDIO, vel_rel_noise=VEL_REL_NOISE_AUDIO)
    assert fit is not None and fit.drive_for_latency(0.92 * LAT_TOP_US) < 0.1963
    spec = load_spec("piano-88-grand")
    for rounds in (round_targets(True), ROUND_TARGETS):
        reqs = next_requests(strikes, fit, 7, 2, LAT_TOP_US, rounds)
        moved = [r for r, (kind, _) in zip(reqs, rounds[1], strict=True) if kind == "lat"]  # both under the floor
        assert moved and all(0.1963 < r.drive < 0.3370 for r in moved)
        for r, f in zip(sorted(moved, key=lambda r: r.drive), FLOOR_FRACTIONS, strict=False):
            assert math.isclose(r.onset_us, float(fit.latency_us(0.3370)) * f**-fit.alpha)
        for r in reqs:
            r.pitch = 22
        _, pending, _ = build_round(spec, {22: reqs}, {}, [22], ONSET_GAP_US, True)
        for s in pending:
            truth = next((t for d, t in KEY_22_TRUTH_US.items() if abs(s.drive - d) < 2e-3), None)
            if truth is None:
                continue
            w = expected_window(s, 0.0)
            assert -w.before_us <= truth <= w.after_us, (s.drive, s.expect_us, w)
