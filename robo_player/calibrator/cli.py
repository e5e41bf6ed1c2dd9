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
    g.add_argument("--from-recording", metavar="TAKE.wav", nargs="+",
                   help="learn from a recording of that take (with --mic-positions N when it was played: its N "
                        "recordings, one a place, in the order played)")  # fmt: skip
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


def wait_for_enter(prompt: str, what: str) -> None:
    """Print ``prompt`` and wait for Enter on the terminal (its input ending: a
    CalibrationError saying ``what`` was asked; nothing is written then)."""
    print(prompt, flush=True)
    if not sys.stdin.readline():
        raise CalibrationError(f"calibrate: {what}, and the terminal's input ended (no Enter)")


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
        wait_for_enter(MOVE_PROMPT.format(k=position + 1, n=positions),
                       f"the microphone was to move to position {position + 1} of {positions}")  # fmt: skip

    def __getattr__(self, name: str) -> Any:
        return getattr(self._device, name)


DEFAULT_PLAYED = "played.json"  # --record-with-any-recorder without --played


def calibrate(args: argparse.Namespace, helpers: dict[str, Callable[..., Any]]) -> int | None:
    """``calibrate`` with a listening option, or None when none was given."""
    from .offline import fixed_parts, learn_from_recording
    from .session import calibrate_session

    read_mic_gain(args)
    positions = read_mic_positions(args)
    if positions > 1 and args.from_recording:
        raise UsageError("--mic-positions: with --from-recording the places are played.json's (one recording a "
                         "place, as --record-with-any-recorder --mic-positions N played them): leave it out")  # fmt: skip
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
        return _record_take(args, spec, helpers, lambda sp: fixed_parts(sp, positions), "strikes")
    played = _played_for_recording(args, spec)
    if played is not None:
        recs = [read_wav(path) for path in args.from_recording]
        cal, report = learn_from_recording(spec, recs, played, list(args.from_recording), args.mic_gain)
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
        print_returns(report, spec)
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


def print_returns(report: Any, spec: Any) -> None:
    """How many keys' return times the key-return probes measured (the planner's repeats)."""
    if report.return_probes:
        left = sorted(report.return_unmeasured)
        line = (f"key return: measured on {len(report.return_us)} of {report.keys} keys "
                f"({report.return_probes} probe strikes)")  # fmt: skip
        if left:
            line += (f"; {len(left)} left at the spec's nominal {spec.timing.key_return_us / 1000:.0f} ms "
                     f"(keys {', '.join(map(str, left))})")  # fmt: skip
        print(line)


# between the parts of a take recorded from several places (--record-with-any-recorder
# --mic-positions N): the user keeps the recording, moves the recorder and starts it again
RECORDER_PROMPT = ("stop the recorder and keep its file (place {k} of {n}: --from-recording takes the files in "
                   "this order); move it to position {k1} of {n}, about a metre from the last, facing the strings "
                   "at a similar distance; start it again and press Enter")  # fmt: skip


def _record_take(args: argparse.Namespace, spec: Any, helpers: dict[str, Callable[..., Any]],
                 take: Callable[[Any], tuple[Any, dict[str, Any]]], what: str) -> int:
    """--record-with-any-recorder: play the fixed take ``take(spec)`` (its plan, or a
    plan a microphone place; and what it plays: ``what``, "strikes" or "picks", lists
    them, in each of its ``parts`` where it has them) and write what it played to
    --played (played.json here by default, never over an existing one). Where the port
    records too (the simulator's microphone), each part's recording is written beside
    it (PLAYED-N.wav, or PLAYED.wav for one place), so the simulator's take can be
    learned from as a recorder's."""
    from .offline import save_played

    if not args.played:
        args.played = DEFAULT_PLAYED
        if Path(args.played).exists():
            raise UsageError(f"--record-with-any-recorder: {args.played} exists here and is not "
                             "overwritten: give --played PATH (where to write what it plays)")  # fmt: skip
    plans, played = take(spec)
    plans = plans if isinstance(plans, list) else [plans]
    parts = played.get("parts", [played])
    n = len(plans)
    stem = Path(args.played)
    wavs = [stem.with_suffix(".wav")] if n == 1 else [stem.with_name(f"{stem.stem}-{k + 1}.wav") for k in range(n)]
    written: list[Path] = []
    with helpers["open_device"](args.port, spec, args) as device:
        for k, plan in enumerate(plans):
            if k and hasattr(device, "move_microphone"):
                device.move_microphone(k, n)  # the simulator's recorder moves itself
            elif k:
                wait_for_enter(RECORDER_PROMPT.format(k=k, n=n, k1=k + 1),
                               f"the recorder was to move to position {k + 1} of {n}")  # fmt: skip
            if not args.quiet:
                where = f" (place {k + 1} of {n})" if n > 1 else ""
                print(f"start your recorder now{where}; playing {len(parts[k][what])} {what} "
                      f"({parts[k]['end_us'] / 1e6:.0f} s)")  # fmt: skip
            perf = device.play(plan)
            audio = getattr(perf, "audio", None)
            if audio is not None and wavs[k].exists():
                print(f"note: {wavs[k]} exists and is not overwritten: the port's recording of this part is not kept")
            elif audio is not None:
                from ..hearing.recording import Recording, write_wav

                written.append(write_wav(wavs[k], Recording(audio.samples(), audio.sample_rate)))
    save_played(args.played, played)
    if not args.quiet:
        takes = " ".join(str(w) for w in written) if len(written) == n else ("TAKE.wav" if n == 1 else " ".join(
            f"TAKE{k + 1}.wav" for k in range(n)))
        if written:
            print(f"the port's own microphone recorded the take: wrote {', '.join(map(str, written))}")
        print(f"wrote {args.played}; then: robo-player calibrate --spec {spec.name} --from-recording "
              f"{takes} --played {args.played} --out CAL.yaml")  # fmt: skip
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
        if len(args.from_recording) != 1:
            raise UsageError(f"--from-recording: {len(args.from_recording)} recordings: the guitar's take is "
                             "one recording (one place)")  # fmt: skip
        cal, rep = learn_from_recording(spec, read_wav(args.from_recording[0]), played, args.from_recording[0],
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


