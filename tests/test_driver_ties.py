"""A strike the plan puts on the tick where other pulses end stays there on the MCU.

The firmware times a pulse's end in its own ticks (strike clock + pulse_us), while the
driver maps each command's performance time to a clock through the clock sync (a rate
that is never exactly nominal) and the protocol's time codes (a gap within a unit of a
recent one). Either could put a strike a tick or a microsecond before the end of the
pulses it replaces: counted against the concurrency cap, refused (Chopin op. 25/8 on
piano-61-diy lost its last chord so on ``fw-avr://``, docs/hardware.md "Session 8").
"""

from __future__ import annotations

import pytest

from robo_player.driver import open_port
from robo_player.plan import Command, Op, Plan
from robo_player.protocol.messages import Op as WireOp
from robo_player.protocol.schedule import ScheduleEncoder, TimedCommand
from robo_player.spec import load_spec

PULSE_US = 35_000


def _waves_at_the_cap(n_waves: int) -> Plan:
    """Waves of ``max_concurrent`` strikes, each on the tick where the last wave's
    pulses end (allowed: an ending pulse is gone), at gaps that vary the rounding."""
    spec = load_spec("piano-61-diy")
    cap = spec.actuators.max_concurrent
    acts = [k.channel for k in spec.keys]
    cmds: list[Command] = []
    t = 300_000
    for w in range(n_waves):
        group = acts[(w % 2) * cap : (w % 2) * cap + cap]
        for a in group:
            cmds.append(Command(t, Op.PULSE_HOLD, a, drive=200, pulse_us=PULSE_US, hold=0))
            cmds.append(Command(t + PULSE_US + 20_000 + 997 * w, Op.RELEASE, a))
        t += PULSE_US if w % 3 != 2 else PULSE_US + 60_000 + 13 * w  # a rest now and then
    p = Plan(commands=cmds, spec_name=spec.name, spec_hash=spec.spec_hash)
    p.sort()
    return p


@pytest.mark.parametrize("ppm", [-60.0, 60.0])
def test_strikes_on_the_tick_where_pulses_end_are_not_refused(ppm: float) -> None:
    spec = load_spec("piano-61-diy")
    plan = _waves_at_the_cap(40)
    with open_port(f"vmcu://?ppm={ppm}&sensor=notes", spec) as dev:
        dev.play(plan)
        res = getattr(dev, "last_result", None)  # the firmware ports' stream result
    assert res is not None
    counts = res.counts()
    assert counts.get("refused_concurrency", 0) == 0, counts
    assert counts.get("played", 0) == len(plan.commands)


def test_encoder_keeps_a_command_at_or_after_not_before() -> None:
    enc = ScheduleEncoder(8, 4)  # 16 ticks a unit, as on the AVR
    # a recent gap of 300 units, then a command 301 units on: the time code would use
    # the recent 300 (one unit early) unless told it may not run before its clock
    base = 16 * 1000
    enc.add(TimedCommand(base, WireOp.STRIKE, 0, 100, 35_000, 0))
    enc.add(TimedCommand(base + 16 * 300, WireOp.STRIKE, 1, 100, 35_000, 0))
    loose = ScheduleEncoder(8, 4)
    loose.add(TimedCommand(base, WireOp.STRIKE, 0, 100, 35_000, 0))
    loose.add(TimedCommand(base + 16 * 300, WireOp.STRIKE, 1, 100, 35_000, 0))
    want = base + 16 * 601
    e_loose = loose.add(TimedCommand(want, WireOp.STRIKE, 2, 100, 35_000, 0))
    assert e_loose.clock == want - 16  # the time code's tolerance: a unit early
    e = enc.add(TimedCommand(want, WireOp.STRIKE, 2, 100, 35_000, 0), not_before=want)
    assert e.clock == want
    # a clock the timeline put a tick before the tie is raised to it
    e2 = enc.add(TimedCommand(want + 16 * 50 - 3, WireOp.STRIKE, 3, 100, 35_000, 0),
                 not_before=want + 16 * 50)  # fmt: skip
    assert e2.clock == want + 16 * 50
