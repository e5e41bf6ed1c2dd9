"""The listening options of ``robo-player calibrate``: ``--mic``,
``--record-with-any-recorder``, ``--from-recording``, ``--played``, ``--mic-gain-db``
(docs/hearing.md), ``--mic-positions`` (docs/calibration.md, "Session 25, positions")."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CalibrationError, UsageError
from ..hearing.cli import add_mic_gain_arg, read_mic_gain
from ..hearing.recording import MicRecorder, read_wav
from ..performance import Performance


def add_calibrate_args(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("listening (docs/hearing.md)")
    g.add_argument("--mic", metavar="DEVICE", help="record from this sound-card input while striking (see `mics`)")
    g.add_argument("--record-with-any-recorder", action="store_true",
                   help="play one fixed take for an outside recorder and write what it played "
                        "(--played, default played.json here)")
    g.add_argument("--from-recording", metavar="TAKE.wav", help="learn from a recording of that take")
    g.add_argument("--played", metavar="PLAYED.json", help="what the recorded take played")
    add_mic_gain_arg(g)
    g.add_argument("--mic-positions", metavar="N", default="1",
                   help="piano, through a microphone: hear the calibration's takes from N places in the room "
                        f"(1..{MAX_MIC_POSITIONS}, default 1), moving the microphone between them when asked "
                        "(the simulator moves its own): a room's colour of each key averages over the places; "
                        "--mic-gain-db is the gain at the first place (docs/calibration.md)")  # fmt: skip


# the most places --mic-positions takes: the piano's session through a microphone with a
# sync click plays 11 takes, and the first move comes after its first round's 3
# (calibrator/positions.py max_positions; a test holds them together)
MAX_MIC_POSITIONS = 5
MOVE_PROMPT = ("move the microphone to position {k} of {n}, about a metre from the last, facing the strings "
               "at a similar distance; press Enter")  # fmt: skip


def read_mic_positions(args: argparse.Namespace) -> int:
    """``args.mic_positions`` as an int in 1..MAX_MIC_POSITIONS (a clear error otherwise)."""
    raw = getattr(args, "mic_positions", 1)
    try:
        n = int(str(raw).strip())
    except ValueError as err:
        raise UsageError(f"--mic-positions: {raw!r} is not a whole number (allowed: 1..{MAX_MIC_POSITIONS})") from err
    if not 1 <= n <= MAX_MIC_POSITIONS:
        raise UsageError(f"--mic-positions: {n} is out of range (allowed: 1..{MAX_MIC_POSITIONS})")
    args.mic_positions = n
    return n


def piano_positions_only(spec: Any, positions: int) -> None:
    """A clear error where more than one microphone place is asked of an instrument other
    than the piano (the guitar's calibration hears from one place)."""
    if positions > 1:
        raise UsageError(f"--mic-positions: {positions}: the piano's calibration only (this is {spec.name})")


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

    def move_microphone(self, position: int, positions: int) -> None:
        """Ask for the microphone to be moved to place ``position`` (0-based) of
        ``positions`` and wait for Enter on the terminal."""
        print(MOVE_PROMPT.format(k=position + 1, n=positions), flush=True)
        if not sys.stdin.readline():
            raise CalibrationError(f"calibrate: the microphone was to move to position {position + 1} of "
                                   f"{positions}, and the terminal's input ended (no Enter)")  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


DEFAULT_PLAYED = "played.json"  # --record-with-any-recorder without --played


def calibrate(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> int | None:
    """``calibrate`` with a listening option, or None when none was given."""
    from .offline import fixed_take, learn_from_recording
    from .session import calibrate_session

    read_mic_gain(args)
    positions = read_mic_positions(args)
    if positions > 1 and (args.record_with_any_recorder or args.from_recording):
        raise UsageError("--mic-positions: the recorded take (--record-with-any-recorder, --from-recording) is heard "
                         "from one place only (one recording); move the microphone with --mic, or give 1")  # fmt: skip
    if not (args.mic or args.record_with_any_recorder or args.from_recording):
        if args.played:
            raise UsageError("--played goes with --record-with-any-recorder or --from-recording")
        return None
    if sum(bool(x) for x in (args.mic, args.record_with_any_recorder, args.from_recording)) > 1:
        raise UsageError("give one of --mic, --record-with-any-recorder, --from-recording")
    spec = helpers["load_spec"](args)
    if spec.family != "piano":  # the guitar's and the bass's pickers
        piano_positions_only(spec, positions)
        return _calibrate_guitar(args, spec, helpers)
    if args.record_with_any_recorder:
        return _record_take(args, spec, helpers, fixed_take, "strikes")
    played = _played_for_recording(args, spec)
    if played is not None:
        rec = read_wav(args.from_recording)
        cal, report = learn_from_recording(spec, rec, played, args.from_recording, args.mic_gain)
    else:
        mic = MicRecorder(args.mic)
        with helpers["open_device"](args.port, spec, args) as device:
            cal, report = calibrate_session(ListeningDevice(device, mic), spec, max_strikes_per_key=args.max_strikes,
                                            mic=args.mic_gain, mic_positions=positions)  # fmt: skip
    cal.save(args.out)
    if not args.quiet:
        print(f"calibrated {len(cal.keys)} keys of {spec.name} by listening "
              f"({report.strikes_per_key:.1f} strikes per key); wrote {args.out}")
        if report.audio_level is not None:
            print(report.audio_level.line("the detector's reference microphone", "keys at full drive against the spec's nominal"))
            print_positions(report)
        if report.clock_by == "curves":
            print(f"note: {spec.name} has no sync_click, so the absolute onsets are uncertain by "
                  "the sync key's full-drive latency (guessed from the curves); docs/hearing.md")
    return 0


def print_positions(report: Any) -> None:
    """The microphone's places and each one's level (a calibration heard from more than one)."""
    if report.mic_positions > 1:
        levels = ", ".join(f"{x:+.2f}" for x in report.position_levels_db)
        print(f"heard from {report.mic_positions} microphone positions; their levels as fitted: {levels} dB "
              "(the first by the anchor, each other against the curves)")  # fmt: skip


def _record_take(args: argparse.Namespace, spec: Any, helpers: dict[str, Callable[..., Any]],
                 take: Callable[[Any], tuple[Any, dict[str, Any]]], what: str) -> int:
    """--record-with-any-recorder: play the fixed take ``take(spec)`` (its plan, and what it
    plays: ``what``, "strikes" or "picks", lists them) and write what it played to
    --played (played.json here by default, never over an existing one)."""
    from .offline import save_played

    if not args.played:
        args.played = DEFAULT_PLAYED
        if Path(args.played).exists():
            raise UsageError(f"--record-with-any-recorder: {args.played} exists here and is not "
                             "overwritten: give --played PATH (where to write what it plays)")  # fmt: skip
    plan, played = take(spec)
    with helpers["open_device"](args.port, spec, args) as device:
        if not args.quiet:
            print(f"start your recorder now; playing {len(played[what])} {what} "
                  f"({played['end_us'] / 1e6:.0f} s)")  # fmt: skip
        device.play(plan)
    save_played(args.played, played)
    if not args.quiet:
        print(f"wrote {args.played}; then: robo-player calibrate --spec {spec.name} --from-recording "
              f"TAKE.wav --played {args.played} --out CAL.yaml")  # fmt: skip
    return 0


def _played_for_recording(args: argparse.Namespace, spec: Any) -> dict[str, Any] | None:
    """--out required; with --from-recording, what the take played (--played), else None."""
    from .offline import load_played

    if not args.out:
        raise UsageError("calibrate: --out CAL.yaml is needed (the calibration file to write)")
    if not args.from_recording:
        return None
    if not args.played:
        raise UsageError("--from-recording needs --played PLAYED.json (what the take played)")
    return load_played(args.played, spec)


def _calibrate_guitar(args: argparse.Namespace, spec: Any, helpers: dict[str, Callable[..., Any]]) -> int:
    """The listening options for a guitar or bass (calibrator/guitar_offline.py): the
    pickers from a recording of one fixed take, or the whole calibration through --mic."""
    from .guitar import calibrate_guitar
    from .guitar_offline import fixed_take, learn_from_recording

    if args.record_with_any_recorder:
        return _record_take(args, spec, helpers, fixed_take, "picks")
    played = _played_for_recording(args, spec)
    if played is not None:
        cal, rep = learn_from_recording(spec, read_wav(args.from_recording), played, args.from_recording,
                                        args.mic_gain)  # fmt: skip
    else:
        with helpers["open_device"](args.port, spec, args) as device:
            cal, rep = calibrate_guitar(ListeningDevice(device, MicRecorder(args.mic)), spec, mic=args.mic_gain)
    cal.save(args.out)
    if not args.quiet:
        print(f"calibrated {len(cal.pickers)} pickers and {len(cal.settle_us)} fret contacts of {spec.name} "
              f"by listening ({rep.picks} picks); wrote {args.out}")  # fmt: skip
        if args.from_recording:
            print("note: a recording cannot tell the fret contacts' settle (a bisection that listens between "
                  "rounds): the planner keeps the spec's fret_settle_us rule")
        if rep.audio_level is not None:
            print(rep.audio_level.line("the ear's law", "strings at full drive against the spec's nominal"))
        if rep.clock_by == "curves":
            print(f"note: {spec.name} has no sync_click, so the absolute onsets are uncertain by the sync "
                  "picker's full-drive latency (guessed from the curves); docs/guitar.md")
    return 0


