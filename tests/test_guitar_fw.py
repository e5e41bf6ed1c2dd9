"""The guitar's carriages through the firmware (issue 10 §4): the step/dir generator in C
(firmware/boards/avr/out_step_gen.h) against robo_player.motion and the firmware's
Python model (robo_player/sim/vmcu.py), the firmware's own refusals (a press on a
moving carriage, a move past the travel) in the host build and in the model alike, the
AVR trace's step and dir pins read back as positions, and a guitar tune through
``vmcu://`` and ``fw-host://`` with every note accounted for and every step where the
plan put it."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from driver_helpers import compile_on_avr_headers, needs_avr, needs_host

from robo_player.driver.config import actuator_outputs, configure_messages, stepper_rates
from robo_player.driver.ports import open_port
from robo_player.driver.trace import read_trace
from robo_player.midi import read_midi, resolve_piece
from robo_player.motion import move_steps
from robo_player.plan import Command, Op, Plan
from robo_player.planner import plan
from robo_player.protocol.messages import OutKind
from robo_player.sim.guitar.device import carriage_steps, split_steps
from robo_player.sim.guitar.physics import CarriageSteps
from robo_player.spec import load_spec
from robo_player.spec.actuators import ActuatorKind

# moves one after another on one carriage: "n target clock" lines; the generator's step
# clocks (a move asked while the carriage steps waits for its end), one line per move
MAIN = r"""
#include <stdio.h>
#include "out_step_gen.h"
int main(void) {
    unsigned v; unsigned long a;
    if (scanf("%u %lu", &v, &a) != 2) return 1;
    rp_stepper s = {0};
    unsigned target; unsigned long clock;
    while (scanf("%u %lu", &target, &clock) == 2) {
        /* the steps due before this move's clock first, as the host loop runs them */
        while ((s.flags & RP_STEP_MOVING) && (int32_t)(s.next - clock) <= 0) {
            printf("%lu:%u ", (unsigned long)s.next, (unsigned)(s.pos + ((s.flags & RP_STEP_UP) ? 1 : -1)));
            rp_stepper_advance(&s);
        }
        if (!rp_stepper_move(&s, (uint16_t)target, (uint32_t)clock, (uint16_t)v, (uint32_t)a))
            printf("refused ");
    }
    while (s.flags & RP_STEP_MOVING) {
        printf("%lu:%u ", (unsigned long)s.next, (unsigned)(s.pos + ((s.flags & RP_STEP_UP) ? 1 : -1)));
        rp_stepper_advance(&s);
    }
    printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_on_avr_headers(tmp_path_factory.mktemp("stepgen"), MAIN)


def _c_steps(gen: Path, v: int, a: int, moves: list[tuple[int, int]]) -> tuple[list[int], list[int], int]:
    out = subprocess.run([str(gen)], input=f"{v} {a}\n" + "".join(f"{t} {c}\n" for t, c in moves),
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    refused = out.count("refused")
    pairs = [w.split(":") for w in out if w != "refused"]
    return [int(t) for t, _ in pairs], [int(p) for _, p in pairs], refused


def test_c_generator_equals_motion_py_exactly(gen: Path) -> None:
    """Single moves from rest: every step on the µs of robo_player.motion's formula."""
    rng = random.Random(11)
    cases = [(4095, 27_920, 465_000), (1, 100, 1000), (2, 65535, (1 << 24) - 1), (300, 27_920, 465_000)]
    cases += [(rng.randint(1, 5000), rng.randint(1, 65535), rng.randint(1000, (1 << 24) - 1)) for _ in range(80)]
    for n, v, a in cases:
        t, p, refused = _c_steps(gen, v, a, [(n, 1000)])
        assert refused == 0
        assert np.array_equal(np.array(t), move_steps(0, n, 1000, v, a)), (n, v, a)
        assert p == list(range(1, n + 1))


@pytest.mark.parametrize("a", [1000, 1001, 4096, 36_504, 465_000, (1 << 24) - 1])
def test_c_generator_roots_across_phases(gen: Path, a: int) -> None:
    """The generator's roots come from the last root's extrapolated change, corrected
    (from scratch only at a phase's start, below m = 8 and when far off): every phase
    and width on the µs of robo_player.motion. Moves that accelerate past m C = 2^32
    (small a: 64-bit roots), cruise, decelerate from 32 or 64 bits, and triangles that
    turn at every step count near 8 and 16."""
    for v in (300, 2808, 65535):
        for n in (1, 2, 3, 7, 8, 9, 15, 16, 17, 200, 1023, 4095):
            t, _p, refused = _c_steps(gen, v, a, [(n, 7)])
            assert refused == 0
            assert np.array_equal(np.array(t), move_steps(0, n, 7, v, a)), (n, v, a)


def test_c_generator_chains_moves_like_the_simulator(gen: Path) -> None:
    """Random moves, some asked while the carriage still steps: the C generator and the
    simulator's step generator (carriage_steps, the model vmcu uses) give the same steps;
    a third move while one already waits is refused."""
    spec = load_spec("guitar-slider")
    car = next(iter(spec.actuators.of_kind(ActuatorKind.POSITIONER)))
    per_mm = car.pwm_max / car.travel_mm
    v, a = round(car.max_speed_mm_s * per_mm), round(car.accel_mm_s2 * per_mm)
    rng = random.Random(5)
    t = 0
    moves: list[tuple[int, int]] = []
    for _ in range(40):
        t += rng.choice([5_000, 40_000, 150_000, 400_000])
        moves.append((rng.randint(0, car.pwm_max), t))
    ct, cp, refused = _c_steps(gen, v, a, moves)
    # the C's rule: a move asked while one runs and another waits is refused
    kept: list[Command] = []
    pos: dict[int, int] = {}
    free: dict[int, float] = {}
    ends: list[float] = []
    for target, clock in moves:
        if sum(1 for e in ends if e > clock) > 1:
            continue
        c = Command(clock, Op.MOVE, car.index, position=target)
        before = max(float(clock), free.get(car.index, 0.0))
        st = carriage_steps({car.index: car}, [c], pos, free)
        ends.append(float(st[car.index].t_us[-1]) if st else before)
        kept.append(c)
    assert 0 < refused == len(moves) - len(kept)
    want = carriage_steps({car.index: car}, kept, {}, {})[car.index]
    assert np.array_equal(np.array(ct), want.t_us)
    assert np.array_equal(np.array(cp), want.position)


def test_configuration_carries_the_carriages() -> None:
    spec = load_spec("guitar-slider")
    msgs = configure_messages(spec, watchdog_ms=500, time_shift=0, level_shift=0)
    acts = [m for m in msgs if m.name == "configure_actuator"]
    outs = [(m["out_kind"], m["out_addr"], m["out_channel"]) for m in acts]
    assert len(set(outs)) == len(outs)  # the gaps sit on their boards' unused channels
    steppers = [m for m in acts if m["out_kind"] == OutKind.STEP_DIR]
    assert len(steppers) == 6
    role = {a.index: a.role for a in spec.actuators}
    for m in steppers:
        s = role[m["actuator"]].split(":")[1]
        assert role[m["out_addr"]] == f"press:{s}"  # its presser
        assert m["out_channel"] % 2 == 0  # step 2o, dir 2o + 1
        assert (m["max_pulse_us"], m["max_on_us"]) == (1_739, 28_977)  # 255/440 mm x 3 m/s, 50 m/s²
        assert m["pwm_max"] == 255  # the travel


def test_avr_trace_pins_become_positions(tmp_path: Path) -> None:
    """Step edges while dir is high count up, low count down; other pins pass."""
    spec = load_spec("guitar-slider")
    outs = actuator_outputs(spec)
    out_map = {(k, a, ch): act for act, (k, a, ch, _pm) in outs.items()}
    car = next(a for a, o in outs.items() if o[0] == OutKind.STEP_DIR)
    step = outs[car][2]
    lines = ["# robo_sim avr clock_hz=16000000 boot_id=0x1", f"10 0 0 {step + 1} 1"]
    for k in range(3):  # three steps up
        lines += [f"{100 + 50 * k} 0 0 {step} 1", f"{110 + 50 * k} 0 0 {step} 0"]
    lines += [f"400 0 0 {step + 1} 0", f"500 0 0 {step} 1", f"510 0 0 {step} 0"]  # one down
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    tr = read_trace(tmp_path / "t.txt", out_map)
    assert [(c, lv) for c, a, lv in tr.changes if a == car] == [(100, 1), (150, 2), (200, 3), (500, 2)]


def _refusal_plan(spec: Any) -> tuple[Plan, int, int]:
    car = next(a for a in spec.actuators if a.role == "carriage:0")
    pr = next(a for a in spec.actuators if a.role == "press:0")
    cmds = [
        Command(0, Op.MOVE, car.index, position=200),  # ~175 ms of steps
        Command(50_000, Op.PULSE_HOLD, pr.index, drive=pr.pwm_max, pulse_us=20_000, hold=1000),
        Command(60_000, Op.RELEASE, pr.index),
        Command(70_000, Op.MOVE, car.index, position=car.pwm_max + 100),  # past its travel
        Command(300_000, Op.PULSE_HOLD, pr.index, drive=pr.pwm_max, pulse_us=20_000, hold=1000),
        Command(350_000, Op.RELEASE, pr.index),
    ]
    return Plan(cmds, pipeline_delay_us=200_000, spec_name=spec.name, spec_hash=spec.spec_hash), car.index, pr.index


@pytest.mark.parametrize(
    "port",
    ["vmcu://", pytest.param("fw-host://", marks=needs_host), pytest.param("fw-avr://", marks=needs_avr)],
)
def test_firmware_refuses_a_press_while_moving_and_a_move_past_travel(port: str) -> None:
    """The same outcomes from the Python model, the host build and the AVR build under
    simavr (about 10 s there); the AVR's carriage position comes from its pins."""
    spec = load_spec("guitar-slider")
    the_plan, car, _pr = _refusal_plan(spec)
    dev: Any
    with open_port(port, spec) as dev:
        dev._travel = {**dev._travel, car: 65535}  # let the bad move through the host's check
        dev.play(the_plan)
        res = dev.last_result
    status = [o.status for o in sorted(res.outcomes, key=lambda o: o.index)]
    assert status == ["played", "refused_busy", "played", "refused_move", "played", "played"]
    steps = [(c, lv) for c, a, lv in dev.last_trace.changes if a == car]
    assert len(steps) == 200 and steps[-1][1] == 200  # the bad move never stepped


def _chain_plan(spec: Any) -> tuple[Plan, int]:
    """Moves chained on one carriage: A (20 steps, ~52 ms), then B asked while A steps
    (it waits and starts at A's last step), then C asked 400 µs after that step, a press
    on the moving carriage, and D while C waits (refused: one move waits). On the AVR,
    B's start runs its arithmetic with interrupts on for ~110 µs after A's last step,
    and a move asked meanwhile must wait behind B as it would behind an instant start.
    Where C lands against that window depends on how the host's clock maps onto the
    MCU's (measured: C planned 185-235 µs after A's last step came in while B was
    starting, as a build that refuses such a move refused it there; at 180 µs or less
    it came before A's last step in some runs, refused as a second waiting move): 400 µs
    keeps C after A's last step in every run, so the test holds the chain's outcomes
    (the AVR's last_step starting B and then C with interrupts on) rather than the
    window itself (docs/guitar.md, "Interrupts off <= 100 µs")."""
    car = next(a for a in spec.actuators if a.role == "carriage:0")
    pr = next(a for a in spec.actuators if a.role == "press:0")
    v, a = stepper_rates(car)
    t_a = int(move_steps(0, 20, 0, v, a)[-1])  # A's last step: B starts there
    cmds = [
        Command(0, Op.MOVE, car.index, position=20),
        Command(10_000, Op.MOVE, car.index, position=5),
        Command(t_a + 400, Op.MOVE, car.index, position=30),
        Command(t_a + 500, Op.PULSE_HOLD, pr.index, drive=pr.pwm_max, pulse_us=20_000, hold=1000),
        Command(t_a + 700, Op.MOVE, car.index, position=0),
        Command(t_a + 300_000, Op.RELEASE, pr.index),  # (the play lasts past C)
    ]
    return Plan(cmds, pipeline_delay_us=200_000, spec_name=spec.name, spec_hash=spec.spec_hash), car.index


@pytest.mark.parametrize(
    "port",
    ["vmcu://", pytest.param("fw-host://", marks=needs_host), pytest.param("fw-avr://", marks=needs_avr)],
)
def test_a_move_asked_as_a_waiting_move_starts_waits_behind_it(port: str) -> None:
    """The model, the host build and the AVR build alike: B starts at A's last step, C
    waits behind B, the press on the moving carriage and D are refused; the carriage's
    steps (the AVR's from its pins) go 0 -> 20 -> 5 -> 30."""
    spec = load_spec("guitar-slider")
    the_plan, car = _chain_plan(spec)
    dev: Any
    with open_port(port, spec) as dev:
        dev.play(the_plan)
        res = dev.last_result
        trace = dev.last_trace
    status = [o.status for o in sorted(res.outcomes, key=lambda o: o.index)]
    assert status == ["played", "played", "played", "refused_busy", "refused_move", "played"]
    pos = [lv for _c, a, lv in trace.changes if a == car]
    assert len(pos) == 20 + 15 + 25 and pos[-1] == 30
    assert pos[19] == 20 and pos[34] == 5  # A's end, B's end: then C


def _tune_plan(spec_name: str) -> tuple[Any, Plan, Any]:
    spec = load_spec(spec_name)
    score = read_midi(resolve_piece("bwv66.6"))
    from robo_player.score import Score

    score = Score([n for n in score.notes if n.onset_us < 8e6])  # the first phrases
    the_plan, rep = plan(score, spec, None)
    return spec, the_plan, rep


@pytest.mark.parametrize("port", ["vmcu://", pytest.param("fw-host://", marks=needs_host)])
def test_guitar_tune_through_the_firmware(port: str) -> None:
    spec, the_plan, rep = _tune_plan("guitar-slider")
    heard: dict[str, Any] = {}
    dev: Any
    with open_port(port, spec) as dev:
        hear = dev.instrument.hear

        def keep(outputs: Any, steps: Any = None, progress: Any = None) -> Any:
            heard["outputs"] = outputs
            return hear(outputs, steps, progress)

        dev.instrument.hear = keep
        perf = dev.play(the_plan)
        energised = dev.energised()
    counts = perf.extra["commands"]
    assert sum(counts.values()) == len(the_plan.commands)  # every command accounted for
    if port != "vmcu://" and set(counts) != {"played"}:
        # the host build on a loaded machine: a command the process reached past its
        # late slack is reported late (and a carriage that did not move there makes its
        # next move longer: a press on it is refused as busy); re-run alone
        assert set(counts) <= {"played", "late", "refused_busy"}
        pytest.skip(f"host build under load: {counts}")
    assert set(counts) == {"played"}
    notes = [o for o in rep.outcomes if o.fate.name != "DROPPED"]
    assert perf.extra["picks"] == len(notes)  # every pick reached the string ...
    assert perf.extra["moving_picks"] == 0 and perf.extra["carriage_faults"] == 0
    assert len(perf.heard) + perf.extra.get("unheard", 0) >= len(notes) - 2  # ... and was heard
    assert energised == []  # carriages parked somewhere are not coils left on
    cars = {a.index: a for a in spec.actuators.of_kind(ActuatorKind.POSITIONER)}
    _coils, steps = split_steps(heard["outputs"], set(cars))
    moves = sorted((c for c in the_plan.commands if c.op is Op.MOVE), key=lambda c: c.t_us)
    want = carriage_steps(cars, moves, {}, {})
    assert set(steps) == set(want)
    for a, w in want.items():  # the trace's steps are the plan's, to the clock sync
        got = steps[a]
        assert isinstance(got, CarriageSteps)  # (a stepper's: no servo here)
        assert np.array_equal(got.position, w.position)
        assert np.max(np.abs(got.t_us - w.t_us)) <= (5 if port == "vmcu://" else 2000)
