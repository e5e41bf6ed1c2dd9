"""The planners' fast paths equal their plain references on random input: the command
builder, the command buffer's packed sort keys, the plan writer's JSON text and the
supply ledger's quick answers."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.errors import PlanError
from robo_player.plan import Command, Op, Plan, _lines
from robo_player.planner.commands import CommandBuffer, make_command
from robo_player.planner.power import SupplyLedger

OPS = [Op.PULSE_HOLD, Op.SET, Op.RELEASE, Op.MOVE]

fields_st = st.tuples(
    st.integers(-(2**40), 2**40),  # t_us (a buffer takes negative times too)
    st.sampled_from(OPS),
    st.integers(0, 1023),  # actuator
    st.integers(0, 4095),
    st.integers(0, 40_000),
    st.integers(0, 4095),
    st.integers(-1, 10**6),
    st.integers(0, 4095),  # position (MOVE)
)


@settings(max_examples=200, deadline=None)
@given(f=fields_st)
def test_make_command_equals_the_dataclass(f: tuple[int, Op, int, int, int, int, int, int]) -> None:
    fast, plain = make_command(*f), Command(*f)
    assert type(fast) is Command
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.t_us = 0  # type: ignore[misc]  # still frozen


# few distinct times and actuators, so that ties in (t, op order, actuator) are common
tied_st = st.lists(
    st.tuples(
        st.integers(-3, 3),
        st.sampled_from(OPS),
        st.integers(0, 3),
        st.integers(0, 4095),
        st.integers(0, 40_000),
        st.integers(0, 4095),
        st.integers(-1, 10**6),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(rows=st.one_of(tied_st, st.lists(fields_st, max_size=60)))
def test_buffer_sorts_like_plan_sort(rows: list[tuple[int, Op, int, int, int, int, int]]) -> None:
    buf = CommandBuffer(max_actuator=1023)
    for row in rows:
        buf.emit(*row)
    plan = Plan(commands=[Command(*row) for row in rows])
    plan.sort()  # the reference: a stable sort on Command.sort_key
    assert buf.sorted() == plan.commands
    assert len(buf) == len(rows)


def test_buffer_refuses_an_actuator_outside_its_span() -> None:
    buf = CommandBuffer(max_actuator=88)  # 7 bits: 0..127
    buf.emit(0, Op.SET, 127)
    with pytest.raises(PlanError, match=r"actuator 128 out of range \(allowed 0..127\)"):
        buf.emit(0, Op.SET, 128)
    with pytest.raises(PlanError, match="actuator -1 out of range"):
        buf.emit(0, Op.SET, -1)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(fields_st, max_size=30), position=st.integers(0, 4095))
def test_plan_lines_equal_json_dumps(
    rows: list[tuple[int, Op, int, int, int, int, int]], position: int
) -> None:
    cmds = [
        dataclasses.replace(Command(*row), position=position if row[1] is Op.MOVE else 0)
        for row in rows
    ]
    assert _lines(cmds) == [json.dumps(c.to_json(), separators=(",", ":")) for c in cmds]


# ---- the supply ledger's quick answers against its full check


def _fits_in_full(led: SupplyLedger, t: int, a: float, h: float, current: bool) -> bool:
    """:meth:`SupplyLedger.fits` without its shortcuts: the load at every instant where
    a pulse starts or ends from ``t`` on (the new strike's pulse and hold included)."""
    e_new = t + led.pulse_us
    xs = {t, e_new} | {int(x) for it in led.pulsing for x in it[:2] if x > t}
    for x in xs:
        count, amps = led._load(x)
        if x < e_new and (count + 1 > led.max_strikes or (current and amps + a > led.supply_a)):
            return False
        if x >= e_new and current and count and amps + h > led.supply_a:
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(
    max_strikes=st.integers(1, 4),
    supply=st.floats(0.5, 6.0),
    placed=st.lists(
        st.tuples(
            st.integers(0, 6_000),  # gap to the previous strike (µs)
            st.floats(0.0, 2.0),  # pulse current
            st.floats(0.0, 0.5),  # hold current
            st.integers(0, 40_000),  # hold length after the pulse
        ),
        max_size=25,
    ),
    queries=st.lists(
        st.tuples(st.integers(0, 20_000), st.floats(0.0, 2.0), st.floats(0.0, 0.5), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_ledger_fits_equals_its_full_check(
    max_strikes: int,
    supply: float,
    placed: list[tuple[int, float, float, int]],
    queries: list[tuple[int, float, float, bool]],
) -> None:
    pulse = 5_000
    led = SupplyLedger(pulse, max_strikes, supply)
    t = 0
    for gap, a, h, hold in placed:
        t += gap
        led.advance(t)
        led.add(t, a, h, t + pulse + hold)  # placed whether it fits or not: crowded ledgers
    for dt, a, h, current in queries:
        q = t + dt
        assert led.fits(q, a, h, current) == _fits_in_full(led, q, a, h, current)
