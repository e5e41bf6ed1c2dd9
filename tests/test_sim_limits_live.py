"""The firmware's limits while a sim:// stream runs (sim/limits.py's LiveLimits).

The live ear (``heard_so_far``) hears the stream as the firmware would play it: the same
per-coil max on-time and duty rules the drain applies, run incrementally on what is due.
A strike the duty limit refuses is never heard live, one it cuts is heard as the drain
plays it.
"""

from __future__ import annotations

from driver_helpers import duty_steps
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_player.driver import open_port
from robo_player.plan import Command, Op
from robo_player.sim.limits import LiveLimits, apply_limits
from robo_player.spec import load_spec

GRAND = load_spec("piano-88-grand")
KEYS = [GRAND.key(p).channel for p in (60, 64)]
FULL = GRAND.key(60).pwm_max
HOLD = GRAND.actuators[KEYS[0]].hold_counts
MS = 1000
S = 1_000_000


def _stream(steps: list[tuple[int, int, str]]) -> list[Command]:
    return sorted(duty_steps(steps, FULL, HOLD), key=Command.sort_key)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3 * S), st.sampled_from(KEYS),
                  st.sampled_from(["off", "full", "hold", "strike"])),  # fmt: skip
        max_size=50,
    ),
    cuts=st.lists(st.integers(0, 80 * S), max_size=12),
)
def test_live_limits_are_the_drains_up_to_now(steps: list[tuple[int, int, str]], cuts: list[int]) -> None:
    """At any sequence of times now, what the live limits give (every command and cutoff
    before now) is the whole stream's limited stream before now: the same commands, the
    same cuts and refusals."""
    cmds = _stream(steps)
    full = apply_limits(cmds, GRAND.actuators, screen=False)
    live = LiveLimits(GRAND.actuators)
    for now in sorted(cuts) + [10**12]:
        got = live.advance(cmds, now)
        assert got == sorted((c for c in full.commands if c.t_us < now), key=Command.sort_key)
        assert live.result.cuts == [x for x in full.cuts if x[0] < now]
        assert live.result.refused == {i for i in full.refused if cmds[i].t_us < now}
    assert live.result.cut_off == full.cut_off


def test_max_on_and_duty_bind_in_the_generated_streams() -> None:
    """The stream shape above reaches both limits (the property is not vacuous)."""
    held = _stream([(0, KEYS[0], "full"), (25 * S, KEYS[0], "off")])
    assert [w for _t, _a, w in apply_limits(held, GRAND.actuators).cuts] == ["duty"]
    on = _stream([(0, KEYS[0], "hold"), (25 * S, KEYS[0], "off")])
    assert [w for _t, _a, w in apply_limits(on, GRAND.actuators).cuts] == ["max_on"]


def _held_past_max_on() -> list[Command]:
    """A key set down at its hold level and never let go until 25 s: the firmware cuts it
    at its max on-time (20 s), so the key is up again when it is struck at 21 s (heard);
    played as commanded it would still be down then (a rise from the hold level is no
    strike: silent). Another key struck alongside, untouched."""
    a, b = KEYS
    cmds = [Command(0, Op.SET, a, HOLD), Command(25 * S, Op.RELEASE, a),
            Command(21 * S, Op.PULSE_HOLD, a, FULL, 30 * MS, HOLD, note=1),
            Command(21 * S + 200 * MS, Op.RELEASE, a, note=1)]  # fmt: skip
    for k in range(8):
        t = 18 * S + 500 * MS * k
        cmds += [Command(t, Op.PULSE_HOLD, b, FULL // 2, 30 * MS, HOLD, note=100 + k),
                 Command(t + 170 * MS, Op.RELEASE, b, note=100 + k)]  # fmt: skip
    return sorted(cmds, key=Command.sort_key)


def test_a_coil_the_firmware_cuts_is_heard_live_as_the_drain_plays_it() -> None:
    cmds = _held_past_max_on()
    url = "sim://?timing_sd_us=0&loudness_sd=0&heard_delay_ms=50&sensor=notes"
    pitch_a = 60  # KEYS[0]
    with open_port(url, GRAND, truth_seed=2) as dev:
        live, now, i = [], 0, 0
        while now < cmds[-1].t_us + 1 * S:
            while i < len(cmds) and cmds[i].t_us <= now + 200 * MS:  # submitted 200 ms ahead
                dev.submit([cmds[i]])
                i += 1
            dev.advance(now)
            live = dev.heard_so_far()
            now += 40 * MS
        perf = dev.drain()
    assert perf.extra["commands"]["played_cut_off"] == 1
    struck = [h for h in perf.heard if h.pitch == pitch_a and 21 * S < h.t_us < 21 * S + 300 * MS]
    assert len(struck) == 1  # the strike after the cut sounds
    assert sorted((h.t_us, h.pitch, h.velocity) for h in live) == sorted(
        (h.t_us, h.pitch, h.velocity) for h in perf.heard)  # fmt: skip
