"""Live latency: MIDI message -> heard onset, per latency mode, in virtual time.

Time-stamped note messages (random pitches, velocities from ``--min-velocity`` to 127,
note-offs) go through the live path (``LivePlanner`` + ``LiveSession``) into a device in
virtual time; the simulated microphone's heard onsets are matched to the messages (same
key, nearest to the planned sound). Per mode: latency (heard - message) mean, jitter (std,
p99 of |latency - median|), and for fixed mode the deviation from ``D`` (p50, p99, max).
Anchors (docs/live.md): a player accepts about 10 ms with about 1 ms of jitter; the
piano's own action takes 25..130 ms by velocity, so fixed mode aims at a constant ``D``
with jitter near 1 ms, lowest mode at the smallest latency per note.

The simulator's keys are calibrated first (``calibrate_session`` on the same device's
hidden truth, only the keys played), as a user does before playing.

    .venv/bin/python bench/bench_live.py                      # sim://, both modes
    .venv/bin/python bench/bench_live.py --port vmcu:// --notes 150
    .venv/bin/python bench/bench_live.py --port fw-host:// --realtime --notes 100 --gap-s 0.03 0.07

issue 12's targets as one table: bench/bench_live_targets.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

import mido

from robo_player.calibrator import calibrate_session
from robo_player.driver.ports import open_port
from robo_player.live import LatencyMode, LiveOptions, LivePlanner
from robo_player.live.family import live_planner
from robo_player.live.measure import latencies
from robo_player.live.session import run_realtime, run_virtual
from robo_player.spec import load_spec


def events(
    n: int, pitches: list[int], min_vel: int, seed: int, gap_s: tuple[float, float] = (0.05, 0.25)
) -> list[tuple[float, Any]]:
    rng = random.Random(seed)
    out: list[tuple[float, Any]] = []
    t = 0.3
    free: dict[int, float] = {}
    for _ in range(n):
        t += rng.uniform(*gap_s)
        p = rng.choice([q for q in pitches if free.get(q, 0.0) <= t] or pitches)
        v = rng.randint(min_vel, 127)
        dur = rng.uniform(0.08, 0.4)
        free[p] = t + dur + 0.3
        out.append((t, mido.Message("note_on", note=p, velocity=v)))
        out.append((t + dur, mido.Message("note_off", note=p)))
    out.sort(key=lambda e: e[0])
    return out


def bench_pitches(spec: Any) -> list[int]:
    """Two octaves from an octave above the lowest note (a piano's keys, a guitar's
    strings and frets), within the instrument."""
    lo = spec.lowest + 12
    return [p for p in range(lo, min(lo + 24, spec.highest + 1)) if spec.has_pitch(p)]


def calibrate(spec: Any, pitches: list[int], truth_seed: int, seed: int) -> Any:
    """The simulator calibrated on its hidden truth as a user does before playing: a
    piano's keys played, a guitar's or bass's pickers and fret contacts."""
    with open_port("sim://?sensor=notes", spec, truth_seed=truth_seed) as dev:  # note-level sensor: the figures documented with this bench (audio: bench_hearing.py)
        if spec.family == "piano":
            cal, _ = calibrate_session(dev, spec, pitches=pitches, seed=seed)
        else:
            from robo_player.calibrator.guitar import calibrate_guitar

            cal, _ = calibrate_guitar(dev, spec)
    return cal


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class TimedSource:
    """Events replayed on the wall clock like a port; notes how late each was polled."""

    def __init__(self, evs: list[tuple[float, Any]]) -> None:
        self.evs = list(evs)
        self.t0: float | None = None
        self.wait_s: list[float] = []  # per note-on: poll time - its due time
        self.other_wait_s: list[float] = []  # ... and per other message
        self.arrived_at: float | None = None  # when the message polled last was due

    def poll(self) -> Any:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        if self.evs and self.evs[0][0] <= now - self.t0:
            t, m = self.evs.pop(0)
            self.arrived_at = self.t0 + t
            if m.type == "note_on":
                self.wait_s.append(now - self.t0 - t)
            else:
                self.other_wait_s.append(now - self.t0 - t)
            return m
        return None

    def wait(self, timeout_s: float) -> None:
        if self.t0 is not None and self.evs:
            timeout_s = min(timeout_s, max(0.0, self.t0 + self.evs[0][0] - time.perf_counter()))
        if timeout_s > 0:
            time.sleep(timeout_s)

    def close(self) -> None:
        pass


def run_mode(spec: Any, cal: Any, port: str, mode: LatencyMode, evs: list, args: Any) -> dict:
    opts = LiveOptions(mode=mode, min_velocity=args.min_velocity, lead_us=args.lead_us)
    planner = live_planner(spec, cal, opts)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    src: TimedSource | None = None
    kw = {"truth_seed": args.truth_seed} if port.startswith("sim") else {}
    with open_port(port, spec, **kw) as dev:
        if args.realtime:
            src = TimedSource(evs)
            end = evs[-1][0] + 0.5

            def until(_: Any) -> bool:
                return src.t0 is not None and time.perf_counter() - src.t0 > end

            perf, session = run_realtime(dev, planner, src, until=until)
        else:
            perf, session = run_virtual(dev, planner, evs)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    lat: list[float] = []
    by_vel: dict[str, list[float]] = {}
    for m in latencies(perf, session, planner):
        ms = m.latency_us / 1000
        lat.append(ms)
        band = "<64" if m.velocity < 64 else "64-95" if m.velocity < 96 else ">=96"
        by_vel.setdefault(band, []).append(ms)
    med = statistics.median(lat)
    res: dict[str, Any] = {
        "mode": mode.value,
        "port": port,
        "notes_in": planner.stats.notes_in,
        "outcomes": dict(planner.stats.outcomes),
        "matched": len(lat),
        "latency_ms": {
            "mean": round(statistics.fmean(lat), 2),
            "std": round(statistics.pstdev(lat), 2),
            "p99_abs_dev": round(pct([abs(x - med) for x in lat], 0.99), 2),
            "min": round(min(lat), 2),
            "max": round(max(lat), 2),
        },
        "by_velocity_mean_ms": {
            k: round(statistics.fmean(v), 1) for k, v in sorted(by_vel.items())
        },
        "host_latency_ms": {  # message handled -> its commands written to the device
            "p50": round(pct(session.host_us, 0.5) / 1000, 3),
            "p99": round(pct(session.host_us, 0.99) / 1000, 3),
            "max": round(max(session.host_us) / 1000, 3),
            "n": len(session.host_us),
        }
        if session.host_us
        else None,
        "commands": perf.extra.get("commands"),
        "wall_s": round(wall, 2),
    }
    if src is not None:
        # poll wait (message due -> polled) + handling (-> commands written), per note-on
        # that sent commands at once (lowest mode; fixed mode sends strikes later)
        waits = [w * 1e3 for w in src.wait_s]
        res["poll_wait_ms"] = {"p50": round(pct(waits, 0.5), 3), "p99": round(pct(waits, 0.99), 3),
                               "max": round(max(waits), 3)}  # fmt: skip
        res["cpu_percent_of_one_core"] = round(100 * cpu / wall, 1)
        res["notes_per_s"] = round(planner.stats.notes_in / max(1e-9, evs[-1][0]), 1)
    if mode is LatencyMode.FIXED:
        d = planner.latency_us / 1000
        dev = [abs(x - d) for x in lat]
        res["D_ms"] = round(d, 2)
        res["deviation_from_D_ms"] = {
            "p50": round(pct(dev, 0.5), 2),
            "p99": round(pct(dev, 0.99), 2),
            "max": round(max(dev), 2),
        }
    return res


def run_panic(spec: Any, port: str, args: Any) -> dict:
    """Held chord, then CC 123 in real time: when did the last output go off (the
    firmware's trace, aligned on the chord's first strike) after CC 123 was polled?"""
    evs = [(0.2, mido.Message("note_on", note=spec.lowest + 12 + 2 * k, velocity=100))
           for k in range(8)]  # fmt: skip
    evs.append((0.7, mido.Message("control_change", control=123, value=0)))
    planner = LivePlanner(spec, None, LiveOptions(mode=LatencyMode.LOWEST, lead_us=args.lead_us))
    src = TimedSource(evs)

    def until(_: Any) -> bool:
        return src.t0 is not None and time.perf_counter() - src.t0 > 1.2

    with open_port(port, spec) as dev:
        perf, session = run_realtime(dev, planner, src, until=until, record=True)
        trace = getattr(dev, "last_trace", None)
    t_cc = next(t for t, m in session.inbox if m.type == "control_change")
    first = next(c for c in session.sent if c.op.value == "pulse_hold")
    if trace is None or not trace.changes:
        return {"panic": "no trace on this port"}
    on = next(ch for ch in trace.changes if ch[1] == first.actuator and ch[2] > 0)

    def t_us(clock: int) -> float:
        return first.t_us + (clock - on[0]) * 1e6 / trace.clock_hz

    level: dict[int, int] = {}
    last_off = None
    for clock, act, lvl in trace.changes:
        was_on = any(v > 0 for v in level.values())
        level[act] = lvl
        if was_on and not any(v > 0 for v in level.values()):
            last_off = t_us(clock)
    assert last_off is not None
    return {"port": port, "panic_all_off_ms_after_cc123": round((last_off - t_cc) / 1000, 2),
            "cc123_poll_wait_ms": round(1000 * src.other_wait_s[-1], 2),
            "outcomes": dict(planner.stats.outcomes), "commands": perf.extra.get("commands")}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="piano-61-diy")
    ap.add_argument("--port", default="sim://")
    ap.add_argument("--notes", type=int, default=300)
    ap.add_argument("--min-velocity", type=int, default=64)
    ap.add_argument("--lead-us", type=int, default=3000)
    ap.add_argument("--truth-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument(
        "--realtime", action="store_true",
        help="replay on the wall clock (fw-host://): poll wait, host latency, CPU",
    )  # fmt: skip
    ap.add_argument("--panic", action="store_true",
                    help="real time: a held chord, then CC 123: all-off time (needs a trace)")  # fmt: skip
    ap.add_argument("--gap-s", type=float, nargs=2, default=(0.05, 0.25),
                    help="range of the time between notes (s)")  # fmt: skip
    args = ap.parse_args()
    spec = load_spec(args.spec)
    if args.panic:
        print(json.dumps(run_panic(spec, args.port, args)))
        return 0
    pitches = bench_pitches(spec)
    t0 = time.perf_counter()
    cal = calibrate(spec, pitches, args.truth_seed, args.seed)
    print(f"calibrated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    evs = events(args.notes, pitches, args.min_velocity, args.seed, tuple(args.gap_s))
    out = [run_mode(spec, cal, args.port, m, evs, args) for m in LatencyMode]
    for r in out:
        print(json.dumps(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
