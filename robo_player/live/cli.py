"""``robo-player live`` and ``robo-player ports`` (registered by :mod:`robo_player.cli`).

``live`` plays what a MIDI input sends on a device, each note planned as it arrives
(``docs/live.md``); ``ports`` lists the MIDI inputs. Output is the command's own
business here as in the main CLI (``print`` is allowed in CLI modules).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any

from ..errors import TransportError, UsageError
from ..performance import Performance
from .family import AnyLivePlanner, live_planner
from .inputs import DEFAULT_VIRTUAL_NAME, FILE_PREFIX, file_events, list_inputs, open_input
from .measure import file_report
from .planner import LatencyMode, LiveOptions, LivePlanner
from .session import VIRTUAL_TIME_SCHEMES, LiveSession, run_realtime, run_virtual

__all__ = ["cmd_live", "cmd_ports", "register"]


def register(sub: Any) -> None:
    """Add ``live`` and ``ports`` to the main parser's subcommands."""
    from ..spec import DEFAULT_SPEC

    sp = sub.add_parser(
        "live",
        help="play what a MIDI input sends, each note planned as it arrives",
        description="Play a MIDI keyboard, a DAW or a replayed file on a device, live.",
    )
    sp.set_defaults(func=cmd_live)
    sp.add_argument("--spec", default=DEFAULT_SPEC, help=f"hardware spec (default {DEFAULT_SPEC})")
    sp.add_argument("--port", default="sim://", help="device URL (default: sim://)")
    src = sp.add_mutually_exclusive_group()
    src.add_argument(
        "--midi-in", metavar="NAME",
        help="MIDI input port (see `robo-player ports`), or file:SONG.mid to replay a file",
    )  # fmt: skip
    src.add_argument(
        "--virtual", metavar="NAME", nargs="?", const=DEFAULT_VIRTUAL_NAME,
        help=f"create a virtual MIDI port (default name {DEFAULT_VIRTUAL_NAME!r}; not on Windows)",
    )  # fmt: skip
    src.add_argument(
        "--replay", metavar="FILE.mid",
        help="feed a MIDI file through the live path in real time, as if a player sent it",
    )  # fmt: skip
    sp.add_argument("--latency", choices=[m.value for m in LatencyMode], default="fixed",
                    help="fixed: constant delay D for every note (default); lowest: each note "
                    "as soon as its key can make it (loud notes sooner)")  # fmt: skip
    sp.add_argument("--latency-ms", type=float, help="fixed mode: D in ms (default: calibrated)")
    sp.add_argument(
        "--min-velocity",
        type=int,
        default=1,
        help="quietest velocity D covers (default 1; higher: shorter D)",
    )
    sp.add_argument(
        "--lead-ms",
        type=float,
        default=3.0,
        help="earliest a command is scheduled after its message (default 3 ms)",
    )
    sp.add_argument("--calibration", metavar="CAL", help="calibration file from `calibrate`")
    sp.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    sp.add_argument("--virtual-time", action="store_true",
                    help="with --midi-in file: on sim:// or vmcu://: run in virtual time "
                    "(as fast as it computes), not the file's real time")  # fmt: skip
    sp.add_argument("--report", metavar="PATH", help="write the live statistics (JSON) here")
    sp.add_argument(
        "--record", metavar="FILE.mid",
        help="save what arrived and what was played, each on its own track",
    )  # fmt: skip
    sp.add_argument("--truth-seed", type=int, help="simulator: seed of the hidden key parameters")
    sp.add_argument(
        "--rt-priority", type=int, metavar="N",
        help="run the live loop at real-time priority N (1..99, SCHED_FIFO; Linux, needs "
        "the right: root or CAP_SYS_NICE); the latency figures in docs/live.md need it on a "
        "busy machine",
    )  # fmt: skip
    rg = sp.add_argument_group("call and response")
    rg.add_argument(
        "--respond", metavar="MODEL", nargs="?", const="models/performance.pt",
        help="when the player pauses, the model continues their phrase, then gives the turn "
        "back (default model: models/performance.pt; needs the `model` extra)",
    )  # fmt: skip
    rg.add_argument("--respond-silence-ms", type=float, default=300.0,
                    help="end of turn: every key up this long (default 300)")  # fmt: skip
    rg.add_argument("--call-done-cc", type=int, metavar="N",
                    help="end of turn at once on this controller (value > 0)")  # fmt: skip
    rg.add_argument("--respond-length", type=float, default=1.0,
                    help="the answer's length / the call's (default 1)")  # fmt: skip
    rg.add_argument("--respond-seed", type=int, default=0, help="sampling seed (default 0)")
    rg.add_argument("--respond-stop-ms", type=float, default=50.0,
                    help="the answer stops this soon after the player plays again: its notes "
                    "are played at least as loud as their keys need to sound within it "
                    "(default 50; 0: the model's velocities, stopping within the slowest "
                    "key's latency)")  # fmt: skip

    sp = sub.add_parser(
        "ports",
        help="list the MIDI input ports",
        description="List the MIDI input ports (mido with python-rtmidi).",
    )
    sp.set_defaults(func=cmd_ports)


def cmd_ports(args: argparse.Namespace) -> int:
    try:
        names = list_inputs()
    except TransportError as err:
        raise UsageError(str(err)) from err
    if not names:
        print("no MIDI input ports (use `robo-player live --virtual` to create one)")
    for n in names:
        print(n)
    return 0


def _options(args: argparse.Namespace) -> LiveOptions:
    return LiveOptions(
        mode=LatencyMode(args.latency),
        latency_us=None if args.latency_ms is None else round(args.latency_ms * 1000),
        lead_us=round(args.lead_ms * 1000),
        min_velocity=args.min_velocity,
    )


def cmd_live(args: argparse.Namespace) -> int:
    from ..driver.ports import open_port
    from ..spec import load_spec

    spec = load_spec(args.spec)
    cal = _calibration(args.calibration, spec) if args.calibration else None
    planner = live_planner(spec, cal, _options(args))
    if args.respond and not isinstance(planner, LivePlanner):
        raise UsageError(
            f"--respond: call and response plays on a piano spec; {spec.name!r} is a {spec.family}"
        )
    if args.replay:
        args.midi_in = FILE_PREFIX + args.replay
    if not (args.midi_in or args.virtual):
        raise UsageError(
            "live: give --midi-in NAME (or file:SONG.mid), --replay FILE.mid or --virtual [NAME]"
        )
    virtual_time = args.virtual_time
    if virtual_time and not (args.midi_in or "").startswith(FILE_PREFIX):
        raise UsageError("live: --virtual-time needs --midi-in file:SONG.mid")
    scheme = args.port.split("://", 1)[0]
    if virtual_time and scheme + ":" not in VIRTUAL_TIME_SCHEMES:
        raise UsageError(
            f"live: --virtual-time on {args.port!r}: only on {', '.join(s + '//' for s in VIRTUAL_TIME_SCHEMES)}"
        )
    respond = _respond_options(args) if args.respond else None
    source = None
    if not virtual_time:
        try:
            source = open_input(args.midi_in, virtual=args.virtual is not None and not args.midi_in)
        except TransportError as err:
            raise UsageError(str(err)) from err
    mode = planner.options.mode.value
    if not args.quiet:
        d_ms = planner.latency_us / 1000
        if isinstance(planner, LivePlanner):
            made_of = (f"slowest key at velocity >= {args.min_velocity}: "
                       f"{planner.slowest_us / 1000:.1f} ms")  # fmt: skip
        else:
            made_of = (f"at velocity >= {args.min_velocity}: "
                       f"{planner.delay_parts.describe()}")  # fmt: skip
        print(
            f"live: {spec.name} on {args.port}, latency {mode}: "
            + (f"D = {d_ms:.1f} ms ({made_of})" if mode == "fixed"
               else "each note as soon as its key can make it")
        )  # fmt: skip
        if source is not None:
            print(
                f"listening on {getattr(source, 'name', args.midi_in or args.virtual)} (Ctrl-C stops)"
            )
    if args.rt_priority is not None:
        _rt_priority(args.rt_priority)  # (before the model's worker starts: it inherits it)
    responder = None
    if respond is not None:
        assert isinstance(planner, LivePlanner)  # (refused above for the others)
        responder = _responder(args, spec, planner, respond, virtual_time)
    opts: dict[str, Any] = {}
    if args.truth_seed is not None and scheme == "sim":
        opts["truth_seed"] = args.truth_seed
    try:
        dev = open_port(args.port, spec, **opts)
    except TransportError as err:
        raise UsageError(str(err)) from err
    interrupted = False
    perf: Performance | None = None
    session: LiveSession | None = None
    with dev:
        if virtual_time:
            events = file_events(args.midi_in[len(FILE_PREFIX) :])
            if args.seconds is not None:
                events = [e for e in events if e[0] <= args.seconds]
            perf, session = run_virtual(
                dev, planner, events, record=bool(args.record), responder=responder
            )
        else:
            assert source is not None
            t_end = None if args.seconds is None else time.monotonic() + args.seconds

            def until(s: LiveSession) -> bool:
                if t_end is not None and time.monotonic() >= t_end:
                    return True
                return bool(getattr(source, "done", False)) and planner.next_due_us() is None

            status = _Status(planner, quiet=args.quiet)
            try:
                perf, session = run_realtime(
                    dev, planner, source, until=until, on_tick=status,
                    record=bool(args.record), responder=responder,
                )  # fmt: skip
            except TransportError as err:
                print(
                    f"live: the device link was lost ({err}); the device's watchdog plays "
                    "out what it has queued, then turns every output off",
                    file=sys.stderr,
                )
                raise
            interrupted = bool(session.stop_reason)
    assert perf is not None and session is not None
    piece = args.midi_in or f"virtual:{args.virtual}"
    stats = file_report(perf, session, planner, piece=piece, port=args.port, calibration=cal)
    if responder is not None:
        stats["live"]["respond"] = responder.stats.as_dict()
    if args.record and session is not None:
        from .record import write_record

        write_record(args.record, session, planner)
    if args.report:
        from pathlib import Path

        Path(args.report).write_text(json.dumps(stats, indent=2) + "\n")
    if interrupted and session is not None:
        print(f"live: stopped: {session.stop_reason}; every output is off", file=sys.stderr)
    if not args.quiet:
        st, lv = planner.stats, stats["live"]
        line = (
            f"live: {lv['notes_in']} notes in, outcomes {lv['outcomes']}, "
            f"{st.offs_in_flight} note-offs in flight, {st.panics} panics"
        )
        if responder is not None:
            r = responder.stats
            line += f"; {r.turns} turns, {r.answers} answers ({r.answer_notes} notes)"
        dev = stats["live"].get("onset_deviation_ms")
        if dev:
            line += f"; heard onset - message - D: p50 {dev['p50']} ms, p99 {dev['p99']} ms"
        print(line)
    return 0


def _calibration(path: str, spec: Any) -> Any:
    """A piano's calibration (keys), or a guitar's or bass's (pickers), checked for ``spec``."""
    from ..spec.calibration import Calibration
    from ..spec.string_calibration import StringCalibration

    cls: Any = Calibration if spec.family == "piano" else StringCalibration
    cal = cls.load(path)
    cal.check_for(spec, path)
    return cal


def _respond_options(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from .respond import RespondOptions

    if importlib.util.find_spec("torch") is None:
        raise UsageError(
            "--respond needs the performance model, which needs torch: "
            "pip install 'robo_player[model]'"
        )
    if not Path(args.respond).is_file():
        raise UsageError(f"--respond {args.respond}: no such model file")
    return RespondOptions(
        silence_us=round(args.respond_silence_ms * 1000),
        call_done_cc=args.call_done_cc,
        length=args.respond_length,
        seed=args.respond_seed,
        stop_us=round(args.respond_stop_ms * 1000) if args.respond_stop_ms else None,
    )


def _responder(
    args: argparse.Namespace, spec: Any, planner: LivePlanner, respond: Any, inline: bool
) -> Any:
    from .respond import InlineGenerator, ProcessGenerator, Responder, continue_phrase

    if inline:  # virtual time: the model runs in line (time stands still meanwhile)
        load_model = importlib.import_module("robo_player.model.checkpoint").load_model
        model, _, _ = load_model(args.respond)
        cal = planner.oracle.calibration if args.calibration else None
        gen: Any = InlineGenerator(
            lambda call, s: continue_phrase(model, spec, call, s, respond, cal)
        )
    else:
        gen = ProcessGenerator(args.respond, args.spec, respond, args.calibration)
    return Responder(planner, gen, respond)


def _rt_priority(prio: int) -> None:
    if not 1 <= prio <= 99:
        raise UsageError(f"--rt-priority: {prio} is out of range (allowed 1..99)")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
    except (AttributeError, PermissionError, OSError) as err:
        print(f"live: --rt-priority {prio}: not allowed here ({err}); running at normal "
              "priority", file=sys.stderr)  # fmt: skip


class _Status:
    """A one-line status, at most every second: notes/s, the latency in use, drops."""

    def __init__(self, planner: AnyLivePlanner, quiet: bool) -> None:
        self.planner = planner
        self.quiet = quiet or not sys.stderr.isatty()
        self.last = time.monotonic()
        self.notes = 0

    def __call__(self, session: LiveSession) -> None:
        now = time.monotonic()
        if self.quiet or now - self.last < 1.0:
            return
        st = self.planner.stats
        rate = (st.notes_in - self.notes) / (now - self.last)
        self.last, self.notes = now, st.notes_in
        print("\r" + status_line(self.planner, session, rate), end="", file=sys.stderr, flush=True)


def status_line(planner: AnyLivePlanner, session: LiveSession, rate: float) -> str:
    """notes/s, the latency in use, the planned and the measured jitter (host latency:
    MIDI message in -> its commands written), link statistics, drops with their reasons."""
    st = planner.stats
    o = st.outcomes
    recent = st.delays_us[-200:]
    jitter = statistics.pstdev(recent) / 1000 if len(recent) > 1 else 0.0
    host = session.host_us[-200:]
    host_jitter = statistics.pstdev(host) / 1000 if len(host) > 1 else 0.0
    line = (
        f"{rate:5.1f} notes/s  D {planner.latency_us / 1000:.1f} ms  "
        f"jitter planned {jitter:.2f} ms, host {host_jitter:.2f} ms  late {o['late']}  "
        f"merged {o['merged']}  dropped: range {o['dropped_out_of_range']} "
        f"heat {o['dropped_heat']} rate {o['dropped_rate']}"
    )
    fw = getattr(session.device, "last_session", None)
    if fw is not None and hasattr(fw, "link_stats"):
        ls = fw.link_stats()
        line += (
            f"  link: {ls['bytes_sent']} B out, {ls['retransmits']} resent, "
            f"{ls['crc_errors'] + ls['framing_errors']} bad frames"
        )
    return line
