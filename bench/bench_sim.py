"""Speed of the simulated piano, as ratios to real time.

    .venv/bin/python bench/bench_sim.py [--notes 3000] [--seconds 180] [--repeat 5]

A synthetic piece (random keys across the middle of the keyboard, random loudness,
held 50-400 ms, pedal down 1.5 s of every 2 s) is played on ``sim://`` (plan
expansion + physics + microphone) and rendered to a 44.1 kHz WAV, in the plain voice
and in the rich one (``sim://?voice=rich``), with the ratio of their render times
(``--notes 500 --seconds 30``: a 30 s take). Targets: physics >= 1000x real time,
audio >= 50x (the plain voice).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from robo_player.plan import Command, Op, Plan
from robo_player.sim import open_sim
from robo_player.sim.audio import Voice, render_wav
from robo_player.spec import load_spec


def synthetic_plan(n_notes: int, seconds: float, seed: int = 1) -> Plan:
    spec = load_spec("piano-88-grand")
    rng = np.random.default_rng(seed)
    onsets = np.sort(rng.uniform(0.3, seconds - 0.5, n_notes)) * 1e6
    cmds: list[Command] = []
    busy: dict[int, int] = {}
    for i, t in enumerate(onsets.astype(int).tolist()):
        k = spec.keys[int(rng.integers(20, 70))]
        if busy.get(k.channel, -1) > t - 100_000:
            continue  # keep the repeat gap, as a planner would
        hold = int(rng.integers(50_000, 400_000))
        drive = int(rng.uniform(0.3, 1.0) * k.pwm_max)
        cmds.append(Command(t, Op.STRIKE, k.channel, drive, 35_000, int(0.35 * k.pwm_max), i))
        cmds.append(Command(t + hold, Op.RELEASE, k.channel, note=i))
        busy[k.channel] = t + hold
    assert spec.pedal is not None
    for j in range(0, int(seconds * 1e6), 2_000_000):
        cmds.append(Command(j, Op.SET, spec.pedal.channel, spec.pedal.pwm_max))
        cmds.append(Command(j + 1_500_000, Op.SET, spec.pedal.channel, 0))
    plan = Plan(cmds, 300_000, spec.name, spec.spec_hash)
    plan.sort()
    return plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    spec = load_spec("piano-88-grand")
    plan = synthetic_plan(args.notes, args.seconds)
    strikes = sum(c.op is Op.STRIKE for c in plan)
    best = float("inf")
    perf = None
    for _ in range(args.repeat):
        with open_sim("sim://", spec, truth_seed=1) as dev:
            t0 = time.perf_counter()
            perf = dev.play(plan)
            best = min(best, time.perf_counter() - t0)
    assert perf is not None
    music_s = plan.end_us / 1e6
    print(
        f"piece: {music_s:.1f} s, {strikes} strikes, {len(plan)} commands, {len(perf.heard)} heard"
    )
    print(
        f"physics (sim:// play, best of {args.repeat}): {best * 1e3:.1f} ms  "
        f"= {music_s / best:,.0f}x real time (target >= 1000x)"
    )
    took = {}
    for voice in Voice:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            render_wav(perf, Path(tmp) / "bench.wav", spec=spec, voice=voice)
            took[voice] = dt = time.perf_counter() - t0
            audio_s = (Path(tmp) / "bench.wav").stat().st_size / 2 / 44100
        print(
            f"audio (render_wav, 44.1 kHz, {voice.value} voice): {dt:.2f} s for {audio_s:.1f} s of audio "
            f"= {audio_s / dt:,.0f}x real time" + (" (target >= 50x)" if voice is Voice.PLAIN else "")
        )
    print(f"rich / plain render time: {took[Voice.RICH] / took[Voice.PLAIN]:.1f}x")


if __name__ == "__main__":
    main()
