"""A bass key alone in the plan (issue 11, session 26: ``BASS_LONE_S``): the fakes a lone-key
rule could let in, which the detector bench's fakes cannot show (every fake there is planned
beside a struck key, at its time: never alone). Per voice, for planned bass keys struck
alone in a quiet room (the room's fixed tail, as sim://'s): the planned key struck at
velocities 30, 80 and 110 (heard within 20 ms, or missed), and a wrong key struck alone in
its place, a semitone, tone, fifth, octave or twelfth away at 80 and 110 (heard as the
planned key: a fake let in). ``--context``: the same, after a loud chord of other keys
struck 0.18 s before (a G#2-E3-like pair: +6 and +14 semitones over the planned key, v105,
ringing). ``--chord``: the planned key in a chord, a major third over it planned and struck
with it (v105): the chord's-kin step rule's case (``BASS_STEP_KIN``), the wrong key struck
in the planned key's place. Reads no truth but the strikes it renders.

    PYTHONPATH=. nice .venv/bin/python bench/bass_lone.py [--context | --chord] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_takes as dt  # noqa: E402

from robo_player.hearing import detector as dm  # noqa: E402
from robo_player.hearing.detector import Detector  # noqa: E402
from robo_player.performance import HeardNote  # noqa: E402
from robo_player.sim.audio import render_audio, render_audio_rich  # noqa: E402
from robo_player.sim.room import Room, RoomTake  # noqa: E402

KEYS = (28, 31, 33, 35, 38, 40, 43, 45, 47, 50)  # planned bass keys (E1..D3)
WRONG = (-1, 1, -2, 2, -7, 7, -12, 12, 19)  # the wrong key's interval from the planned one
OFFSET_S = 0.2
AT_S = 0.5  # the planned key's strike (s, performance clock)
RENDER = {"rich": render_audio_rich, "plain": render_audio}


def heard(voice: str, planned: int, struck: int, velocity: float, context: bool, chord: bool = False) -> list[float]:
    """The plan-known pass's onsets of ``planned`` (ms from its planned time) where
    ``struck`` sounded at its planned time (with ``context``, the chord before; with
    ``chord``, a third over ``planned`` planned and struck with it)."""
    notes = [HeardNote(int(AT_S * 1e6), struck, velocity, int((AT_S + 0.4) * 1e6))]
    plan = [(AT_S + OFFSET_S, planned)]
    if chord:
        notes.append(HeardNote(int((AT_S + 0.003) * 1e6), planned + 4, 105.0, int((AT_S + 0.4) * 1e6)))
        plan.append((AT_S + 0.003 + OFFSET_S, planned + 4))
    if context:
        for d in (6, 14):
            notes.append(HeardNote(int((AT_S - 0.18) * 1e6), planned + d, 105.0, int((AT_S + 0.3) * 1e6)))
            plan.append((AT_S - 0.18 + OFFSET_S, planned + d))
    y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0, fixed_tail=True), sorted(notes, key=lambda h: h.t_us), [], 0,
                 render=RENDER[voice]).samples()  # type: ignore[arg-type]
    t = AT_S + OFFSET_S
    ons = Detector(y, 48000).detect_intended(sorted(plan), dt.BEFORE_S, dt.AFTER_S, [])
    return [round((o.t_s - t) * 1e3, 1) for o in ons if o.pitch == planned and abs(o.t_s - t) <= 0.1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", action="store_true", help="a loud chord struck 0.18 s before, ringing")
    ap.add_argument("--chord", action="store_true", help="a third over the planned key planned and struck with it")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="detector constants for the run (Python literals: None allowed)")
    ap.add_argument("--voice", nargs="*", default=list(RENDER), choices=list(RENDER))
    args = ap.parse_args()
    for kv in args.set:
        name, _, value = kv.partition("=")
        if not hasattr(dm, name) or not name.isupper():
            raise SystemExit(f"--set {kv}: the detector has no constant {name}")
        setattr(dm, name, ast.literal_eval(value))
    for voice in args.voice:
        missed, wrong = [], []
        for p in KEYS:
            for v in (30.0, 80.0, 110.0):
                got = heard(voice, p, p, v, args.context, args.chord)
                if not any(abs(x) <= 20.0 for x in got):
                    missed.append(f"{p} v{v:.0f} {got}")
            for d in WRONG:
                for v in (80.0, 110.0):
                    if p + d != p + 4 and heard(voice, p, p + d, v, args.context, args.chord):
                        wrong.append(f"{p}{d:+d} v{v:.0f}")
        print(f"{voice}: planned key struck alone, missed {len(missed)} of {3 * len(KEYS)}: {', '.join(missed)}")
        print(f"{voice}: wrong key struck alone, heard as the planned key {len(wrong)} of {2 * len(KEYS) * len(WRONG)}: "
              f"{', '.join(wrong)}", flush=True)


if __name__ == "__main__":
    main()
