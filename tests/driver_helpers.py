"""Shared pieces of the driver tests: small plans and the safety checks on traces."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from robo_player.driver.stream import StreamResult
from robo_player.plan import Command, Op, Plan
from robo_player.sim import mcu_process as fwmod
from robo_player.spec.loader import load_spec
from robo_player.spec.model import PianoSpec

SPEC_88 = "piano-88-grand"
SPEC_61 = "piano-61-diy"


def spec(name: str = SPEC_88) -> PianoSpec:
    return load_spec(name)


def duty_steps(steps: list[tuple[int, int, str]], full: int, hold: int) -> list[Command]:
    """Commands from ``(gap_us, actuator, what)`` steps, unsorted: ``off`` a release,
    ``strike`` a 40 ms pulse at ``full`` then ``hold``, ``full``/``hold`` a level set
    (the duty-limit tests' random streams)."""
    t = 0
    cmds: list[Command] = []
    for dt, a, what in steps:
        t += dt
        if what == "off":
            cmds.append(Command(t, Op.RELEASE, a))
        elif what == "strike":
            cmds.append(Command(t, Op.PULSE_HOLD, a, full, 40_000, hold))
        else:
            cmds.append(Command(t, Op.SET, a, full if what == "full" else hold))
    return cmds


def make_plan(
    sp: PianoSpec,
    notes: int = 40,
    gap_us: int = 50_000,
    seed: int = 0,
    chord: int = 1,
    pulse_us: int = 25_000,
    busy_us: int = 200_000,
) -> Plan:
    """``notes`` strikes (in chords of ``chord``) every ``gap_us``, each released 60 ms
    later; a key is not struck again within ``busy_us``."""
    rng = random.Random(seed)
    cmds: list[Command] = []
    n = 0
    t = 200_000
    busy: dict[int, int] = {}  # key -> when it is free again (released and returned)
    while n < notes:
        free = [k for k in range(len(sp.keys)) if busy.get(k, 0) <= t]
        keys = rng.sample(free, chord)
        for k in keys:
            busy[k] = t + busy_us
        for k in keys[: notes - n]:
            key = sp.keys[k]
            drive = rng.randint(key.pwm_max // 2, key.pwm_max)
            hold = int(key.pwm_max * sp.strike.hold_duty)
            cmds.append(Command(t, Op.STRIKE, key.channel, drive, pulse_us, hold, note=n))
            cmds.append(Command(t + 60_000, Op.RELEASE, key.channel, note=n))
            n += 1
        t += gap_us
    plan = Plan(cmds, spec_name=sp.name, spec_hash=sp.spec_hash)
    plan.sort()
    return plan


def max_on_violations(
    changes: list[tuple[int, int, int]], clock_hz: int, max_on_us: int, slack_us: int = 2000
) -> list[tuple[int, int]]:
    """(actuator, on-time µs) of every coil that stayed on past ``max_on_us``."""
    on_since: dict[int, int] = {}
    bad: list[tuple[int, int]] = []
    for clock, a, level in sorted(changes, key=lambda ch: ch[0]):  # same tick: trace order
        if level and a not in on_since:
            on_since[a] = clock
        elif not level and a in on_since:
            dur = (clock - on_since.pop(a)) * 1_000_000 // clock_hz
            if dur > max_on_us + slack_us:
                bad.append((a, dur))
    if on_since:
        bad.extend((a, -1) for a in on_since)  # never switched off at all
    return bad


def spurious_actuations(
    changes: list[tuple[int, int, int]],
    sent: dict[int, list[tuple[int, int, int, int]]],
    clock_hz: int,
    slack_us: int = 20_000,
) -> list[tuple[int, int, int]]:
    """Output changes that turn a coil on (or to a level) no sent command asked for.

    ``sent``: actuator -> [(clock, drive, hold, pulse_us)] of the strikes the driver sent.
    """
    slack = slack_us * clock_hz // 1_000_000
    bad = []

    def near(a: int, b: int) -> bool:
        # the trace's clocks are extended past 2**32; the driver's outcomes carry the
        # MCU's 32-bit clock, so compare them modulo the wrap
        d = (a - b) % (1 << 32)
        return min(d, (1 << 32) - d) <= slack

    for clock, a, level in changes:
        if not level:
            continue
        ok = False
        for c, drive, hold, pulse in sent.get(a, []):
            if level == drive and near(clock, c):
                ok = True
            elif level == hold and near(clock, c + pulse * clock_hz // 1_000_000):
                ok = True
            if ok:
                break
        if not ok:
            bad.append((clock, a, level))
    return bad


def onsets_after(changes: list[tuple[int, int, int]], clock: float) -> int:
    """Rising edges (a coil switched on from off) in a trace after ``clock``."""
    level: dict[int, int] = {}
    n = 0
    for c, a, lv in sorted(changes, key=lambda ch: ch[0]):  # same tick: trace order
        n += bool(c > clock and lv and not level.get(a, 0))
        level[a] = lv
    return n


def sent_strikes(plan: Plan, result: StreamResult) -> dict[int, list[tuple[int, int, int, int]]]:
    out: dict[int, list[tuple[int, int, int, int]]] = {}
    for o in result.outcomes:
        c = plan.commands[o.index]
        if o.device_index >= 0 and c.op is Op.STRIKE:
            out.setdefault(c.actuator, []).append((o.clock, c.drive, c.hold, c.pulse_us))
    return out


def check_accounting(plan: Plan, result: StreamResult) -> None:
    """Every command from start_index on has exactly one outcome; 'unknown' only after a fault."""
    idx = [o.index for o in result.outcomes]
    assert idx == list(range(result.start_index, len(plan))), "each command exactly once"
    if not result.error:
        assert all(o.status != "unknown" and o.status != "not_sent" for o in result.outcomes)


# ---- the firmware builds and small C programs on its headers --------------------------

AVR_DIR = Path(__file__).resolve().parents[1] / "firmware" / "boards" / "avr"
CC = shutil.which("cc") or shutil.which("gcc")
HAVE_HOST = fwmod.HOST_BIN.exists() or CC is not None
needs_host = pytest.mark.skipif(not HAVE_HOST, reason="no host firmware and no C compiler")
HAVE_AVR = (fwmod.SIM_BIN.exists() and fwmod.AVR_ELF.exists()) or (
    shutil.which("avr-gcc") is not None and shutil.which("simavr") is not None
)
needs_avr = pytest.mark.skipif(not HAVE_AVR, reason="no AVR build and no avr-gcc/simavr")


def compile_on_avr_headers(d: Path, source: str) -> Path:
    """``source`` (C99, including headers of firmware/boards/avr) built in ``d`` with
    warnings as errors; skips without a C compiler."""
    if CC is None:
        pytest.skip("no C compiler")
    (d / "gen.c").write_text(source)
    subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{AVR_DIR}",
                    str(d / "gen.c"), "-o", str(d / "gen")], check=True)  # fmt: skip
    return d / "gen"


def stream_steps(dev: Any, cmds: Sequence[Command], tail_us: int, lead_us: int = 250_000,
                 step_us: int = 50_000) -> Iterator[int]:
    """Submit ``cmds`` ``lead_us`` ahead as a stream runs, advancing ``dev`` every
    ``step_us`` until ``tail_us`` past the last command; yields each step's time after
    its advance (the caller listens there)."""
    i, now = 0, cmds[0].t_us
    while i < len(cmds) or now < cmds[-1].t_us + tail_us:
        j = i
        while j < len(cmds) and cmds[j].t_us <= now + lead_us:
            j += 1
        if j > i:
            dev.submit(cmds[i:j])
            i = j
        dev.advance(now)
        yield now
        now += step_us
