"""Hobby-servo carriages (issue 10 §1, docs/guitar.md "Hobby-servo carriages"): the spec's
pulse keys and their errors, the planner's move time, the pulse train's rule in C
(firmware/boards/avr/out_servo_gen.h) against robo_player/servo.py, the host build and
the AVR under simavr against the firmware's Python model (vmcu://), the AVR's servo
pins read back as pulses, the simulated guitar moving a servo carriage from the widths
it reads, and a tune through sim://, vmcu://, fw-host:// and fw-avr:// with every note
accounted for."""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from driver_helpers import compile_on_avr_headers, needs_avr, needs_host

from robo_player.actuation import OutputColumns
from robo_player.driver.config import actuator_outputs, configure_messages
from robo_player.driver.ports import open_port
from robo_player.driver.trace import read_trace
from robo_player.errors import ProtocolError, SpecError
from robo_player.midi import read_midi, resolve_piece
from robo_player.plan import Command, Op, Plan
from robo_player.planner import plan
from robo_player.planner.fingering import Layout
from robo_player.protocol.messages import OutKind
from robo_player.score import Score
from robo_player.servo import (
    FRAME_US,
    SLOT_US,
    ServoTrain,
    compare_pulses,
    position_mm,
    train_of_moves,
    width_us,
)
from robo_player.sim.guitar.physics import GuitarPhysics, ServoPulses
from robo_player.sim.guitar.truth import GuitarTruth
from robo_player.spec import load_spec
from robo_player.spec.guitar import carriage_move_us, press_position_mm, servo_carriages, travel_us
from robo_player.spec.guitar_loader import load_guitar_spec

SPEC = "guitar-slider-servo"
SPECS_DIR = Path(__file__).resolve().parents[1] / "hardware_specs"


# ---- the spec ------------------------------------------------------------------------


def _variant(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = (SPECS_DIR / f"{SPEC}.yaml").read_text()
    assert old in text
    p = tmp_path / "v.yaml"
    p.write_text(text.replace(old, new, count))
    return p


def test_servo_spec_defaults_and_configuration() -> None:
    spec = load_guitar_spec(SPEC)
    cars = servo_carriages(spec)
    assert len(cars) == 6
    assert {(c.pulse_min_us, c.pulse_max_us, c.frame_hz) for c in cars.values()} == {(1000, 2000, 50)}
    assert servo_carriages(load_spec("guitar-slider")) == {}
    msgs = configure_messages(spec, watchdog_ms=500, time_shift=0, level_shift=0)
    servos = [m for m in msgs if m.name == "configure_actuator" and m["out_kind"] == OutKind.SERVO]
    role = {a.index: a.role for a in spec.actuators}
    assert sorted(m["out_channel"] for m in servos) == list(range(6))  # direct outputs 0..5
    for m in servos:
        s = role[m["actuator"]].split(":")[1]
        assert role[m["out_addr"]] == f"press:{s}"
        assert (m["pwm_max"], m["max_pulse_us"], m["max_on_us"]) == (255, 1000, 2000)


def test_servo_spec_errors_name_the_key_and_range(tmp_path: Path) -> None:
    bad = _variant(tmp_path, "pulse_max_us: 2000", "pulse_max_us: 900")
    with pytest.raises(SpecError, match=r"strings\[0\]\.carriage\.pulse_max_us: 900 is not above "
                       r"pulse_min_us 1000 \(allowed 1001\.\.2400\)"):  # fmt: skip
        load_spec(str(bad))
    bad = _variant(tmp_path, "pulse_min_us: 1000", "pulse_min_us: 300")
    with pytest.raises(SpecError, match=r"strings\[0\]\.carriage\.pulse_min_us.*300.*500\.\.2400"):
        load_spec(str(bad))
    bad = _variant(tmp_path, "frame_hz: 50", "frame_hz: 60")
    with pytest.raises(SpecError, match=r"strings\[0\]\.carriage\.frame_hz.*60.*50\.\.50"):
        load_spec(str(bad))
    bad = _variant(tmp_path, "drive: servo", "drive: step_dir")
    with pytest.raises(SpecError, match=r"strings\[0\]\.carriage\.pulse_min_us: not allowed with "
                       r"drive step_dir"):  # fmt: skip
        load_spec(str(bad))


def test_layout_move_time_is_frame_plus_distance_over_speed() -> None:
    """A servo's move: one whole frame (its next pulse) + distance / speed, padded, +
    settle; no acceleration phase (the stepper's trapezoid would differ)."""
    spec = load_guitar_spec(SPEC)
    lay = Layout(spec)
    car = spec.strings[0].carriage
    assert car is not None
    margin = spec.timing.travel_margin
    for a, b in ((0, 1), (0, 19), (5, 7), (12, 3)):
        d = abs(press_position_mm(spec.neck.scale_length_mm, a) - press_position_mm(spec.neck.scale_length_mm, b))
        want = round((FRAME_US + d / car.max_speed_mm_s * 1e6) * (1 + margin)) + car.settle_us
        assert lay.move_us[0][a][b] == want
        # no acceleration phase: the spec's accel_mm_s2 plays no part
        assert carriage_move_us(replace(car, accel_mm_s2=200_000.0), d) == carriage_move_us(car, d)
        assert carriage_move_us(replace(car, drive="step_dir"), d) == travel_us(d, car.max_speed_mm_s, car.accel_mm_s2)
    assert carriage_move_us(car, 0.0) == 0.0


# ---- the pulse train: C against Python -------------------------------------------------

# "n_slots" then lines "hook clock slot width" (a move hooked at `hook` <= clock, as the
# AVR's core does up to its lead before the clock) or "off clock"; edges run to each hook
# as the AVR's interrupt makes them; every pulse "rise:slot:width" as the host writes it
GEN = r"""
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#define RP_TICKS_PER_US 1UL
#include "out_servo_gen.h"
static rp_servo tab[8];
static rp_servo_train tr;
static void run_to(uint32_t now) {
    while (tr.run && (int32_t)(tr.at - now) <= 0) {
        if (tr.edge & 1) {
            uint8_t k = tr.edge >> 1;
            uint32_t rise = tr.frame + k * RP_SERVO_SLOT_TICKS;
            printf("%lu:%u:%lu ", (unsigned long)rise, k, (unsigned long)(tr.at - rise));
            rp_servo_next_rise(&tr);
        } else {
            rp_servo_rise(&tr, tab);
        }
    }
}
int main(void) {
    unsigned n, k, w; unsigned long hook, clock; char word[8]; uint8_t fresh;
    if (scanf("%u", &n) != 1) return 1;
    for (unsigned i = 0; i < n; i++) {
        rp_servo_unrate(rp_servo_slot(tab, &tr, 8, (uint8_t)(10 + i), &fresh));
        if (i % 3) { /* a configure_servo's (else: unset, the slowest) */
            tab[i].rate = (uint16_t)(100 + 37 * i);
            tab[i].settle = (uint16_t)(1000 * i);
        }
    }
    while (scanf("%7s", word) == 1) {
        if (word[0] == 'o') {
            if (scanf("%lu", &clock) != 1) return 1;
            run_to((uint32_t)clock - 1);
            if (tr.run && (tr.edge & 1)) {
                uint8_t s = tr.edge >> 1;
                uint32_t rise = tr.frame + s * RP_SERVO_SLOT_TICKS;
                printf("%lu:%u:%lu ", (unsigned long)rise, s, (unsigned long)(clock - rise));
            }
            tr.run = 0;
            continue;
        }
        hook = strtoul(word, 0, 10);
        if (scanf("%lu %u %u", &clock, &k, &w) != 3) return 1;
        run_to((uint32_t)hook);
        /* presser k (slot 7: none), 700 us at 0 (out_servo.c's steps) */
        uint16_t from; uint32_t first, end;
        uint8_t busy = tab[k].press & RP_SERVO_BUSY;
        rp_servo_set(&tr, tab, &tab[k], (uint16_t)w, (uint32_t)clock, &from, &first);
        if (k != 7 && rp_servo_hold(&end, from, (uint16_t)w, first, busy, tab[k].until,
                                    tab[k].rate, tab[k].settle, 700)) {
            tab[k].until = end;
            tab[k].press = (uint8_t)(RP_SERVO_BUSY | k);
        }
        printf("h%u:%lu:%lu ", k, (unsigned long)clock, (unsigned long)tab[k].until);
    }
    run_to(0xF0000000UL);
    printf("\n");
    return 0;
}
"""


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_on_avr_headers(tmp_path_factory.mktemp("servogen"), GEN)


def test_c_pulse_train_equals_servo_py(gen: Path) -> None:
    """Random moves (each hooked up to 1.5 ms before its clock, so some land on a rise
    in between: the pending width), all-offs and restarts: the C rule's pulses are
    robo_player.servo's, to the µs, and so are its holds (the clock each move's
    carriage is busy to a press until: unset and configured speeds, first moves, moves
    to the width it has, moves while a hold runs, a servo without a presser)."""
    rng = random.Random(7)
    holds_seen = 0
    for case in range(12):
        n = rng.randint(1, 8)
        py = ServoTrain(ticks_per_us=1, max_servos=8)
        for k in range(n):
            py.add(10 + k, k)
            py.unrate(10 + k)
            if k % 3:
                py.rate(10 + k, 100 + 37 * k, 1000 * k)
        holds: list[str] = []
        lines, t, last = [str(n)], 1000, 0
        for _ in range(rng.randint(5, 40)):
            t += rng.choice([1, 700, 2500, 2499, 2501, 9000, 20_000, 45_000])
            if rng.random() < 0.08:
                lines.append(f"off {t}")
                py.stop(t)
                continue
            k = rng.randrange(n)
            sv = py.servos[10 + k]
            # now and then the width it has (no hold), else any
            w = (sv.moves[-1][1] if sv.moves else 700) if rng.random() < 0.1 else rng.randint(500, 2400)
            hook = t - rng.randint(0, 1500)
            lines.append(f"{max(hook, last)} {t} {k} {w}")
            last = max(hook, last)
            py.move(10 + k, k, w, t, None if k == 7 else k, 700)
            holds.append(f"h{k}:{t}:{sv.until or 0}")
        end = t + 3 * FRAME_US
        lines.append(f"off {end}")
        py.stop(end)
        out = subprocess.run([str(gen)], input="\n".join(lines) + "\n", capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
        assert [w for w in out if w[0] == "h"] == holds, case
        holds_seen += len({h for h in holds if not h.endswith(":0")})
        c = sorted(tuple(int(x) for x in w.split(":")) for w in out if w[0] != "h")
        want = sorted((r, a, w) for r, a, w in py.pulses(end + 1))
        assert c == want, case
    assert holds_seen > 50


def test_width_and_position_rules() -> None:
    assert [width_us(p, 255, 1000, 2000) for p in (0, 1, 127, 128, 254, 255)] == [1000, 1004, 1498, 1502, 1996, 2000]
    assert position_mm(1500, 1000, 2000, 440.0) == 220.0
    assert position_mm(900, 1000, 2000, 440.0) == 0.0 and position_mm(2500, 1000, 2000, 440.0) == 440.0


# ---- the firmware: host build and AVR against the model --------------------------------


def _servo_plan(spec: Any) -> tuple[Plan, list[int]]:
    """Moves on three servos: a first move, moves 1 ms before and after a slot's rise,
    two moves within one frame (the second wins), a move past the travel (refused)."""
    cars = [a.index for a in spec.actuators if a.role.startswith("carriage:")][:3]
    c0, c1, c2 = cars
    cmds = [
        Command(0, Op.MOVE, c0, position=100),
        Command(1_000, Op.MOVE, c1, position=200),
        Command(30_000, Op.MOVE, c0, position=255),
        Command(41_500, Op.MOVE, c2, position=50),
        Command(61_000, Op.MOVE, c1, position=0),
        Command(62_000, Op.MOVE, c1, position=10),  # before slot 1 rises at 62.5 ms
        Command(90_000, Op.MOVE, c2, position=300),  # past its travel
        Command(150_000, Op.MOVE, c0, position=0),
    ]
    return Plan(cmds, pipeline_delay_us=200_000, spec_name=spec.name, spec_hash=spec.spec_hash), cars


def _pulses(trace: Any, cars: list[int]) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {a: [] for a in cars}
    for clock, a, w in sorted(trace.changes):
        if a in out:
            out[a].append((clock, w))
    return out


@pytest.mark.parametrize(
    "port", [pytest.param("fw-host://", marks=needs_host), pytest.param("fw-avr://", marks=needs_avr)]
)
def test_firmware_pulses_equal_the_model(port: str) -> None:
    """The same plan on the model (vmcu://) and on the C firmware: the same statuses and
    the same pulses per servo: widths to the µs (the AVR's from its pins, within 1 µs)
    and rises at the same offsets from the first pulse (the host build's clock is µs, the
    AVR's and the model's 16 MHz ticks; the driver's clock sync places the plan on each
    board's clock)."""
    spec = load_guitar_spec(SPEC)
    the_plan, cars = _servo_plan(spec)
    got: dict[str, Any] = {}
    for p in ("vmcu://", port):
        dev: Any
        with open_port(p, spec) as dev:
            dev._travel = {**dev._travel, cars[2]: 65535}  # let the bad move through the host's check
            dev.play(the_plan)
            status = [o.status for o in sorted(dev.last_result.outcomes, key=lambda o: o.index)]
            got[p] = (status, _pulses(dev.last_trace, cars), dev.last_trace.clock_hz)
    (s_m, p_m, hz_m), (s_c, p_c, hz_c) = got["vmcu://"], got[port]
    assert s_m == s_c == ["played"] * 6 + ["refused_move", "played"]
    t0_m = min(v[0][0] for v in p_m.values())
    t0_c = min(v[0][0] for v in p_c.values())
    for a in cars:
        # up to the last pulse of the shorter run: the closing all-off (its own time on
        # each board) may cut a pulse short and ends the frames
        n = min(len(p_m[a]), len(p_c[a])) - 1
        assert n >= 8, a  # the plan's 150 ms and more
        wm = [w for _t, w in p_m[a]][:n]
        wc = [w for _t, w in p_c[a]][:n]
        assert wm == pytest.approx(wc, abs=1), a
        # the widths the plan asked: 1000 + position * 1000 / 255
        assert set(wm) <= {width_us(p, 255, 1000, 2000) for p in (0, 10, 50, 100, 200, 255)}
        om = [(t - t0_m) * 1e6 / hz_m for t, _w in p_m[a]][:n]
        oc = [(t - t0_c) * 1e6 / hz_c for t, _w in p_c[a]][:n]
        # the same slot and frame (the driver's clock sync slews by up to 0.1 %: 150 µs
        # over this plan; a slot is 2.5 ms)
        assert np.max(np.abs(np.array(om) - np.array(oc))) <= 500, a
        assert np.all(np.diff(oc) >= FRAME_US - 1)  # one pulse a frame
    # the rule's outcomes, read off the model: the second of two moves in a frame wins,
    # a move is seen from the first rise at or after its clock
    assert [w for _t, w in p_m[cars[1]]][-2] == width_us(10, 255, 1000, 2000)
    assert width_us(0, 255, 1000, 2000) not in [w for _t, w in p_m[cars[1]]]


def _press_plan(spec: Any) -> Plan:
    """Presses on string 0 inside and after its servo's moves (hand-built, as no planner
    would): a first move, from the nut (parked there at boot) to mid-travel (502 µs of
    width: 221 ms, + 30 ms settle), a press 200 ms in (refused) and one on string 1 then
    (its carriage stays: played), presses at 300 ms (after the hold: played; counted
    from the whole range, 440 ms, it would not be) and 600 ms, a 10-count move at
    700 ms (39 µs of width: 17 ms + settle, from its first pulse within a frame), a
    press 20 ms in (refused), one 100 ms in (played)."""
    car = spec.actuators.by_role("carriage:0").index
    pr, pr1 = spec.actuators.by_role("press:0"), spec.actuators.by_role("press:1")

    def press(t: int, a: Any) -> list[Command]:
        return [Command(t, Op.PULSE_HOLD, a.index, drive=a.pwm_max, pulse_us=5_000, hold=1000),
                Command(t + 10_000, Op.RELEASE, a.index)]  # fmt: skip

    cmds = [Command(0, Op.MOVE, car, position=128), *press(200_000, pr), *press(205_000, pr1),
            *press(300_000, pr), *press(600_000, pr), Command(700_000, Op.MOVE, car, position=138),
            *press(720_000, pr), *press(800_000, pr)]  # fmt: skip
    cmds.sort(key=Command.sort_key)
    return Plan(cmds, pipeline_delay_us=200_000, spec_name=spec.name, spec_hash=spec.spec_hash)


@pytest.mark.parametrize(
    "port", ["vmcu://", pytest.param("fw-host://", marks=needs_host), pytest.param("fw-avr://", marks=needs_avr)]
)
def test_firmware_refuses_a_press_while_its_servo_moves(port: str) -> None:
    """The firmware holds a servo's carriage busy from a move to its first pulse + the
    width change at the servo's speed + settle (configure_servo, from the spec): a press
    on its presser inside that is refused (REFUSED_BUSY), on the model, the host build
    and the AVR alike; presses after it, and on another string, are played."""
    spec = load_guitar_spec(SPEC)
    dev: Any
    with open_port(port, spec) as dev:
        dev.play(_press_plan(spec))
        res = dev.last_result
    status = [o.status for o in sorted(res.outcomes, key=lambda o: o.index)]
    assert status == ["played", "refused_busy", "played", "played", "played", "played", "played",
                      "played", "played", "played", "refused_busy", "played", "played",
                      "played"]  # fmt: skip


def test_configure_servo_is_sent_with_the_spec_speed_and_settle(tmp_path: Path) -> None:
    """configure_servo after each servo's configure_actuator: 440 mm at 1 m/s over
    1000 µs of pulse = 440 µs a µs, settle 30 ms; a servo too slow for the protocol is a
    SpecError naming it and the range."""
    spec = load_guitar_spec(SPEC)
    msgs = configure_messages(spec, watchdog_ms=500, time_shift=0, level_shift=0)
    names = [m.name for m in msgs]
    rates = [m for m in msgs if m.name == "configure_servo"]
    assert len(rates) == 6
    for m in rates:
        k = names.index("configure_servo", msgs.index(m))
        assert msgs[k - 1].name == "configure_actuator" and msgs[k - 1]["actuator"] == m["actuator"]
        assert (m["us_per_width_us"], m["settle_us"]) == (440, 30_000)
    slow = load_spec(str(_variant(tmp_path, "max_speed_mm_s: 1000.0", "max_speed_mm_s: 40.0", 6)))
    with pytest.raises(SpecError, match=r"carriage of actuator \d+: .* 11000 us per us of pulse width, "
                       r"allowed 0\.\.10000"):  # fmt: skip
        configure_messages(slow, watchdog_ms=500, time_shift=0, level_shift=0)


def test_avr_trace_servo_pin_becomes_pulses(tmp_path: Path) -> None:
    """A servo's pin in a simavr trace: each pulse (rise, width µs at 16 MHz), other pins
    pass."""
    spec = load_guitar_spec(SPEC)
    outs = actuator_outputs(spec)
    out_map = {(k, a, ch): act for act, (k, a, ch, _pm) in outs.items()}
    car = next(a for a, o in outs.items() if o[0] == OutKind.SERVO)
    pin = outs[car][2]
    lines = ["# robo_sim avr clock_hz=16000000 boot_id=0x1",
             f"100 0 0 {pin} 1", f"{100 + 16 * 1500} 0 0 {pin} 0",
             f"320100 0 0 {pin} 1", f"{320100 + 16 * 1004 + 8} 0 0 {pin} 0", f"640100 0 0 {pin} 1"]  # fmt: skip
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    tr = read_trace(tmp_path / "t.txt", out_map)
    assert [(c, w) for c, a, w in tr.changes if a == car] == [(100, 1500), (320100, 1004)]


# ---- the simulated guitar reads the widths -------------------------------------------


def test_physics_moves_a_servo_carriage_from_the_widths_at_the_truth_speed() -> None:
    """Pulses asking 0 -> 220 mm: the carriage leaves at the first new pulse's end and
    takes 220 mm / (speed x the truth's speed_scale); a pick with the presser down in
    that time gives no note, one after it settled sounds fretted."""
    spec = load_guitar_spec(SPEC)
    truth = GuitarTruth.draw(spec, 3)
    phys = GuitarPhysics(spec, truth)
    car = spec.strings[0].carriage
    assert car is not None
    scale = truth.carriages["carriage:0"].speed_scale
    settle = truth.carriages["carriage:0"].settle_us
    rises = np.arange(0, 40) * FRAME_US + 1000
    widths = np.where(rises < 100_000, 1000, 1500)
    first = int(rises[widths == 1500][0]) + 1500
    run_us = 220.0 / (car.max_speed_mm_s * scale) * 1e6
    st = spec.strings[0]
    assert st.presser is not None
    pick, press = st.picker.channel, st.presser.channel
    t_mid = first + int(run_us / 2)
    t_after = first + int(run_us + settle) + 40_000
    ch = [(t_mid - 30_000, press, 4095), (t_mid - 5_000, pick, 4095), (t_mid + 10_000, pick, 0),
          (t_after - 30_000, pick, 0), (t_after, pick, 4095), (t_after + 15_000, pick, 0)]  # fmt: skip
    ch = sorted(c for c in ch if c[0] != t_after - 30_000)
    cols = OutputColumns(np.array([c[0] for c in ch]), np.array([c[1] for c in ch]),
                         np.array([c[2] for c in ch]), np.full(len(ch), 4095))  # fmt: skip
    perf, notes = phys.run(cols, {car.channel: ServoPulses(rises, widths)})
    assert perf.extra["carriage_faults"] == 1  # the presser went down while it moved
    assert perf.extra["moving_picks"] == 1
    assert perf.extra["fretter_travel_mm"] == pytest.approx(220.0, abs=0.1)
    fret = phys.fret_at_mm(220.0)
    assert list(notes.fret) == [fret] and list(notes.pitch) == [spec.strings[0].tuning + fret]


# ---- a tune ----------------------------------------------------------------------------


def _tune(spec: Any) -> tuple[Plan, Any]:
    score = read_midi(resolve_piece("bwv66.6"))
    score = Score([n for n in score.notes if n.onset_us < 8e6])  # the first phrases
    return plan(score, spec, None)


def _check_tune(port: str, perf: Any, the_plan: Plan, rep: Any, energised: list[int],
                glitches: int = 0) -> None:  # fmt: skip
    """Every note and command accounted for, nothing left on, the servos moved; no pick
    while a carriage moved and no presser down while one moved, but for the pulses a
    board made longer or shorter than its rule (``glitches``: each moves the servo
    there and back, two moves)."""
    counts = perf.extra["commands"]
    assert sum(counts.values()) == len(the_plan.commands)  # every command accounted for
    if port.startswith("fw-") and set(counts) != {"played"}:
        assert set(counts) <= {"played", "late"}
        pytest.skip(f"{port} under load: {counts} (re-run alone)")
    assert set(counts) == {"played"}
    notes = [o for o in rep.outcomes if o.fate.name != "DROPPED"]
    assert perf.extra["picks"] == len(notes)
    assert perf.extra["moving_picks"] + perf.extra["carriage_faults"] <= 2 * glitches
    assert perf.extra["buzzed_notes"] <= 2 * glitches
    assert len(perf.heard) + perf.extra.get("unheard", 0) >= len(notes) - 2
    assert perf.extra["fretter_travel_mm"] > 100  # the servos moved (from the pulses)
    assert energised == []  # a servo's pulses are not a coil left on


@pytest.mark.parametrize("port", ["sim://?sensor=notes", "vmcu://", pytest.param("fw-host://", marks=needs_host)])
def test_servo_guitar_tune(port: str) -> None:
    spec = load_guitar_spec(SPEC)
    the_plan, rep = _tune(spec)
    with open_port(port, spec) as dev:
        perf = dev.play(the_plan)
        energised = dev.energised()
    _check_tune(port, perf, the_plan, rep, energised)


@pytest.mark.slow
@needs_avr
def test_servo_guitar_tune_on_the_avr() -> None:
    """The same on the AVR under simavr (about 2 minutes), its pulses against the rule on
    its clock: widths exact but for a few a pulse late behind another interrupt's
    interrupts-off stretch (docs/guitar.md: 2 of 10,023 on the whole piece)."""
    spec = load_guitar_spec(SPEC)
    the_plan, rep = _tune(spec)
    dev: Any
    with open_port("fw-avr://", spec) as dev:
        perf = dev.play(the_plan)
        energised = dev.energised()
        trace, clock_for = dev.last_trace, dev.last_session.timeline.clock_for
    moves = sorted((c for c in the_plan.commands if c.op is Op.MOVE), key=lambda c: c.t_us)
    train = train_of_moves(servo_carriages(spec), moves, clock_for, trace.clock_hz // 1_000_000)
    got = sorted(c for c in trace.changes if c[1] in servo_carriages(spec))
    widths, rises, off = compare_pulses(train.pulses(got[-1][0] + 1), got, trace.clock_hz / 1e6)
    assert off == 0 and len(widths) > 1000
    glitches = sum(1 for e in widths if e > 2)
    assert glitches <= 0.002 * len(widths)
    assert np.percentile(widths, 99) <= 1 and np.percentile(rises, 99) <= 5
    _check_tune("fw-avr://", perf, the_plan, rep, energised, glitches)


def test_sim_pulses_follow_the_rule() -> None:
    """sim://'s pulses: slots in actuator order 2.5 ms apart, from the first move."""
    from robo_player.sim.guitar.device import servo_pulses

    spec = load_guitar_spec(SPEC)
    cars = servo_carriages(spec)
    a0, a1 = sorted(cars)[:2]
    p = servo_pulses(cars, [Command(5_000, Op.MOVE, a1, position=255), Command(7_000, Op.MOVE, a0, position=0)])
    assert p[a1].t_us[0] == 5_000 + SLOT_US and p[a1].width_us[0] == 2000
    assert p[a0].t_us[0] == 5_000 + FRAME_US and p[a0].width_us[0] == 1000  # its slot passed at 5 ms


def test_physics_servo_dead_band() -> None:
    """Width changes within the servo's dead band (truth) do not move the carriage; one
    past it does, from the width it last moved to."""
    spec = load_guitar_spec(SPEC)
    truth = GuitarTruth.draw(spec, 3)
    cars = dict(truth.carriages)
    cars["carriage:0"] = replace(cars["carriage:0"], deadband_us=3.0)
    phys = GuitarPhysics(spec, replace(truth, carriages=cars))
    car = spec.strings[0].carriage
    assert car is not None
    rises = np.arange(0, 12) * FRAME_US
    widths = np.array([1000] * 2 + [1500] * 2 + [1502, 1503, 1501, 1502] + [1504] * 4)
    empty = OutputColumns(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros(0, np.int64))  # fmt: skip
    perf, _notes = phys.run(empty, {car.channel: ServoPulses(rises, widths)})
    mm = position_mm(1504, 1000, 2000, 440.0)  # 0 -> 1500 us, then 1500 -> 1504 us
    assert perf.extra["fretter_travel_mm"] == pytest.approx(mm, abs=0.05)


@pytest.mark.parametrize(
    "port", ["vmcu://", pytest.param("fw-host://", marks=needs_host), pytest.param("fw-avr://", marks=needs_avr)]
)
def test_a_seventh_servo_is_refused_on_the_avr_only(port: str, tmp_path: Path) -> None:
    """The AVR holds 6 servo slots, the host build and the model a frame's 8: a spec
    with a seventh servo carriage is refused at configure on the AVR, naming it."""
    text = (SPECS_DIR / f"{SPEC}.yaml").read_text()
    text = text.replace("{id: servos, kind: direct, channels: 6,", "{id: servos, kind: direct, channels: 7,")
    seventh = (
        "  - tuning: A4\n"
        "    picker: {channel: 19, board: coils1, pwm_bits: 12}\n"  # 18: the sync click
        "    damper: {channel: 20, board: coils1, pwm_bits: 12}\n"
        "    presser: {channel: 21, board: coils1, pwm_bits: 12}\n"
        "    carriage: {channel: 38, board: servos, pwm_bits: 8, drive: servo, travel_mm: 440.0, "
        "max_speed_mm_s: 1000.0, accel_mm_s2: 50000.0, settle_us: 30000}\n"
    )
    (tmp_path / "seven.yaml").write_text(text.replace("\ntiming:", seventh + "\ntiming:", 1))
    spec = load_guitar_spec(str(tmp_path / "seven.yaml"))
    car = spec.actuators.by_role("carriage:6").index
    the_plan = Plan([Command(0, Op.MOVE, car, position=10)], pipeline_delay_us=100_000,
                    spec_name=spec.name, spec_hash=spec.spec_hash)  # fmt: skip
    dev: Any
    if port == "fw-avr://":
        with pytest.raises(ProtocolError, match=rf"BAD_OUTPUT \(detail {car}\)"), open_port(port, spec) as dev:
            dev.play(the_plan)
        return
    with open_port(port, spec) as dev:
        dev.play(the_plan)
        assert [o.status for o in dev.last_result.outcomes] == ["played"]
