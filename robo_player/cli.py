"""The ``robo-player`` command.

Exit codes: 0 success; 2 usage or input error (one clear line on stderr, no output
files written); 1 a failure while running (device lost, coil failure with --strict...).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .calibrator import MAX_STRIKES_PER_KEY
from .calibrator import cli as calibrate_cli
from .cli_options import (
    CommandParser,
    HelpWithDefaults,
    finish_subcommands,
    instrument_of_calibration,
    require_sensor,
    simulated_instrument,
)
from .errors import (
    CalibrationError,
    MidiFileError,
    ModelError,
    PlanError,
    RoboPlayerError,
    SpecError,
    TransportError,
    UsageError,
)
from .fileio import Outputs, write_text
from .hearing import cli as hearing_cli
from .progress import Progress

log = logging.getLogger("robo_player")

INPUT_ERRORS = (UsageError, SpecError, CalibrationError, MidiFileError, PlanError, ModelError)


# ---------------------------------------------------------------- helpers


def _parse_int_set(text: str | None, what: str, lo: int, hi: int) -> set[int] | None:
    if text is None:
        return None
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError as err:
            raise UsageError(f"--{what}: {part!r} is not a number or range like 1-3") from err
    bad = sorted(x for x in out if not lo <= x <= hi)
    if bad:
        raise UsageError(f"--{what}: {bad[0]} is out of range (allowed {lo}..{hi})")
    return out


def _load_spec(args: argparse.Namespace) -> Any:
    from .spec import load_spec

    return load_spec(args.spec)


# the ports that carry a guitar or bass for play and simulate: the simulator, and the
# firmware with its step/dir carriages (the host build, the AVR under simavr, its Python
# model, a real board); calibrate listens on the simulator only
_GUITAR_PORTS = ("sim:", "fw-host:", "fw-avr:", "vmcu:", "serial:", "socket:", "rfc2217:", "loop:")


def _require_device(spec: Any, port: str = "sim://", calibrate: bool = False) -> None:
    """play, simulate and calibrate need a device model of the spec's family."""
    allowed = ("sim:",) if calibrate else _GUITAR_PORTS
    if spec.family != "piano" and not port.startswith(allowed):
        names = "sim://" if calibrate else "sim://, fw-host://, fw-avr://, vmcu://, serial://"
        raise UsageError(
            f"--port {port}: no device for the {spec.family} family there yet "
            f"(allowed for a guitar or bass spec{' to calibrate' if calibrate else ''}: {names})"
        )


def _load_score(args: argparse.Namespace) -> Any:
    from .midi import read_midi, require_notes, resolve_piece

    path = resolve_piece(args.song)
    score = read_midi(
        path,
        tracks=_parse_int_set(args.tracks, "tracks", 0, 65535),
        # users count channels 1..16 as MIDI does; the Score stores them 0-based
        channels={c - 1 for c in ch}
        if (ch := _parse_int_set(args.channels, "channels", 1, 16))
        else None,
        include_drums=args.include_drums,
    )
    require_notes(score, path)
    args.song_path = path
    return score


def _load_calibration(args: argparse.Namespace, spec: Any) -> Any:
    from .spec.calibration import Calibration

    if not getattr(args, "calibration", None):
        return None
    if spec.family != "piano":  # the guitar's and the bass's pickers and frets
        from .spec.string_calibration import StringCalibration

        gcal = StringCalibration.load(args.calibration)
        gcal.check_for(spec, args.calibration)
        return gcal
    cal = Calibration.load(args.calibration)
    cal.check_for(spec, args.calibration)
    return cal


def _plan_options(args: argparse.Namespace) -> Any:
    from .planner import PlanOptions

    return PlanOptions(out_of_range=args.out_of_range)


def _device_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "truth_seed", None) is not None:
        opts["truth_seed"] = args.truth_seed
    if getattr(args, "truth", None):
        opts["truth"] = args.truth
    return opts


def _open_device(url: str, spec: Any, args: argparse.Namespace, **extra: Any) -> Any:
    """Open the port; a port that cannot be opened is an input error (exit 2)."""
    from .driver import open_port

    try:
        return open_port(url, spec, **_device_options(args), **extra)
    except TransportError as err:
        raise UsageError(str(err)) from err


DEFAULT_STATE = ".robo-player-resume.json"


def _resume_options(args: argparse.Namespace, port: str, plan: Any, spec: Any) -> dict[str, Any]:
    """Firmware ports keep a resume state file; ``--resume`` starts where it stopped."""
    from urllib.parse import urlsplit

    if urlsplit(port).scheme == "sim":
        if getattr(args, "resume", False):
            raise UsageError(f"--resume: port {port} keeps no progress to resume from")
        return {}
    state = getattr(args, "state", None) or DEFAULT_STATE
    opts: dict[str, Any] = {"state": state}
    if getattr(args, "resume", False):
        from .driver.stream import ResumeState

        if not Path(state).exists():
            raise UsageError(f"--resume: {state}: no resume state (nothing was interrupted)")
        try:
            opts["start_index"] = ResumeState.load(state).start_index_for(plan, spec.spec_hash)
        except TransportError as err:
            raise UsageError(f"--resume: {err}") from err
    return opts


def _intended_notes(score: Any, plan_report: Any) -> list[tuple[int, int, int, int]]:
    out = []
    for o in plan_report.outcomes:
        n = score.notes[o.index]
        out.append((o.target_t_us, o.pitch_out, n.duration_us, n.velocity))
    return out


def _add_score_args(p: argparse.ArgumentParser, song_required: bool = True) -> None:
    p.add_argument("song", metavar="SONG.mid", nargs=None if song_required else "?")
    p.add_argument("--tracks", help="tracks to play, e.g. 1,2 or 0-3 (default: all)")
    p.add_argument("--channels", help="MIDI channels 1..16 to play (default: all but drums)")
    p.add_argument("--include-drums", action="store_true", help="keep MIDI channel 10 (drums)")


def _add_spec_arg(p: argparse.ArgumentParser) -> None:
    from .spec import DEFAULT_SPEC

    p.add_argument(
        "--spec",
        default=DEFAULT_SPEC,
        help=f"hardware spec: a name in hardware_specs/ or a YAML path (default: {DEFAULT_SPEC})",
    )


def _add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--calibration",
        metavar="CAL",
        help="calibration file from `calibrate` (default: the spec's nominal curves)",
    )
    p.add_argument(
        "--out-of-range",
        choices=["transpose", "drop"],
        default="transpose",
        help="notes outside the key range: transpose by octaves or drop",
    )


def _add_device_args(p: argparse.ArgumentParser, port: bool = True) -> None:
    if port:
        p.add_argument("--port", default="sim://", help="device URL (default: sim://)")
    p.add_argument(
        "--truth-seed",
        type=int,
        help="simulator: seed of the hidden key parameters (default: the one the "
        "--calibration was made on, else 0)",
    )
    p.add_argument(
        "--truth",
        metavar="FILE",
        help="simulator: hidden key parameters from a file (default: drawn from --truth-seed)",
    )


# ---------------------------------------------------------------- commands


def _closed_loop_check(args: argparse.Namespace, port: str, spec: Any) -> bool:
    """Whether ``--closed-loop`` is on; a usage error where it cannot run."""
    from .driver.ports import hears_live

    closed = bool(getattr(args, "closed_loop", False))
    mic = getattr(args, "mic", None)
    if getattr(args, "write_back", None) and not closed:
        raise UsageError("--write-back goes with --closed-loop")
    if mic and not closed:
        raise UsageError("play: --mic goes with --closed-loop (the loop hears through it while it plays)")
    if not closed:
        return False
    if spec.family != "piano":
        raise UsageError(f"--closed-loop: the {spec.family} cannot be heard while it plays yet (allowed: a piano spec)")
    if not mic and not hears_live(port):
        raise UsageError(
            f"--closed-loop needs a sensor that hears the notes while they play: port {port} "
            f"({spec.family}) has none (allowed: a sim://, vmcu://, fw-host:// or fw-avr:// port with a piano spec, "
            "or a microphone: --mic DEVICE)"
        )
    if getattr(args, "resume", False):
        raise UsageError("--closed-loop: --resume is not supported")
    return True


def _play_closed_loop(device: Any, plan: Any, plan_report: Any, spec: Any, mic: str | None = None) -> tuple[Any, Any]:
    """Play with the closed loop (robo_player/hearing/loop.py): the performance it heard.
    It hears through the microphone ``mic`` (a sound card input), else through the
    device's room microphone where it hands one over (``sim://`` and the simulated MCUs,
    ``sensor=audio``: the live audio ear), else through the device's note-level sensor."""
    from contextlib import ExitStack

    from .hearing.live_audio import device_ear, mic_ear
    from .hearing.loop import play_closed_loop, settings_for
    from .hearing.recording import MicBlocks
    from .performance import Performance

    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    with ExitStack() as stack:
        ear = None
        if mic:
            ear = mic_ear(stack.enter_context(MicBlocks(mic)), device, spec)
        elif getattr(device, "audio_rate", None) is not None:
            ear = device_ear(device, spec)
        res = play_closed_loop(device, plan, plan_report.outcomes, lambda a: pitch.get(a, -1),
                               lambda a: level.get(a, 0), settings_for(device, ear is not None), ear=ear)  # fmt: skip
    for c in res.log:
        log.info("closed loop: at %.3f s pitch %d: latency %+.0f µs, drive %+.3f (heard %+.0f µs, "
                 "velocity ratio %.3f)", c.t_us / 1e6, c.pitch, c.latency_us, c.drive_gain,
                 c.onset_err_us, c.velocity_ratio)  # fmt: skip
    perf = res.performance if res.performance is not None else Performance(heard=res.heard)
    perf.extra["closed_loop"] = {"steps": res.steps, "heard_live": res.heard_live, "used": res.used,
                                 "corrections": len(res.log), "keys": len(res.latency_us),
                                 "heard_by": "audio" if res.ear else "notes"}  # fmt: skip
    if res.ear:
        perf.extra["closed_loop"]["ear"] = res.ear
    if res.behind:  # how far the stream had run past each step's time when the loop came to it
        perf.extra["closed_loop"]["behind"] = res.behind
    return perf, res


def cmd_play(args: argparse.Namespace, port: str | None = None) -> int:
    from .planner import plan as plan_for
    from .report import build_report, summary_lines

    port = port or args.port
    spec = _load_spec(args)
    _require_device(spec, port)
    if getattr(args, "generate", None):
        from .model.cli import generate_score

        score = generate_score(
            args.generate, spec, seconds=args.seconds, primer=args.primer, seed=args.seed
        )
        piece = f"generated:{args.generate}"
    elif args.song:
        score = _load_score(args)
        piece = str(args.song_path)
    else:
        raise UsageError("play: give SONG.mid or --generate MODEL")
    calibration = _load_calibration(args, spec)
    instrument_of_calibration(args, port, calibration)
    closed = _closed_loop_check(args, port, spec)
    with Outputs() as outputs:
        write_back = outputs.reserve(args.write_back) if closed and args.write_back else None
        report_path = outputs.reserve(args.report, stdout=True) if args.report else None
        wav_path = outputs.reserve(args.wav) if args.wav else None
        plot_path = outputs.reserve(args.plot) if args.plot else None
        plan, plan_report = plan_for(score, spec, calibration, _plan_options(args))
        prog = Progress("playing", enabled=not args.quiet)
        fault: BaseException | None = None
        ropts = _resume_options(args, port, plan, spec)
        with _open_device(port, spec, args, **ropts) as device:
            try:
                if closed:
                    performance, loop_res = _play_closed_loop(device, plan, plan_report, spec,
                                                              getattr(args, "mic", None))
                else:
                    performance = device.play(plan, progress=prog)
            except (RoboPlayerError, KeyboardInterrupt) as err:
                # a fault or Ctrl-C part way: the partial report, with the fault in it
                performance = getattr(err, "performance", None)
                if performance is None:
                    raise
                fault = err
        prog.done()
        report = build_report(
            plan_report=plan_report,
            performance=performance,
            piece=piece,
            spec=spec,
            port=port,
            calibration=calibration,
            extra={"duration_s": round(score.duration_s, 3)},
            score=score,
        )
        if fault is not None:
            report["fault"] = {
                "kind": "interrupted" if isinstance(fault, KeyboardInterrupt) else type(fault).__name__,
                "message": str(fault),
                "resume_state": ropts.get("state"),
            }
        no_audio = report.get("heard", 0) is None
        if wav_path and no_audio:
            print(f"robo-player: not writing {args.wav}: no audio ({report['heard_reason']})",
                  file=sys.stderr)  # fmt: skip
        elif wav_path:
            wprog = Progress("rendering audio", enabled=not args.quiet)
            if spec.family != "piano":
                from .sim.guitar.audio import render_wav as render_guitar_wav

                render_guitar_wav(performance, wav_path, spec=spec)
            else:
                from .sim.audio import DEFAULT_VOICE, render_wav, voice_of

                # the voice the port's microphone recorded (sim://?voice=), else the simulator's default
                render = getattr(performance.audio, "render", None)
                render_wav(performance, wav_path, spec=spec,
                           voice=voice_of(render) if render is not None else DEFAULT_VOICE)  # fmt: skip
            wprog.done()
        if plot_path and spec.family != "piano":  # a lane per string, frets
            from .sim.guitar.roll import intended_from, plot_guitar_roll

            plot_guitar_roll(spec, intended_from(score, plan_report), performance.heard, plot_path,
                             buzzes=performance.extra.get("buzzes", ()),
                             title=f"{Path(piece).name} on {spec.name}")  # fmt: skip
        elif plot_path:
            from .sim.pianoroll import plot_pianoroll

            plot_pianoroll(
                _intended_notes(score, plan_report),
                performance.heard,
                plot_path,
                title=f"{Path(piece).name} on {spec.name}",
                strikes=[o.strike_t_us for o in plan_report.outcomes],
            )
        if write_back:
            from .hearing.loop import corrected_calibration
            from .spec.calibration import Calibration

            base = calibration if calibration is not None else Calibration.nominal(spec)
            corrected_calibration(base, loop_res).save(write_back)
        if report_path:
            write_text(report_path, json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        # the report on standard output (`--report -`) keeps stdout pure JSON
        to = sys.stderr if args.report == "-" else sys.stdout
        for line in summary_lines(report):
            print(line, file=to)
        for path in (args.report, None if no_audio else args.wav, args.plot):
            if path:
                print(f"wrote {path}", file=to)
    if fault is not None:
        if isinstance(fault, KeyboardInterrupt):
            print(f"robo-player: interrupted; the resume point is saved "
                  f"(play again with --resume): {fault}", file=sys.stderr)  # fmt: skip
            return interrupted_exit_code(fault)
        print(f"robo-player: error: {fault} (partial report written where asked)", file=sys.stderr)
        return 1
    if report.get("coil_failures"):
        print(f"error: {len(report['coil_failures'])} coil failure(s)", file=sys.stderr)
        return 1
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    return cmd_play(args, port="sim://")


def cmd_plan(args: argparse.Namespace) -> int:
    from .planner import plan as plan_for

    if not (args.out or args.tab or args.report):
        raise UsageError("plan: nothing to write: give --out PLAN.jsonl, --tab TAB.txt or --report PATH")
    spec = _load_spec(args)
    score = _load_score(args)
    calibration = _load_calibration(args, spec)
    with Outputs() as outputs:
        out = outputs.reserve(args.out) if args.out else None
        rep = outputs.reserve(args.report) if args.report else None
        tab = outputs.reserve(args.tab) if args.tab else None
        if tab is not None and spec.family == "piano":
            raise UsageError(f"--tab: spec {spec.name!r} is a piano (allowed: a guitar or bass spec)")
        plan, plan_report = plan_for(score, spec, calibration, _plan_options(args))
        if out is not None:
            plan.notes = [o.to_json() for o in plan_report.outcomes]  # for `verify` (docs/plan-format.md)
            plan.write_jsonl(out)
        if rep:
            write_text(rep, json.dumps(plan_report.to_json(), indent=2) + "\n")
        if tab is not None:
            from .planner.tab import format_tab

            write_text(tab, format_tab(spec, score, plan_report))
    if not args.quiet:
        pr = plan_report.to_json()
        print(
            f"{len(plan)} commands for {pr['notes_in']} notes: {pr['notes_played']} played, "
            f"{pr['notes_altered']} altered, {pr['notes_dropped']} dropped"
        )
        for path in (args.out, args.report, args.tab):
            if path:
                print(f"wrote {path}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrator import calibrate_session

    if (done := calibrate_cli.calibrate(args, _HEARING)) is not None:  # --mic, recordings
        return done
    if not args.out:
        raise UsageError("calibrate: --out CAL.yaml is needed (the calibration file to write)")
    spec = _load_spec(args)
    _require_device(spec, args.port, calibrate=True)
    positions = calibrate_cli.read_mic_positions(args)
    if spec.family != "piano":
        calibrate_cli.piano_positions_only(spec, positions)
        from .calibrator.guitar import calibrate_command

        return calibrate_command(args, spec, lambda: _open_device(args.port, spec, args), print,
                                 simulated_instrument(args, args.port))  # fmt: skip
    if not 3 <= args.max_strikes <= 64:
        raise UsageError(f"--max-strikes: {args.max_strikes} is out of range (allowed 3..64)")
    require_sensor(args)
    with Outputs() as outputs:
        out = outputs.reserve(args.out)
        prog = Progress("calibrating", enabled=not args.quiet)
        with _open_device(args.port, spec, args) as device:
            cal, rep = calibrate_session(device, spec, max_strikes_per_key=args.max_strikes, progress=prog,
                                         mic=args.mic_gain, mic_positions=positions)  # fmt: skip
        prog.done()
        cal.simulated = simulated_instrument(args, args.port)
        cal.save(out)
    if not args.quiet:
        print(
            f"calibrated {len(cal.keys)} keys of {spec.name} with "
            f"{cal.strikes_per_key:.1f} strikes per key"
        )
        if rep.audio_level is not None:
            print(rep.audio_level.line("the detector's reference microphone", "keys at full drive against the spec's nominal"))
            calibrate_cli.print_positions(rep)
        elif args.mic_gain is not None:
            print("note: --mic-gain-db is for a calibration through audio; this device hands back heard notes")
        print(f"wrote {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .midi import score_stats
    from .pitch import pitch_name
    from .planner import plan as plan_for
    from .report import placed_entries

    spec = _load_spec(args)
    score = _load_score(args)
    stats = score_stats(score)
    calibration = _load_calibration(args, spec)
    _, plan_report = plan_for(score, spec, calibration, _plan_options(args))
    pr = plan_report.to_json()
    out_of_range = [n for n in score.notes if not spec.has_pitch(n.pitch)]
    fit = {
        "spec": spec.name,
        "range": f"{pitch_name(spec.lowest)}..{pitch_name(spec.highest)}",
        "notes_out_of_range": len(out_of_range),
        "would_alter": pr["notes_altered"],
        "would_drop": pr["notes_dropped"],
        "drop_reasons": sorted({d["reason"] for d in pr["drops"]})[:10],
        "drops": placed_entries(pr["drops"], score, plan_report.outcomes),
    }
    for key in ("fretter_travel_frets", "fretter_travel_mm", "string_changes", "cut_notes"):
        if key in pr:  # the guitar's and the bass's
            fit[key] = pr[key]
    if args.json:
        print(json.dumps({"score": stats, "fit": fit}, indent=2))
        return 0
    print(f"{args.song}")
    for k, v in stats.items():
        print(f"  {k}: {round(v, 3) if isinstance(v, float) else v}")
    print(f"on {spec.name} ({fit['range']}):")
    print(f"  out of range: {fit['notes_out_of_range']}")
    print(f"  would be altered: {fit['would_alter']}, dropped: {fit['would_drop']}")
    for d in fit["drops"][:10]:
        print(f"    drop: {d.get('pitch', '?')} at {d.get('at', '?')} (channel "
              f"{d.get('channel', '?')}): {d['reason']}")  # fmt: skip
    if len(fit["drops"]) > 10:
        print(f"    ... {len(fit['drops']) - 10} more drops")
    if "string_changes" in fit:
        print(f"  fretter travel: {fit['fretter_travel_frets']} frets ({fit['fretter_travel_mm']} mm), "
              f"string changes: {fit['string_changes']}, notes cut short: {fit['cut_notes']}")  # fmt: skip
    return 0


# ---------------------------------------------------------------- parser
# what the hearing commands (robo_player/hearing/cli.py) borrow from this module
_HEARING: dict[str, Callable[..., Any]] = {
    "load_spec": lambda a: _load_spec(a),
    "load_score": lambda a: _load_score(a),
    "load_calibration": lambda a, s: _load_calibration(a, s),
    "plan_options": lambda a: _plan_options(a),
    "open_device": lambda u, s, a: _open_device(u, s, a),
    "add_score_args": lambda p, song_required=True: _add_score_args(p, song_required),
    "add_spec_arg": lambda p: _add_spec_arg(p),
    "add_plan_args": lambda p: _add_plan_args(p),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="robo-player",
        formatter_class=HelpWithDefaults,
        description="Make robots play real instruments: plan MIDI for a solenoid piano, "
        "stream it to firmware, or play it on the simulator.",
    )
    p.add_argument("--version", action="version", version=f"robo-player {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    for name, func, help_, port in (
        ("play", cmd_play, "plan a piece and play it on a device (default: the simulator)", True),
        ("simulate", cmd_simulate, "plan a piece and play it on the simulated piano", False),
    ):
        sp = add(name, func, help_)
        _add_score_args(sp, song_required=False)
        _add_spec_arg(sp)
        _add_plan_args(sp)
        _add_device_args(sp, port=port)
        sp.add_argument(
            "--report", metavar="PATH", help="write the report JSON here (- for standard output)"
        )
        sp.add_argument("--wav", metavar="PATH", help="write the heard audio (WAV) here")
        sp.add_argument("--plot", metavar="PATH", help="write a piano roll (PNG) here")
        if port:
            sp.add_argument("--resume", action="store_true", help="continue from the last executed note")
            sp.add_argument(
                "--state",
                metavar="FILE",
                help=f"firmware ports: where play keeps its resume point (default: {DEFAULT_STATE})",
            )
            sp.add_argument("--closed-loop", action="store_true",
                            help="correct each key's latency and loudness from what is heard "
                                 "while the one stream plays (needs a port that hears live: "
                                 "sim://, vmcu://, fw-host://, fw-avr://, or a microphone: --mic)")  # fmt: skip
            sp.add_argument("--write-back", metavar="CAL.yaml",
                            help="with --closed-loop: write the calibration with the corrections here")
            sp.add_argument("--mic", metavar="DEVICE",
                            help="with --closed-loop: hear through this sound card input while playing "
                                 "(an index or part of its name: robo-player mics; needs sounddevice)")
            sp.add_argument("--generate", metavar="MODEL", help="play a piece the model generates")
            sp.add_argument("--seconds", type=float, default=30.0, help="with --generate: length in seconds")
            sp.add_argument("--primer", help='with --generate: primer notes, e.g. "C4 E4 G4"')
            sp.add_argument("--seed", type=int, default=0, help="with --generate: sampling seed")

    sp = add("plan", cmd_plan, "plan a piece for a spec and export the commands as JSON Lines")
    _add_score_args(sp)
    _add_spec_arg(sp)
    _add_plan_args(sp)
    sp.add_argument("--out", metavar="PLAN.jsonl",
                    help="where to write the plan (needed unless --tab or --report is given)")  # fmt: skip
    sp.add_argument("--report", metavar="PATH", help="write the plan report JSON here")
    sp.add_argument("--tab", metavar="TAB.txt", help="guitar/bass: write the fingering as ASCII tab")

    sp = add("calibrate", cmd_calibrate, "measure every key's curves by playing and listening")
    _add_spec_arg(sp)
    _add_device_args(sp)
    sp.add_argument("--out", metavar="CAL.yaml",
                    help="calibration file to write (needed but with --record-with-any-recorder)")  # fmt: skip
    sp.add_argument("--max-strikes", type=int, default=MAX_STRIKES_PER_KEY,
                    help="strikes per key at most, key-return probes included (piano)")
    calibrate_cli.add_calibrate_args(sp)
    hearing_cli.register(sub, _HEARING)  # `mics` and `verify` (docs/hearing.md)

    sp = add("inspect", cmd_inspect, "show a piece's notes, range, density, polyphony and fit")
    _add_score_args(sp)
    _add_spec_arg(sp)
    _add_plan_args(sp)
    sp.add_argument("--json", action="store_true", help="print JSON")

    from .live import cli as live_cli  # `live` and `ports` (docs/live.md)

    live_cli.register(sub)

    try:
        from .model import cli as model_cli
    except ImportError:  # the model package is optional; its commands then don't exist
        model_cli = None  # type: ignore[assignment]
    if model_cli is not None and hasattr(model_cli, "register"):
        model_cli.register(sub)
    finish_subcommands(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: robo-player stops as on Ctrl-C (every output off, the resume
    point and the partial report saved, the firmware process stopped) and exits with
    128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _on_terminate(signum: int, _frame: object) -> None:
    for s in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the clean-up
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


def interrupted_exit_code(err: BaseException) -> int:
    """130 for Ctrl-C, 128 + N for a :class:`Terminated` by signal N (also as a cause)."""
    for e in (err, err.__cause__):
        if isinstance(e, Terminated):
            return 128 + e.signum
    return 130


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--mic-gain-db -30.8:0.2`` as ``--mic-gain-db=-30.8:0.2`` (argparse takes a value
    that starts with ``-`` and is no plain number for an option)."""
    out: list[str] = []
    for a in argv:
        if out and out[-1] == "--mic-gain-db" and a[:1] == "-" and (a[1:2].isdigit() or a[1:2] == "."):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    before = {}
    if threading.current_thread() is threading.main_thread():
        before = {s: signal.signal(s, _on_terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return int(args.func(args))
    except INPUT_ERRORS as err:
        print(f"robo-player: error: {err}", file=sys.stderr)
        return 2
    except RoboPlayerError as err:
        print(f"robo-player: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"robo-player: {err or 'interrupted'}", file=sys.stderr)
        return interrupted_exit_code(err)
    finally:
        for s_, h in before.items():  # (a caller that runs main() in-process keeps its own)
            signal.signal(s_, h)


if __name__ == "__main__":
    sys.exit(main())
