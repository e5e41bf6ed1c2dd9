"""Pieces of the ``robo-player`` command kept out of :mod:`robo_player.cli`: help that
shows every default, positionals after options (``verify``), ``-q`` on every
subcommand, the sensor ``calibrate`` needs, and the simulated instrument a calibration
learned (issue 9 §4, §5, §8)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .errors import UsageError


class HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already (or has
    none worth saying: a flag, an option that is off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or any(action.default is d for d in (None, False, argparse.SUPPRESS))
        ):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser. ``intermixed=True``: its positionals may come after its
    options too (``verify TAKE.wav --plan P SONG``). Plain parsing gives an optional
    positional nothing as soon as an option follows the one before it (``SONG`` is
    left over); argparse's intermixed parsing, which a parser with subcommands cannot
    use at the top, reads the options first and the positionals from what is left."""

    def __init__(self, *args: Any, intermixed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._mixing = False  # inside parse_known_intermixed_args, which calls back here

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.intermixed or self._mixing:
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def finish_subcommands(sub: Any) -> None:
    """On every subcommand (those other modules register too): help with defaults, and
    ``-q`` after the subcommand as well as before it."""
    for sp in sub.choices.values():
        sp.formatter_class = HelpWithDefaults
        flags = [f for f in ("-q", "--quiet") if f not in sp._option_string_actions]
        if flags:
            sp.add_argument(
                *flags, dest="quiet", action="store_true", default=argparse.SUPPRESS,
                help="no progress or summary (also before the subcommand)",
            )


def require_sensor(args: argparse.Namespace) -> None:
    """calibrate listens to every strike: a port with no sensor of its own needs one
    given (a microphone or a recording), or it would strike keys for nothing."""
    from .driver.ports import has_sensor

    given = any(getattr(args, a, None) for a in ("mic", "from_recording", "played"))
    if given or has_sensor(args.port):
        return
    raise UsageError(
        f"calibrate: port {args.port} has no sensor, and calibrating needs one to hear "
        "each strike: put a microphone by the instrument and give it with --mic (see "
        "`robo-player mics`), or record the strikes and pass the recording "
        "(--from-recording); see docs/hardware.md and docs/calibration.md"
    )


SIMULATED_SCHEMES = ("sim", "vmcu", "fw-host", "fw-avr")  # ports that carry the simulated piano


def simulated_instrument(args: argparse.Namespace, port: str) -> dict[str, int | str] | None:
    """Which simulated instrument ``port`` plays ({"truth_seed": n} or {"truth": path}),
    from the options and the URL's query; None for a port to real hardware."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(port)
    if parts.scheme not in SIMULATED_SCHEMES:
        return None
    q = dict(parse_qsl(parts.query))
    if getattr(args, "truth", None) or q.get("truth"):
        return {"truth": str(args.truth or q["truth"])}
    seed = args.truth_seed if getattr(args, "truth_seed", None) is not None else q.get("truth_seed")
    try:
        return {"truth_seed": int(seed) if seed is not None else 0}
    except ValueError as err:
        raise UsageError(f"port {port}: truth_seed={seed!r} is not an integer") from err


def instrument_of_calibration(args: argparse.Namespace, port: str, calibration: Any) -> None:
    """A calibration made on the simulator learned one simulated instrument: play that
    one by default, and warn when told to play another."""
    learned = getattr(calibration, "simulated", None) if calibration is not None else None
    if not learned or simulated_instrument(args, port) is None:
        return
    from urllib.parse import parse_qsl, urlsplit

    q = dict(parse_qsl(urlsplit(port).query))
    told = args.truth_seed is not None or bool(args.truth) or "truth_seed" in q or "truth" in q
    if not told:
        if "truth_seed" in learned:
            args.truth_seed = int(learned["truth_seed"])
        else:
            args.truth = str(learned["truth"])
        if not args.quiet:
            what = ", ".join(f"{k} {v}" for k, v in learned.items())
            sys.stderr.write(
                f"simulated instrument: {what} (the one {args.calibration} was made on)\n"
            )
        return
    now = simulated_instrument(args, port)
    if now != learned:
        sys.stderr.write(
            f"robo-player: warning: {args.calibration} was made on the simulated instrument "
            f"{learned}, this play is on {now}: its curves describe another instrument, so "
            "timing and loudness will be off (drop --truth-seed/--truth to play the one it "
            "learned)\n"
        )
