"""Issue 11 §4: the live ear's loudness, with the take's level anchored two ways.

    .venv/bin/python bench/bench_ear_level.py [--minutes 2] [--seed 1] [--port sim|vmcu]

The loud piece of bench_closed_loop.py, calibrated cold on sim://, played with the audio
ear's loop on ``--port``://?heating=1. The ear's velocities (before the take's level is
taken out) are kept as it hears them; the take's level is fitted on its first 32 notes
by the mean of the middle half in dB (``take_level_db``, the ear's until session 15)
and by the notes' mean loudness (``anchor_level_db``, the calibrator's, the ear's since
session 16); each note's velocity with each level out is compared with the exact note
the room rendered (the same pitch, the nearest onset within 20 ms): mean, median, mean
and p99 of |ear - exact|, in velocity units.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from bench_closed_loop import loud_piece

from robo_player.calibrator import calibrate
from robo_player.driver import open_port
from robo_player.hearing import live_audio
from robo_player.hearing.level import anchor_level_db, remove_level, take_level_db
from robo_player.hearing.loop import AUDIO_SETTINGS, play_closed_loop
from robo_player.planner import plan as plan_for
from robo_player.spec import load_spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", choices=("sim", "vmcu"), default="sim")
    args = ap.parse_args()
    spec = load_spec("piano-88-grand")
    with open_port("sim://?sensor=notes", spec, truth_seed=args.seed) as dev:
        cal = calibrate(dev, spec)
    plan, rep = plan_for(loud_piece(args.minutes, 118), spec, cal)
    raw: list[tuple[int, float, float, int]] = []  # (pitch, heard velocity before the level, intended, MCU µs)
    report = live_audio.LiveAudioEar._report

    def keep(self: live_audio.LiveAudioEar, e: live_audio.Expected, h) -> None:  # noqa: ANN001
        raw.append((e.pitch, h.velocity, e.velocity, h.t_us))
        report(self, e, h)

    live_audio.LiveAudioEar._report = keep  # type: ignore[method-assign]
    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    with open_port(f"{args.port}://?heating=1", spec, truth_seed=args.seed) as dev:
        res = play_closed_loop(dev, plan, rep.outcomes, lambda a: pitch.get(a, -1), lambda a: level.get(a, 0),
                               AUDIO_SETTINGS, ear=live_audio.device_ear(dev, spec))  # fmt: skip
        sr = int(dev.audio_rate)
    assert res.performance is not None and res.performance.audio is not None
    by_pitch: dict[int, list] = {}
    for x in res.performance.audio._notes:  # the exact notes the room rendered (stream time)
        by_pitch.setdefault(x.pitch, []).append(x)
    pairs = []
    for p, hv, ev, t in raw:
        near = min(by_pitch.get(p, []), key=lambda x: abs(x.t_us - t), default=None)
        if near is not None and abs(near.t_us - t) < 20_000:
            pairs.append((p, hv, ev, near.velocity))
    first = [(p, h, e) for p, h, e, _ in pairs[: live_audio.LEVEL_NOTES]]
    print(f"{args.port}://, seed {args.seed}, {args.minutes:g} min: the ear heard {len(raw)} notes, {len(pairs)} "
          f"matched to the exact ones; its level {res.ear['level_db']} dB")
    levels = {"middle half (take_level_db)": take_level_db(first, sr)[0],
              "notes' mean (anchor_level_db)": anchor_level_db(first, sr, live_audio.LEVEL_RATIO_SD)[0]}
    exact = np.array([x for *_, x in pairs])
    for name, lv in levels.items():
        err = np.array([remove_level(p, h, lv, sr) for p, h, _, _ in pairs]) - exact
        print(f"  {name:30s} level {lv:+.3f} dB; ear - exact: mean {err.mean():+.2f}, median {np.median(err):+.2f}, "
              f"mean |err| {np.abs(err).mean():.2f}, p99 |err| {np.percentile(np.abs(err), 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
