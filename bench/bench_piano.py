"""Issue 2 targets on the simulated piano, printed as tables.

    .venv/bin/python bench/bench_piano.py [--seeds 1 2 3] [--spec piano-88-grand]

Timing and dynamics over the bundled music21 pieces and several truth seeds, for four
ways of playing: calibrated (the product), nominal curves (no calibration), a DIY
fixed delay (one latency for every note, velocity -> duty linear) and naive playback
(fire at the note time, velocity -> duty linear). Then calibration cost, the
no-silent-losses check and speed ratios (planning against mido parsing; simulation
against real time, without and with audio).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from robo_player.calibrator import calibrate
from robo_player.driver import open_port
from robo_player.midi import bundled_pieces, read_midi
from robo_player.plan import Command, Op, Plan
from robo_player.planner import plan as plan_for  # the one entry point, chosen by spec.family
from robo_player.report import match_heard
from robo_player.sim.audio import render_wav
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration


@dataclass
class _Outcome:  # the fields report.match_heard needs, for the baseline plans
    index: int
    pitch_out: int
    target_t_us: int
    intended_t_us: int
    velocity_in: int

    class fate:  # noqa: N801 - mimics the planner's Fate enum member
        name = "PLAYED"


def baseline_plan(score, spec, fixed_latency_us: int) -> tuple[Plan, list[_Outcome]]:
    """Velocity -> duty linear; strike at intended time minus one fixed latency."""
    delay = spec.timing.pipeline_delay_us
    cmds: list[Command] = []
    outs: list[_Outcome] = []
    hold_frac = spec.strike.hold_duty
    for i, n in enumerate(score.notes):
        if not spec.has_pitch(n.pitch):
            continue
        k = spec.key(n.pitch)
        t = n.onset_us + delay
        strike_t = max(0, t - fixed_latency_us)
        cmds.append(
            Command(
                strike_t,
                Op.STRIKE,
                k.channel,
                round(n.velocity / 127 * k.pwm_max),
                spec.strike.default_pulse_us,
                round(hold_frac * k.pwm_max),
                i,
            )
        )
        cmds.append(
            Command(
                max(strike_t + spec.strike.default_pulse_us, n.end_us + delay - fixed_latency_us),
                Op.RELEASE,
                k.channel,
                note=i,
            )
        )
        outs.append(_Outcome(i, n.pitch, t, t, n.velocity))
    plan = Plan(cmds, delay, spec.name, spec.spec_hash)
    plan.sort()
    return plan, outs


def errors(outcomes, heard) -> tuple[list[float], list[float], int]:
    # a wide window, so that the baselines' late notes are matched rather than lost
    matched = match_heard(outcomes, heard, window_us=500_000)
    on, vel, missing = [], [], 0
    for o in outcomes:
        if getattr(o.fate, "name", "") == "DROPPED":
            continue
        h = matched.get(o.index)
        if h is None:
            missing += 1
            continue
        if o.fate.name == "PLAYED":
            on.append(abs(h.t_us - o.intended_t_us) / 1000)
            vel.append(abs(h.velocity - o.velocity_in))
    return on, vel, missing


def _best(reps: int, fn) -> float:
    """Shortest wall time of ``reps`` calls of ``fn`` (s)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--spec", default="piano-88-grand")
    args = ap.parse_args()
    spec = load_spec(args.spec)
    pieces = bundled_pieces()
    scores = {p.stem: read_midi(p) for p in pieces}
    nominal = Calibration.nominal(spec)
    # DIY builds use one fixed delay: the nominal latency at mid drive
    fixed_latency = int(nominal.curve(spec.lowest).latency_at(0.6))

    rows: dict[str, dict[str, list]] = {
        m: {"on": [], "vel": [], "missing": [], "altered": [], "dropped": []}
        for m in ("calibrated", "nominal", "fixed delay (DIY)", "naive")
    }
    strikes, cal_time, losses_ok = [], [], True
    for seed in args.seeds:
        with open_port("sim://?sensor=notes", spec, truth_seed=seed) as dev:  # note-level sensor: the figures documented with this bench (audio: bench_hearing.py)
            t0 = time.perf_counter()
            cal = calibrate(dev, spec)
            cal_time.append(time.perf_counter() - t0)
        strikes.append(cal.strikes_per_key)
        for score in scores.values():
            for mode in rows:
                if mode in ("calibrated", "nominal"):
                    plan, rep = plan_for(score, spec, cal if mode == "calibrated" else None)
                    outcomes = rep.outcomes
                    j = rep.to_json()
                    ok = (
                        j["notes_in"] == j["notes_played"] + j["notes_altered"] + j["notes_dropped"]
                    )
                    ok = ok and all(d.get("reason") for d in j["drops"])
                    losses_ok &= ok
                    rows[mode]["altered"].append(j["notes_altered"])
                    rows[mode]["dropped"].append(j["notes_dropped"])
                else:
                    lat = fixed_latency if mode.startswith("fixed") else 0
                    plan, outcomes = baseline_plan(score, spec, lat)
                with open_port("sim://", spec, truth_seed=seed) as dev:
                    perf = dev.play(plan)
                on, vel, missing = errors(outcomes, perf.heard)
                rows[mode]["on"] += on
                rows[mode]["vel"] += vel
                rows[mode]["missing"].append(missing)

    print(
        f"\n## Timing and dynamics: {args.spec}, pieces {', '.join(scores)}, truth seeds {args.seeds}"
    )
    print(
        f"{'mode':<20} {'onset mean ms':>13} {'p99 ms':>9} {'max ms':>9} {'vel err mean':>12} "
        f"{'vel p99':>8} {'unheard':>8} {'altered':>8} {'dropped':>8}"
    )
    for mode, r in rows.items():
        on = np.asarray(r["on"]) if r["on"] else np.asarray([np.nan])
        vel = np.asarray(r["vel"]) if r["vel"] else np.asarray([np.nan])
        print(
            f"{mode:<20} {on.mean():13.3f} {np.percentile(on, 99):9.3f} {on.max():9.3f} "
            f"{vel.mean():12.2f} {np.percentile(vel, 99):8.2f} {sum(r['missing']):8d} "
            f"{sum(r['altered']) if r['altered'] else '-':>8} {sum(r['dropped']) if r['dropped'] else '-':>8}"
        )
    cal_on = np.asarray(rows["calibrated"]["on"])
    cal_vel = np.asarray(rows["calibrated"]["vel"])
    print(
        "targets: calibrated onset p99 <= 1.0 ms -> "
        f"{np.percentile(cal_on, 99):.3f} ms ({'met' if np.percentile(cal_on, 99) <= 1.0 else 'MISSED'}); "
        f"mean velocity error <= 2 -> {cal_vel.mean():.2f} ({'met' if cal_vel.mean() <= 2 else 'MISSED'})"
    )
    print(
        "anchors: Boesendorfer CEUS +-2 ms; Disklavier -20..+30 ms; DIY solenoid pianos one fixed delay"
    )

    print("\n## Calibration cost")
    print(
        f"strikes per key: mean {statistics.mean(strikes):.2f}, max {max(strikes):.2f} (target <= 12); "
        f"host time per 88-key calibration {statistics.mean(cal_time):.2f} s"
    )
    print(
        f"\n## No silent losses: notes_in = played + altered + dropped and every drop has a reason: "
        f"{'yes' if losses_ok else 'NO'}"
    )

    ratios: list[tuple[float, float, float]] = []
    print("\n## Speed (ratios measured in this run)")
    print(
        f"{'piece':<28} {'notes':>6} {'parse ms':>9} {'plan ms':>8} {'plan/parse':>10} "
        f"{'sim xRT':>9} {'sim+audio xRT':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for p in pieces:
            # best of `reps`: the least disturbed run of each, on a shared machine
            reps = 5
            parse = _best(reps, lambda p=p: mido.MidiFile(p))
            score = scores[p.stem]
            plan, _ = plan_for(score, spec, nominal)
            planning = _best(reps, lambda score=score: plan_for(score, spec, nominal))
            with open_port("sim://", spec, truth_seed=1) as dev:
                perf = dev.play(plan)
                sim = _best(reps, lambda dev=dev, plan=plan: dev.play(plan))
            audio = _best(2, lambda perf=perf: render_wav(perf, Path(tmp) / "a.wav", spec=spec))
            dur = plan.end_us / 1e6
            ratios.append((planning / parse, dur / sim, dur / (sim + audio)))
            print(
                f"{p.stem:<28} {len(score.notes):6d} {parse * 1e3:9.2f} {planning * 1e3:8.2f} "
                f"{planning / parse:10.2f} {dur / sim:9.0f} {dur / (sim + audio):13.0f}"
            )
    print("targets: plan/parse <= 1.0; sim >= 1000x real time; sim+audio >= 50x real time")

    # ---- the one summary table: every target of the issue, measured in this run
    def pct(r: dict, q: float) -> float:
        return float(np.percentile(r["on"], q)) if r["on"] else float("nan")

    worst_plan = max(x[0] for x in ratios)
    worst_sim = min(x[1] for x in ratios)
    worst_audio = min(x[2] for x in ratios)
    table = [
        (
            "onset error p99, calibrated (ms)",
            "<= 1.0",
            pct(rows["calibrated"], 99),
            pct(rows["calibrated"], 99) <= 1.0,
        ),
        (
            "mean velocity error, calibrated",
            "<= 2",
            float(np.mean(cal_vel)),
            float(np.mean(cal_vel)) <= 2,
        ),
        ("onset error p99, nominal curves (ms)", "baseline", pct(rows["nominal"], 99), None),
        (
            "mean velocity error, nominal curves",
            "baseline",
            float(np.mean(rows["nominal"]["vel"])),
            None,
        ),
        (
            "onset error p99, DIY fixed delay (ms)",
            "baseline",
            pct(rows["fixed delay (DIY)"], 99),
            None,
        ),
        ("onset error p99, naive (ms)", "baseline", pct(rows["naive"], 99), None),
        ("mean velocity error, naive", "baseline", float(np.mean(rows["naive"]["vel"])), None),
        ("calibration strikes per key", "<= 12", max(strikes), max(strikes) <= 12),
        ("no silent losses (1 = yes)", "= 1", float(losses_ok), losses_ok),
        ("planning / mido parsing (worst piece)", "<= 1.0", worst_plan, worst_plan <= 1.0),
        ("simulation x real time (worst piece)", ">= 1000", worst_sim, worst_sim >= 1000),
        ("simulation + audio x real time (worst)", ">= 50", worst_audio, worst_audio >= 50),
    ]
    print(f"\n## Summary: {args.spec}, truth seeds {args.seeds}, pieces {', '.join(scores)}")
    print(f"{'measure':<42} {'target':>9} {'measured':>10}  status")
    for name, target, value, ok in table:
        status = "-" if ok is None else ("met" if ok else "MISSED")
        print(f"{name:<42} {target:>9} {value:10.3f}  {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
