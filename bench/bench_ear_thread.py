"""Issue 11 §4: the live ear in the closed loop's thread or in its own, on a port that
plays on the wall clock (fw-host://: the C firmware's host build, a real-time process).

    .venv/bin/python bench/bench_ear_thread.py [--seconds 30] [--lead-ms 1000 250] [--ear thread loop]
        [--port fw-host] [--seed 1]

The loud piece of bench_closed_loop.py (every note at velocity 118, chords among ringing
notes: the detector's longest batches), its first ``--seconds``, planned on the nominal
calibration, played with the closed loop through the room's microphone (the audio ear's
settings, ``--lead-ms`` ahead). For each lead and each place of the ear's work (``loop``:
in the loop's thread, as before session 16; ``thread``: its own), one row: the commands
the firmware played and how many it counted late (a strike the loop submitted too late,
or one the firmware dispatched more than its slack after its time), how many of the
commands went out with less than the stream's minimum lead to spare (``short``: when late
> 0 and short is 0, the host sent every command in time and the late ones are the board's
dispatch; on fw-host that is the host-build firmware's process not scheduled within its
10 ms slack on a loaded machine, which a real MCU does not share),
how far the stream had run past each step's time when the loop came to submit (p95 / max
ms: the loop's lateness; with the ear in its own thread, what it waits for the GIL), the
ear's lag (how long after a step's audio came the ear had heard it: p95 / max ms; in the
loop's thread, how long the loop waited for it), the ear's cost (x real time) and the
notes heard / used. Wall-clock figures: they depend on the machine's load (printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from bench_closed_loop import loud_piece

from robo_player.driver import open_port
from robo_player.hearing.live_audio import AudioEar, click_of
from robo_player.hearing.loop import AUDIO_SETTINGS, play_closed_loop
from robo_player.planner import plan as plan_for
from robo_player.spec import load_spec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--lead-ms", type=float, nargs="+", default=[1000.0, 250.0])
    ap.add_argument("--ear", choices=("thread", "loop"), nargs="+", default=["thread", "loop"])
    ap.add_argument("--port", default="fw-host")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    spec = load_spec("piano-88-grand")
    score = loud_piece(args.seconds / 60, 118)
    plan, rep = plan_for(score, spec, None)
    pitch = {k.channel: k.pitch for k in spec.keys}
    level = {k.channel: k.pwm_max for k in spec.keys}
    print(f"loud piece: {len(score.notes)} notes, {args.seconds:g} s, on {args.port}://?heating=1, truth seed "
          f"{args.seed}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'lead ms':>7s} {'ear in':>6s} {'played':>6s} {'late':>4s} {'short':>5s} {'behind p95/max ms':>17s} "
          f"{'ear lag p95/max ms':>18s} {'ear x rt':>8s} {'hurried':>9s} {'heard/used':>10s} {'load':>4s}")
    for lead in args.lead_ms:
        for where in args.ear:
            st = replace(AUDIO_SETTINGS, lead_us=int(lead * 1000))
            with open_port(f"{args.port}://?heating=1", spec, truth_seed=args.seed) as dev:
                ear = AudioEar(dev.audio_so_far, dev.audio_rate, click_of(spec), where=f"{args.port}://",
                               threaded=where == "thread")  # fmt: skip
                res = play_closed_loop(dev, plan, rep.outcomes, lambda a: pitch.get(a, -1), lambda a: level.get(a, 0),
                                       st, ear=ear)  # fmt: skip
            perf = res.performance
            assert perf is not None
            counts = perf.extra.get("commands", {})
            played = counts.get("played", 0)
            late = sum(v for k, v in counts.items() if k.startswith("late"))
            short = int(perf.extra.get("short_lead", 0))
            e, b = res.ear, res.behind
            print(f"{lead:7.0f} {where:>6s} {played:6d} {late:4d} {short:5d} {b['p95_ms']:8.1f} / {b['max_ms']:6.1f} "
                  f"{e['lag']['p95_ms']:9.1f} / {e['lag']['max_ms']:6.1f} {e['x_real_time']:8.3f} {e['hurried']:4d}/{e['windows']:<4d} "
                  f"{res.heard_live:4d}/{res.used:<5d} {os.getloadavg()[0]:4.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
