"""``robo-player mics``, ``robo-player verify`` and the listening options of ``calibrate``
(``--mic``, ``--record-with-any-recorder``, ``--from-recording``, ``--played``).

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
from ..matching import Window, match_onsets
from ..performance import HeardNote, Performance
from .align import fit_clock
from .detector import Detector
from .listen import check_take
from .recording import MicRecorder, Recording, input_devices, read_wav

MIN_MATCHED = 0.5  # verify: at least this fraction of the plan's notes must be heard
ALIGN_BIN_S = 0.005


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
    mcu = [targets_us[i][0] for i in pairs]
    audio = [onsets_s[j][0] for j in pairs.values()]
    return fit_clock(mcu, audio)


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
    onsets = det.detect()
    targets = [(o.target_t_us, o.pitch_out) for o in plan_report.outcomes if o.fate.name != "DROPPED"]
    clock = align_to_plan([(o.t_s, o.pitch) for o in onsets], targets, args.take)
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


# ---------------------------------------------------------------- calibrate
def add_calibrate_args(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("listening (docs/hearing.md)")
    g.add_argument("--mic", metavar="DEVICE", help="record from this sound-card input while striking (see `mics`)")
    g.add_argument("--record-with-any-recorder", action="store_true",
                   help="play one fixed take for an outside recorder and write what it played (--played)")
    g.add_argument("--from-recording", metavar="TAKE.wav", help="learn from a recording of that take")
    g.add_argument("--played", metavar="PLAYED.json", help="what the recorded take played")


class ListeningDevice:
    """A device with a microphone: records each ``play`` from a sound card."""

    def __init__(self, device: Any, mic: MicRecorder) -> None:
        self._device = device
        self._mic = mic

    def play(self, plan: Any, progress: Any = None) -> Performance:
        self._mic.start()
        try:
            perf: Performance = self._device.play(plan, progress)
        finally:
            rec = self._mic.stop()
        perf.audio = rec
        return perf

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


def calibrate(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> int | None:
    """``calibrate`` with a listening option, or None when none was given."""
    from ..calibrator import calibrate_session
    from ..calibrator.offline import fixed_take, learn_from_recording, load_played, save_played

    if not (args.mic or args.record_with_any_recorder or args.from_recording):
        if args.played:
            raise UsageError("--played goes with --record-with-any-recorder or --from-recording")
        return None
    if sum(bool(x) for x in (args.mic, args.record_with_any_recorder, args.from_recording)) > 1:
        raise UsageError("give one of --mic, --record-with-any-recorder, --from-recording")
    spec = helpers["load_spec"](args)
    if args.record_with_any_recorder:
        if not args.played:
            raise UsageError("--record-with-any-recorder needs --played PLAYED.json (where to write what it plays)")
        plan, played = fixed_take(spec)
        with helpers["open_device"](args.port, spec, args) as device:
            if not args.quiet:
                print(f"start your recorder now; playing {len(played['strikes'])} strikes "
                      f"({played['end_us'] / 1e6:.0f} s)")
            device.play(plan)
        save_played(args.played, played)
        if not args.quiet:
            print(f"wrote {args.played}; then: robo-player calibrate --from-recording TAKE.wav "
                  f"--played {args.played} --out CAL.yaml")
        return 0
    if args.from_recording:
        if not args.played:
            raise UsageError("--from-recording needs --played PLAYED.json (what the take played)")
        played = load_played(args.played, spec)
        rec = read_wav(args.from_recording)
        cal, report = learn_from_recording(spec, rec, played, args.from_recording)
    else:
        mic = MicRecorder(args.mic)
        with helpers["open_device"](args.port, spec, args) as device:
            cal, report = calibrate_session(ListeningDevice(device, mic), spec, max_strikes_per_key=args.max_strikes)
    cal.save(args.out)
    if not args.quiet:
        print(f"calibrated {len(cal.keys)} keys of {spec.name} by listening "
              f"({report.strikes_per_key:.1f} strikes per key); wrote {args.out}")
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


__all__ = ["ListeningDevice", "Recording", "add_calibrate_args", "calibrate", "register"]
