# ruff: noqa: T201  (a command-line script: it prints its results)
"""PCA9685 actuation error under simavr: a plan on the 88-key spec (six PCA9685 boards)
through fw-avr://, every channel change in the trace against its command.

    .venv/bin/python firmware/sim/pca_check.py [NOTES] [GAP_US] [CHORD]

Prints the error (µs, trace clock minus the commanded clock) of every strike, pulse end
and release, overall and by kind; with CHORD > 1 the notes of a chord share one clock
and their writes follow one another on the bus (about 200 µs each).
"""

from __future__ import annotations

import random
import sys

from robo_player.driver.ports import open_port
from robo_player.plan import Command, Op, Plan
from robo_player.spec.loader import load_spec

HZ = 16_000_000


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> None:
    notes = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    gap_us = int(sys.argv[2]) if len(sys.argv) > 2 else 12_000
    chord = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    sp = load_spec("piano-88-grand")
    rng = random.Random(1)
    cmds: list[Command] = []
    t = 200_000
    free_at: dict[int, int] = {}  # a key is not struck again before it was released
    for n in range(0, notes, chord):
        keys = [k for k in range(len(sp.keys)) if free_at.get(k, 0) <= t]
        for k in rng.sample(keys, chord):
            free_at[k] = t + 50_000
            key = sp.keys[k]
            drive = rng.randint(key.pwm_max // 2, key.pwm_max)
            hold = int(key.pwm_max * sp.strike.hold_duty)
            cmds.append(Command(t, Op.STRIKE, key.channel, drive, 20_000, hold, note=n))
            cmds.append(Command(t + 40_000, Op.RELEASE, key.channel, note=n))
        t += gap_us
    plan = Plan(cmds, spec_name=sp.name, spec_hash=sp.spec_hash)
    plan.sort()
    with open_port("fw-avr://", sp) as dev:
        perf = dev.play(plan)
        res, tr = dev.last_result, dev.last_trace
    assert tr is not None
    by_act: dict[int, list[int]] = {}
    for clock, a, _lv in sorted(tr.changes):
        by_act.setdefault(a, []).append(clock)
    want: dict[int, list[tuple[int, str]]] = {}
    for o in res.outcomes:
        c = plan.commands[o.index]
        if c.op is Op.STRIKE:
            want.setdefault(c.actuator, []).append((o.clock, "strike"))
            want[c.actuator].append((o.clock + c.pulse_us * HZ // 1_000_000, "pulse end"))
        elif c.op is Op.RELEASE:
            want.setdefault(c.actuator, []).append((o.clock, "release"))
    errs: dict[str, list[float]] = {}
    for a, ws in want.items():
        got = by_act.get(a, [])
        for (w, kind), g in zip(sorted(ws), got, strict=False):
            errs.setdefault(kind, []).append((g - w) * 1e6 / HZ)
    every = [e for v in errs.values() for e in v]
    print(f"{notes} notes, chord {chord}, gap {gap_us} us: {res.counts()}")
    for kind, v in [*errs.items(), ("all", every)]:
        a = [abs(e) for e in v]
        print(f"  {kind:9s} n={len(v):4d}  min {min(v):+7.1f}  mean {sum(v) / len(v):+7.1f}"
              f"  max {max(v):+7.1f}  mean |e| {sum(a) / len(a):6.1f}"
              f"  p99 |e| {pct(a, 0.99):6.1f}  max |e| {max(a):6.1f} us")  # fmt: skip
    print("  report actuation_error_us:", perf.extra["actuation_error_us"])


if __name__ == "__main__":
    main()
