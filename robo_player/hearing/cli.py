"""``robo-player mics`` and ``robo-player verify`` (the listening options of ``calibrate``
are in :mod:`robo_player.calibrator.cli`).

See docs/hearing.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HearingError, UsageError
from ..fileio import atomic_open
from ..matching import ONSET_WINDOW, Window, match_onsets
from ..performance import HeardNote, Performance
from .align import ClockFit, fit_clock
from .detector import Detector
from .listen import check_take
from .recording import input_devices, read_wav

MIN_MATCHED = 0.3  # verify: at least this fraction of the plan's notes must be heard (the
# key-unknown detector finds about half of them today: docs/hearing.md)
ALIGN_BIN_S = 0.005
MAX_CARD_DRIFT_PPM = 100.0


# ---------------------------------------------------------------- mics
def cmd_mics(args: argparse.Namespace) -> int:
    devs = input_devices()  # HearingError: no sounddevice, no PortAudio, no input
    if args.json:
        print(json.dumps(devs, indent=1))
    else:
        for d in devs:
            print(f"{d['index']:3d}  {d['name']}  ({d['channels']} ch, {d['sample_rate']:.0f} Hz)")
    return 0


# ---------------------------------------------------------------- verify
def align_to_plan(onsets_s: list[tuple[float, int]], targets_us: list[tuple[int, int]], where: str) -> Any:
    """The clock line audio -> performance time that matches the most heard onsets to
    the plan's notes (same pitch): the offset is the mode of the pairwise differences,
    then a line through the matched pairs (drift)."""
    by_pitch: dict[int, list[float]] = {}
    for t, p in onsets_s:
        by_pitch.setdefault(p, []).append(t)
    diffs = [
        t - tu * 1e-6
        for tu, p in targets_us
        for t in by_pitch.get(p, ())
        if -0.1 <= t - tu * 1e-6 <= 30.0
    ]
    if not diffs:
        raise HearingError(
            f"{where}: heard {len(onsets_s)} onsets, none of the plan's pitches near its "
            "times: a recording of another piece?"
        )
    hist, edges = np.histogram(diffs, bins=np.arange(-0.1, 30.0 + ALIGN_BIN_S, ALIGN_BIN_S))
    k = int(np.argmax(hist))
    offset = float(edges[k] + ALIGN_BIN_S / 2)
    heard = [(int(round((t - offset) * 1e6)), p) for t, p in onsets_s]
    pairs = match_onsets(targets_us, heard, Window(30_000, 30_000))
    if len(pairs) < max(2, MIN_MATCHED * len(targets_us)):
        raise HearingError(
            f"{where}: heard {len(onsets_s)} onsets; only {len(pairs)} of the plan's "
            f"{len(targets_us)} notes match them (need {MIN_MATCHED:.0%}): a recording of "
            "another piece, or of another take?"
        )
    mcu = np.array([targets_us[i][0] for i in pairs], dtype=float)
    audio = np.array([onsets_s[j][0] for j in pairs.values()])
    keep = np.ones(len(mcu), dtype=bool)
    for _ in range(3):  # wrong pairs and late reads: drop what lies far off the line
        fit = fit_clock(mcu[keep].tolist(), audio[keep].tolist())
        res = np.abs(audio - (fit.a_s + fit.b * mcu * 1e-6))
        keep = res <= max(3.0 * float(np.median(res[keep])), 0.001)
    fit = fit_clock(mcu[keep].tolist(), audio[keep].tolist())
    if abs(fit.drift_ppm) > MAX_CARD_DRIFT_PPM:
        # more than a sound card drifts: the piano's own timing errors tilt the line
        # (they are what verify measures); keep the offset only
        a = float(np.median(audio[keep] - mcu[keep] * 1e-6))
        fit = ClockFit(a, 1.0, float(np.sqrt(np.mean((audio[keep] - a - mcu[keep] * 1e-6) ** 2))) * 1e6, int(keep.sum()))
    return fit


def cmd_verify(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> int:
    from ..plan import Plan
    from ..planner import plan as plan_for
    from ..report import build_report, summary_lines

    spec = helpers["load_spec"](args)
    score = helpers["load_score"](args)
    cal = helpers["load_calibration"](args, spec)
    plan, plan_report = plan_for(score, spec, cal, helpers["plan_options"](args))
    given = Plan.read_jsonl(args.plan, spec)
    if [c.to_json() for c in given.commands] != [c.to_json() for c in plan.commands]:
        raise UsageError(
            f"{args.plan}: not the plan of {args.song} for {spec.name} with these options and "
            "calibration (planning again gives other commands)"
        )
    rec = read_wav(args.take)
    det = Detector(rec.data, rec.sample_rate, where=args.take)
    check_take(det.y, args.take)
    blind = det.detect()
    targets = [(o.target_t_us, o.pitch_out) for o in plan_report.outcomes if o.fate.name != "DROPPED"]
    clock = align_to_plan([(o.t_s, o.pitch) for o in blind], targets, args.take)
    # the plan is known: each of its notes looked for as a known key near where the
    # clock puts it (the matcher's window), the blind onsets nothing explains kept as strays
    w = ONSET_WINDOW
    onsets = det.detect_intended(
        [(clock.to_audio_s(t), p) for t, p in targets], w.before_us * 1e-6, w.after_us * 1e-6, blind
    )
    heard = [HeardNote(int(round(clock.to_mcu_us(o.t_s))), o.pitch, o.velocity) for o in onsets]
    extra = {
        "heard_from": str(args.take),
        "audio_clock": {"offset_s": round(clock.a_s, 6), "drift_ppm": round(clock.drift_ppm, 2),
                        "fit_rms_us": round(clock.rms_us, 1), "pairs": clock.points},
        "onsets_heard": len(onsets),
    }
    report = build_report(
        plan_report=plan_report, performance=Performance(heard=heard), piece=str(args.song),
        spec=spec, port=f"recording:{args.take}", calibration=cal, extra=extra,
    )
    if args.report:
        with atomic_open(Path(args.report), "w") as fh:
            json.dump(report, fh, indent=1)
    if not args.quiet:
        for line in summary_lines(report):
            print(line)
        print(f"audio clock: {clock.drift_ppm:+.1f} ppm, {clock.points} notes aligned")
    return 0


def register(sub: Any, helpers: dict[str, Callable[..., Any]]) -> None:
    sp = sub.add_parser("mics", help="list sound-card inputs", description="list sound-card inputs")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_mics)
    sp = sub.add_parser(
        "verify", help="report a performance's onset and velocity errors from a recording",
        description="report a performance's onset and velocity errors from a recording of it",
    )
    sp.add_argument("take", metavar="TAKE.wav", help="the recording")
    sp.add_argument("--plan", required=True, metavar="PLAN.jsonl", help="the plan that was played")
    sp.add_argument("--report", metavar="PATH", help="write the report JSON here")
    helpers["add_score_args"](sp)
    helpers["add_spec_arg"](sp)
    helpers["add_plan_args"](sp)  # --calibration: the one the plan was made with
    sp.set_defaults(func=lambda a: cmd_verify(a, helpers))


__all__ = ["align_to_plan", "cmd_mics", "cmd_verify", "register"]
