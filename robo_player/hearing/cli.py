"""``robo-player mics`` and ``robo-player verify`` (the listening options of ``calibrate``
are in :mod:`robo_player.calibrator.cli`).

See docs/hearing.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HearingError, UsageError
from ..fileio import atomic_open
from ..matching import ONSET_WINDOW, Window, match_onsets
from ..performance import HeardNote, Performance
from ..spec.model import PianoSpec
from .align import ClockFit, fit_clock
from .detector import Detector
from .level import MIC_GAIN_DB_RANGE, MIC_GAIN_TOL_DB, MicGain, TakeLevel, parse_mic_gain
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


def level_to_plan(
    heard: list[HeardNote], outcomes: list[Any], sample_rate: int, mic: MicGain | None = None,
    spec: PianoSpec | None = None,
) -> tuple[list[HeardNote], TakeLevel]:
    """A recording's level is unknown (microphone, distance, preamp): the detector's
    loudness assumes its reference gain. Fit the take's level as one number over the notes
    paired with the plan's (as the report pairs them), heard power over planned power
    (dB, the level law of :mod:`robo_player.voicing`; :func:`.level.take_level_db`), and give the heard
    notes' loudness with it removed: the report's velocity errors are then the
    performance's dynamics against the plan's, not the microphone's gain. Returns
    (heard notes, the level); no pair and no ``mic``: unchanged, 0 dB.

    ``mic`` (the microphone chain's gain, measured) is weighed with the plan's anchor
    (:func:`.level.fuse_level`): the plan's loudness scale is the calibration's, anchored
    on the keys' full-drive loudness against ``spec``'s nominal, so the anchor is uncertain
    by one key's :data:`~robo_player.spec.model.KEY_LOUDNESS_TOLERANCE` over the spec's
    keys (and the notes' own spread over their count); a performance loud or soft as a
    whole shows only against a known gain."""
    from ..report import match_heard
    from ..spec.model import KEY_LOUDNESS_TOLERANCE
    from .detector import REFERENCE_GAIN_DB
    from .level import anchor_pair_sd_db, fuse_level, level_db, remove_level, take_level_db

    pairs = match_heard(outcomes, heard)
    by_index = {o.index: o for o in outcomes}
    want = [(h.pitch, h.velocity, by_index[i].velocity_target) for i, h in pairs.items()]
    told = [(p, v, w) for p, v, w in want if w is not None]
    level, n = take_level_db(told, sample_rate)
    pair_sd = 0.0
    if n and mic is not None:
        d = [x for p, v, w in told if (x := level_db(p, v, w, sample_rate)) is not None]
        spread = float(np.std(d)) if len(d) > 1 else 0.0
        scale = 0.0  # the calibration's anchor, over the spec's keys (at C5: the law's slope barely moves)
        if spec is not None:
            full = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
            scale = anchor_pair_sd_db(72, full, KEY_LOUDNESS_TOLERANCE, 0.0, sample_rate) / math.sqrt(len(spec.keys))
        # fuse_level divides by sqrt(n): hand it the per-pair figure that gives this s.d.
        pair_sd = math.hypot(spread / math.sqrt(n), scale) * math.sqrt(n)
    tl = fuse_level(level, n, pair_sd, mic, REFERENCE_GAIN_DB)
    if tl.by == "none":
        return heard, tl
    out = [HeardNote(h.t_us, h.pitch, remove_level(h.pitch, h.velocity, tl.level_db, sample_rate), h.end_us)
           for h in heard]  # fmt: skip
    return out, tl


def cmd_verify(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> int:
    from ..plan import Plan
    from ..planner import plan as plan_for
    from ..report import build_report, summary_lines

    read_mic_gain(args)  # a bad --mic-gain-db before anything is heard
    if args.song is None:  # the plan file alone: its note lines say what was meant
        spec, cal, plan_report = _plan_file_report(args, helpers)
        piece = str(args.plan)
    else:
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
        piece = str(args.song)
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
    heard, tl = level_to_plan(heard, plan_report.outcomes, rec.sample_rate, args.mic_gain, spec)
    extra = {
        "heard_from": str(args.take),
        "audio_clock": {"offset_s": round(clock.a_s, 6), "drift_ppm": round(clock.drift_ppm, 2),
                        "fit_rms_us": round(clock.rms_us, 1), "pairs": clock.points},
        "audio_level_db": round(tl.level_db, 2),
        "audio_level_pairs": tl.anchor_n,
        "audio_level": tl.to_json(),  # what the anchor and the measured gain said, and by what
        "onsets_heard": len(onsets),
    }
    report = build_report(
        plan_report=plan_report, performance=Performance(heard=heard), piece=piece,
        spec=spec, port=f"recording:{args.take}", calibration=cal, extra=extra,
    )
    if args.report:
        with atomic_open(Path(args.report), "w") as fh:
            json.dump(report, fh, indent=1)
    if not args.quiet:
        for line in summary_lines(report):
            print(line)
        print(f"audio clock: {clock.drift_ppm:+.1f} ppm, {clock.points} notes aligned")
        print(tl.line("the detector's reference microphone", "notes against the plan's loudness"))
    return 0


def _plan_file_report(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> tuple[Any, Any, Any]:
    """(spec, calibration, plan report) from the plan file alone: its spec (by the name
    in its header; ``--spec`` where it names a spec file of that name), its note lines
    (``robo-player plan --out`` writes them), the strike times from its commands."""
    from ..errors import PlanError
    from ..plan import Op, Plan
    from ..planner.report import NoteOutcome, PlanReport
    from ..spec import load_spec

    given = Plan.read_jsonl(args.plan)
    spec = helpers["load_spec"](args)
    if spec.name != given.spec_name:
        spec = load_spec(given.spec_name)
    if spec.spec_hash != given.spec_hash:
        raise UsageError(
            f"{args.plan}: made for spec {given.spec_name!r} (hash {given.spec_hash}); the spec "
            f"{spec.name!r} here has hash {spec.spec_hash}: pass the spec file it was made for (--spec)"
        )
    if spec.family != "piano":
        raise UsageError(f"{args.plan}: spec {spec.name!r} is a {spec.family}: verify hears pianos only")
    if given.notes is None:
        raise UsageError(
            f"{args.plan}: the file holds no note lines (written by an older robo-player, or not by "
            "`robo-player plan --out`): give the SONG it was planned from as well"
        )
    strikes: dict[int, int] = {}
    for c in given.commands:
        if c.op is Op.PULSE_HOLD and c.note >= 0:
            strikes.setdefault(c.note, c.t_us)
    outcomes = []
    for k, d in enumerate(given.notes):
        try:
            o = NoteOutcome.from_json(d, f"{args.plan}: note line {k + 1}")
        except ValueError as err:
            raise PlanError(str(err)) from None
        o.strike_t_us = strikes.get(o.index) if o.fate.name != "DROPPED" else None
        outcomes.append(o)
    cal = helpers["load_calibration"](args, spec)
    rep = PlanReport(outcomes=outcomes, spec_name=spec.name,
                     calibrated=bool(cal is not None and getattr(cal, "measured", False)))  # fmt: skip
    return spec, cal, rep


def add_mic_gain_arg(g: Any) -> None:
    """``--mic-gain-db G[:TOL]`` (calibrate and verify)."""
    lo, hi = MIC_GAIN_DB_RANGE
    g.add_argument("--mic-gain-db", metavar="G[:TOL]",
                   help="the microphone chain's gain, measured (dB, the simulated room's gain_db sense: "
                        f"{lo:g}..{hi:g}; a measurement microphone's calibration file or a 94 dB SPL "
                        f"calibrator gives it), and its tolerance (dB, default {MIC_GAIN_TOL_DB:g}): the "
                        "take's level then weighs it with the full-drive anchor (docs/hearing.md)")  # fmt: skip


def read_mic_gain(args: argparse.Namespace) -> None:
    """``args.mic_gain``: ``--mic-gain-db`` parsed (a clear error for a bad one), or None."""
    raw = getattr(args, "mic_gain_db", None)
    args.mic_gain = None if raw is None else parse_mic_gain(raw)


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
    helpers["add_score_args"](sp, song_required=False)  # SONG: where the plan file has no note lines
    helpers["add_spec_arg"](sp)
    helpers["add_plan_args"](sp)  # --calibration: the one the plan was made with
    add_mic_gain_arg(sp)
    sp.set_defaults(func=lambda a: cmd_verify(a, helpers))


__all__ = ["align_to_plan", "cmd_mics", "cmd_verify", "register"]
