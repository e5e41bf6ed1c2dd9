"""The device contract (tests/test_device_contract.py) for ``sim://`` with a guitar or
bass spec: a stream takes commands while it plays, every command is accounted for,
close turns everything off, bad commands (and a carriage sent past its travel) are
refused with none of their chunk taken."""

from __future__ import annotations

from typing import Any

import pytest

from robo_player.driver.ports import open_port
from robo_player.errors import PlanError, TransportError
from robo_player.plan import Command, Op, Plan
from robo_player.spec import load_spec
from robo_player.spec.guitar import GuitarSpec, press_position_mm

SPECS = ["guitar-matrix", "guitar-slider", "guitar-slider-servo", "bass-4"]
GAP_US = 60_000


def _spec(name: str) -> GuitarSpec:
    return load_spec(name)  # type: ignore[no-any-return]


def _stream(spec: GuitarSpec, start: int, n: int, hold_us: int = 300_000) -> list[Command]:
    """A fretted note on string 0 (a carriage move first on a slider), then ``n`` picks
    every 60 ms over the other strings, each damped 150 ms later (sorted as a plan)."""
    cmds: list[Command] = []
    st = spec.strings[0]
    if st.carriage is not None and st.presser is not None:
        car = spec.actuators[st.carriage.channel]
        pos = round(press_position_mm(spec.neck.scale_length_mm, 3) / car.travel_mm * car.pwm_max)
        cmds.append(Command(start, Op.MOVE, car.index, position=pos))
        press = st.presser.channel
    else:
        press = (st.fret_channels or ())[2]
    pa = spec.actuators[press]
    cmds += [Command(start + 200_000, Op.PULSE_HOLD, press, pa.pwm_max, 20_000, pa.hold_counts),
             Command(start + 200_000 + hold_us, Op.RELEASE, press)]  # fmt: skip
    others = list(range(1, len(spec.strings)))
    for i in range(n + 1):
        s = 0 if i == 0 else others[(i - 1) % len(others)]
        t = start + 250_000 if i == 0 else start + i * GAP_US
        pk = spec.actuators[spec.strings[s].picker.channel]
        dm = spec.actuators[spec.strings[s].damper.channel]
        cmds += [Command(t, Op.PULSE_HOLD, pk.index, pk.pwm_max * 3 // 4, 15_000, 0, note=i),
                 Command(t + 150_000, Op.PULSE_HOLD, dm.index, dm.pwm_max, 30_000, 0, note=i)]  # fmt: skip
    plan = Plan(cmds)
    plan.sort()
    return plan.commands


def _chunks(cmds: list[Command], *bounds: int) -> list[list[Command]]:
    out: list[list[Command]] = [[] for _ in range(len(bounds) + 1)]
    for c in cmds:
        out[sum(c.t_us >= b for b in bounds)].append(c)
    return out


def _accounted(perf: Any, n: int) -> dict[str, int]:
    counts: dict[str, int] = perf.extra["commands"]
    assert sum(counts.values()) == n, counts
    return counts


@pytest.mark.parametrize("name", SPECS)
def test_commands_submitted_while_playing_all_play(name: str) -> None:
    spec = _spec(name)
    cmds = _stream(spec, 100_000, 12)
    c0, c1, c2 = _chunks(cmds, 400_000, 700_000)
    with open_port("sim://", spec) as dev:
        assert dev.now_us() is None
        dev.submit(c0)
        dev.advance(350_000)
        dev.submit(c1)
        dev.advance(650_000)
        dev.submit(c2)
        perf = dev.drain()
        assert _accounted(perf, len(cmds)) == {"played": len(cmds)}
        assert dev.energised() == []
    with open_port("sim://", spec) as whole:
        ref = whole.play(Plan(list(cmds), spec_name=spec.name, spec_hash=spec.spec_hash))
    assert [(h.t_us, h.pitch) for h in perf.heard] == [(h.t_us, h.pitch) for h in ref.heard]
    assert len(perf.heard) == 13  # every pick, the fretted one at its fret
    assert spec.open_pitch(0) + 3 in [h.pitch for h in perf.heard]
    assert perf.extra["carriage_faults"] == 0 and perf.extra["buzzed_notes"] == 0


@pytest.mark.parametrize("name", SPECS)
def test_every_command_is_accounted_for_late_ones_too(name: str) -> None:
    spec = _spec(name)
    cmds = _stream(spec, 100_000, 12)
    early, missed, rest = _chunks(cmds, 400_000, 600_000)
    rest = [Command(c.t_us + 600_000, c.op, c.actuator, c.drive, c.pulse_us, c.hold, c.note,
                    c.position) for c in rest]  # fmt: skip
    with open_port("sim://", spec) as dev:
        dev.submit(early)
        dev.advance(800_000)
        dev.submit(missed)
        dev.submit(rest)
        perf = dev.drain()
        counts = _accounted(perf, len(cmds))
        assert dev.energised() == []
    late_rel = sum(1 for c in missed if c.op is Op.RELEASE)
    assert counts["played"] == len(early) + len(rest)
    assert counts["late"] == len(missed) - late_rel and counts.get("late_release", 0) == late_rel


@pytest.mark.parametrize("name", SPECS)
def test_close_mid_stream_turns_everything_off(name: str) -> None:
    spec = _spec(name)
    cmds = _stream(spec, 100_000, 10, hold_us=3_000_000)  # the fret held 3 s: on at close
    dev = open_port("sim://", spec)
    dev.submit(cmds)
    dev.advance(500_000)
    dev.close()
    assert dev.energised() == []
    perf = dev.last_performance
    assert perf is not None
    counts = _accounted(perf, len(cmds))
    assert 0 < counts.get("played", 0) < len(cmds)


@pytest.mark.parametrize("name", SPECS)
def test_close_before_time_zero_plays_nothing_and_ends_cleanly(name: str) -> None:
    """A stream advanced only to a time before its first command (the closed loop starts
    its clock a lead ahead of the plan, at a negative time) and closed then: nothing
    has played, everything is off (the all-off once at 0, not at the negative time the
    guitar's physics refused: found in session 15)."""
    spec = _spec(name)
    cmds = _stream(spec, 0, 4)
    dev = open_port("sim://", spec)
    dev.submit(cmds)
    dev.advance(-250_000)
    dev.close()
    assert dev.energised() == []
    perf = dev.last_performance
    assert perf is not None
    assert _accounted(perf, len(cmds)) == {"flushed": len(cmds)}


@pytest.mark.parametrize("name", SPECS)
def test_bad_commands_are_refused_and_none_of_their_chunk_is_taken(name: str) -> None:
    spec = _spec(name)
    ok = _stream(spec, 300_000, 1)[:1]
    pick = spec.actuators[spec.strings[0].picker.channel]
    bad = [
        (Command(400_000, Op.PULSE_HOLD, 999, 1, 10_000), r"no actuator 999 in spec"),
        (Command(400_000, Op.PULSE_HOLD, pick.index, pick.pwm_max + 1, 10_000),
         rf"drive {pick.pwm_max + 1}.*allowed: drive and hold 0\.\.{pick.pwm_max}"),
        (Command(400_000, Op.MOVE, pick.index, position=3), "a move goes to a positioner"),
        (Command(-1, Op.RELEASE, pick.index), "negative"),
    ]  # fmt: skip
    car = spec.strings[0].carriage
    if car is not None:
        cm = spec.actuators[car.channel]
        bad += [
            (Command(400_000, Op.MOVE, cm.index, position=cm.pwm_max + 1),
             rf"position {cm.pwm_max + 1} is past the travel limit \(allowed: 0\.\.{cm.pwm_max}\)"),
            (Command(400_000, Op.PULSE_HOLD, cm.index, 1, 1_000), "is a positioner .allowed op: move."),
        ]  # fmt: skip
    with open_port("sim://", spec) as dev:
        for cmd, match in bad:
            with pytest.raises(PlanError, match=match):
                dev.submit([*ok, cmd])
            assert not dev.streaming
        dev.submit(ok)
        with pytest.raises(PlanError, match="time order"):
            dev.submit([Command(100_000, Op.RELEASE, pick.index)])
        with pytest.raises(TransportError, match="play while a stream is running"):
            dev.play(Plan(_stream(spec, 0, 1)))
        perf = dev.drain()
        assert _accounted(perf, len(ok)) == {"played": len(ok)}


@pytest.mark.parametrize("name", SPECS)
def test_submit_after_close_is_refused(name: str) -> None:
    spec = _spec(name)
    dev = open_port("sim://", spec)
    dev.close()
    with pytest.raises(TransportError, match="closed"):
        dev.submit(_stream(spec, 0, 1))
