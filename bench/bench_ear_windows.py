"""Issue 11 §4: what the live ear hears in its windows, against the detector on the
whole take and against the exact onsets.

    .venv/bin/python bench/bench_ear_windows.py [--seconds 30] [--random 1 2] [--loud] [--seed 1]

Each piece (random pieces of bench/detector_takes.py, not shipped; ``--loud``: the loud
piece of bench_closed_loop.py) is planned on the truth's calibration by the note-level
sensor (as bench/detector_takes.py's takes) and played once on
``sim://`` (the rich voice, the room's microphone, the audio ear in the loop's thread,
open loop); the ear's calls are kept and made again on fresh ears: with the plan's notes
outside each window given to the detector as its context (the ear since session 23: the
notes struck before the window still ring in it) and without (before). The whole take's
plan-known detector (``verify``'s, every planned note, on the ear's clock) is the
reference. Each heard note is matched to the exact note of its key (the room's, the
nearest within 80 ms): heard within 20 ms, off (heard 20-80 ms away), unheard; the
median and p99 of |error| (ms) of those within 20 ms; and the ear's cost (x real time).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
from bench_closed_loop import loud_piece
from detector_takes import calibration, random_piece

from robo_player.driver import open_port
from robo_player.hearing.detector import Detector
from robo_player.hearing.live_audio import AudioEar, RecordingEar, click_of, replay
from robo_player.hearing.loop import LoopSettings, play_closed_loop
from robo_player.matching import ONSET_WINDOW
from robo_player.planner import plan as plan_for
from robo_player.spec import load_spec

WITHIN_US = 20_000
NEAR_US = 80_000


def _replay(calls: list[tuple], spec, rate: int) -> tuple[AudioEar, float]:  # noqa: ANN001
    t0 = time.perf_counter()
    _, ear = replay(calls, rate, click_of(spec))
    return ear, time.perf_counter() - t0


def _without_context() -> Callable[[], None]:
    """Make the detector drop its context (the ear before session 23); undo with the result."""
    orig = Detector.detect_intended

    def plain(self, intended, before_s, after_s, blind=None, *, informed=True, context=()):  # noqa: ANN001, ANN202
        return orig(self, intended, before_s, after_s, blind, informed=informed)

    Detector.detect_intended = plain  # type: ignore[method-assign]

    def undo() -> None:
        Detector.detect_intended = orig  # type: ignore[method-assign]

    return undo


def _score(heard: list[tuple[float, int]], exact: list[tuple[float, int]]) -> tuple[int, int, int, float, float]:
    """(within 20 ms, off, unheard, median |err| ms, p99 |err| ms) of ``heard`` (MCU µs,
    key) against ``exact``, matched as :func:`_errors` matches them."""
    errs = _errors(heard, exact)
    near = [abs(e) for e in errs if e is not None and abs(e) <= WITHIN_US / 1e3]
    off = sum(e is not None and abs(e) > WITHIN_US / 1e3 for e in errs)
    a = np.asarray(near) if near else np.zeros(1)
    return len(near), off, sum(e is None for e in errs), float(np.median(a)), float(np.percentile(a, 99))


def _errors(heard: list[tuple[float, int]], exact: list[tuple[float, int]]) -> list[float | None]:
    """Each exact note's error (ms, heard - exact): the nearest heard onset of its key
    within 80 ms, each used once; None: unheard."""
    by: dict[int, list[float]] = {}
    for t, p in heard:
        by.setdefault(p, []).append(t)
    out: list[float | None] = []
    for t, p in exact:
        cands = by.get(p, [])
        j = int(np.argmin([abs(u - t) for u in cands])) if cands else -1
        if j < 0 or abs(cands[j] - t) > NEAR_US:
            out.append(None)
            continue
        out.append((cands.pop(j) - t) / 1e3)
    return out


def _listing(name: str, exact: list[tuple[float, int]], ear: list[tuple[float, int]],
             whole: list[tuple[float, int]]) -> None:
    """The exact notes the ear (with context) and the whole take's detector judge apart."""
    def ok(e: float | None) -> bool:
        return e is not None and abs(e) <= WITHIN_US / 1e3

    def fmt(e: float | None) -> str:
        return "unheard" if e is None else f"{e:+.1f} ms"

    for (t, p), a, b in zip(exact, _errors(ear, exact), _errors(whole, exact), strict=True):
        if ok(a) != ok(b):
            print(f"  {name}: key {p} at {t / 1e6:.3f} s: ear {fmt(a)}, whole take {fmt(b)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--random", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--loud", action="store_true", help="also the loud piece (every note at 118)")
    ap.add_argument("--seed", type=int, default=1, help="the truth's seed")
    ap.add_argument("--list", action="store_true",
                    help="list the notes the ear (with context) and the whole take judge apart")
    args = ap.parse_args()
    spec = load_spec("piano-88-grand")
    pieces = [(f"random {s}", random_piece(200 + s, args.seconds)) for s in args.random]
    if args.loud:
        pieces.append(("loud", loud_piece(args.seconds / 60, 118)))
    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    before, after = ONSET_WINDOW.before_us * 1e-6, ONSET_WINDOW.after_us * 1e-6
    cal = calibration(spec, args.seed)
    print(f"{'piece':10s} {'notes':>5s} {'ear':16s} {'<=20ms':>6s} {'off':>4s} {'unheard':>7s} "
          f"{'med ms':>6s} {'p99 ms':>6s} {'x rt':>5s}")
    for name, score in pieces:
        plan, rep = plan_for(score, spec, cal)
        with open_port("sim://", spec, truth_seed=args.seed, timing_sd_us=0, loudness_sd=0) as dev:
            rec = RecordingEar(dev, spec)
            res = play_closed_loop(dev, plan, rep.outcomes, lambda a: pitch.get(a, -1), lambda a: level.get(a, 0),
                                   LoopSettings(rate=0.0), ear=rec)  # fmt: skip
            rate = dev.audio_rate
        perf = res.performance
        assert perf is not None
        shift = perf.extra.get("stream_shift_us", 0)
        exact = sorted((h.t_us + shift, h.pitch) for h in perf.heard)
        audio_s = sum(len(b) for c in rec.calls if c[0] == "blocks" for b, _ in c[1]) / rate
        rows = []
        for label in ("with context", "without"):
            undo = _without_context() if label == "without" else (lambda: None)
            try:
                ear, wall = _replay(rec.calls, spec, rate)
            finally:
                undo()
            rows.append((label, [(h.t_us, h.pitch) for h in ear.ear.notes], wall))
        # the whole take's detector on the same audio, on the ear's clock
        clock = ear.ear.clock
        y = np.concatenate([b for c in rec.calls if c[0] == "blocks" for b, _ in c[1]])
        intended = sorted((clock.to_audio_s(t), p) for kind, (_k, t, p, _v) in
                          ((c[0], c[1]) for c in rec.calls if c[0] == "expect") if kind == "expect")
        t0 = time.perf_counter()
        ons = Detector(y, rate).detect_intended(intended, before, after, blind=[])
        rows.append(("whole take", [(clock.to_mcu_us(o.t_s), o.pitch) for o in ons], time.perf_counter() - t0))
        for label, heard, wall in rows:
            w, off, un, med, p99 = _score(heard, exact)
            print(f"{name:10s} {len(exact):5d} {label:16s} {w:6d} {off:4d} {un:7d} {med:6.2f} {p99:6.2f} "
                  f"{wall / audio_s:5.2f}", flush=True)
        if args.list:
            _listing(name, exact, rows[0][1], rows[2][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
