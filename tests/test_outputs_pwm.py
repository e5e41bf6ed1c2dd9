"""Direct AVR pins under software PWM (firmware/boards/avr/out_pwm.c): the energy the
physics hears is measured from the pin trace, period by period, never taken from the plan."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from robo_player.driver.trace import (
    SOFT_PWM_HZ,
    SOFT_PWM_PERIOD_US,
    Trace,
    outputs_from_trace,
    soft_pwm_levels,
)
from robo_player.sim import mcu_process as fwmod

FW = Path(__file__).resolve().parents[1] / "firmware"
TOP = 2_000_000 // SOFT_PWM_HZ - 1  # Timer3's TOP: the period is TOP + 1 ticks of 0.5 us


def test_period_is_the_firmwares() -> None:
    text = (FW / "boards" / "avr" / "out_pwm.h").read_text()
    hz = int(re.search(r"#define RP_SOFT_PWM_HZ (\d+)", text).group(1))  # type: ignore[union-attr]
    assert hz == SOFT_PWM_HZ
    assert SOFT_PWM_PERIOD_US == (2_000_000 // hz) / 2.0


def _off_ticks(level: int, pwm_max: int) -> int:
    """out_pwm.c: floor(level * floor(TOP * 256 / pwm_max) / 256) ticks of 0.5 us."""
    return max(1, level * ((TOP << 8) // pwm_max) >> 8)


def _firmware_pin(t0: float, pulse_us: float, drive: int, hold: int, release: float,
                  pwm_max: int = 255, phase: float = 700.0, late: dict[int, float] | None = None,
                  ) -> list[tuple[float, int]]:  # fmt: skip
    """The edges out_pwm.c gives one pin (µs): on at the strike, PWM at ``drive`` on the
    running period grid (``phase``: where the grid starts), ``hold`` from the pulse end,
    off at the release (or in its off time). ``late``: period index -> µs an interrupt
    came late there (its on edge)."""
    per = SOFT_PWM_PERIOD_US
    late = late or {}
    edges: list[tuple[float, int]] = [(t0, 1)]
    on = True
    k = int((t0 - phase) // per) + 1
    first = True
    while True:
        g = phase + k * per + late.get(k, 0.0)
        if g >= release:
            break
        level = drive if g - per < t0 + pulse_us else hold
        off_t = phase + k * per + _off_ticks(level, pwm_max) / 2.0
        if not first or not on:  # the period start turns it on (it may still be on)
            if not on:
                edges.append((g, 1))
                on = True
        first = False
        if off_t >= release:
            break
        edges.append((off_t, 0))
        on = False
        k += 1
    if on:
        edges.append((release, 0))
    return edges


def _trace(edges: dict[int, list[tuple[float, int]]]) -> Trace:
    ch = [(round(t * 16), a, lv) for a, es in edges.items() for t, lv in es]
    return Trace(clock_hz=16_000_000, changes=sorted(ch))


@pytest.mark.parametrize("phase", [0.0, 300.0, 1500.0, 2000.0])
def test_strike_and_hold_levels_come_from_the_on_time(phase: float) -> None:
    edges = _firmware_pin(10_000.0, 35_000.0, 137, 89, 70_000.0, phase=phase)
    lv = soft_pwm_levels(_trace({5: edges}), {5}, {5: 255})
    assert lv[0] == (160_000, 5, 137)  # at the strike's own edge, its drive
    assert [x[2] for x in lv] == [137, 89, 0]
    # the hold starts with the first period after the pulse's end
    assert 45_000 <= lv[1][0] / 16 <= 45_000 + 2 * SOFT_PWM_PERIOD_US
    # the release (at 70 ms) in the PWM's off time has no edge: it is put midway between
    # the last falling edge and the next period start, within half a period of it
    assert abs(lv[-1][0] / 16 - 70_000) <= SOFT_PWM_PERIOD_US / 2


def test_a_release_without_an_edge_is_not_early_on_average() -> None:
    # over the release's phases within the PWM period, the read release time errs both
    # ways and by little on average (the last falling edge alone was early by half the
    # off time: a longer key return before the next strike than the plan's)
    errs = []
    for k in range(16):
        rel = 70_000.0 + k * SOFT_PWM_PERIOD_US / 16
        edges = _firmware_pin(10_000.0, 35_000.0, 137, 89, rel, phase=300.0)
        lv = soft_pwm_levels(_trace({5: edges}), {5}, {5: 255})
        errs.append(lv[-1][0] / 16 - rel)
    assert max(errs) > 0 > min(errs)
    assert abs(sum(errs) / len(errs)) < 0.1 * SOFT_PWM_PERIOD_US
    assert all(abs(e) <= SOFT_PWM_PERIOD_US / 2 for e in errs)


def test_a_late_interrupt_does_not_split_the_level() -> None:
    edges = _firmware_pin(0.0, 35_000.0, 200, 89, 80_000.0, late={6: 90.0, 30: 60.0})
    assert [x[2] for x in soft_pwm_levels(_trace({1: edges}), {1}, {1: 255})] == [200, 89, 0]


def test_a_missed_off_right_after_the_strike_is_an_outlier() -> None:
    # the first period after the strike's stretch ran on to the next period start (its
    # off interrupt waited behind the core's timer): neither it nor the strike's first
    # stretch sets the level
    edges = _firmware_pin(0.0, 30_000.0, 147, 89, 70_000.0, phase=1000.0)
    rise = [t for t, lv in edges if lv][1:3]  # the 2nd and 3rd rising edges
    edges = [(t, lv) for t, lv in edges if not (lv == 0 and rise[0] < t < rise[1])]
    edges.append((rise[1] - 30.0, 0))
    edges.sort()
    assert [x[2] for x in soft_pwm_levels(_trace({6: edges}), {6}, {6: 255})] == [147, 89, 0]


def test_full_drive_is_a_continuous_stretch() -> None:
    # a full-drive pulse (the pin on for 35 ms), then a 35 % hold
    edges = [(1000.0, 1), (36_000.0, 0)]
    edges += _firmware_pin(36_500.0, 0.0, 89, 89, 90_000.0, phase=36_500.0)[0:]
    lv = soft_pwm_levels(_trace({2: edges}), {2}, {2: 255})
    assert [x[2] for x in lv[:2]] == [255, 89] and lv[-1][2] == 0
    # what the AVR did before software PWM (a pin high for the whole hold) is full drive:
    # the physics hears what the pin did, not the 35 % the plan asked for
    lv = soft_pwm_levels(_trace({3: [(0.0, 1), (60_000.0, 0)]}), {3}, {3: 255})
    assert [x[2] for x in lv] == [255, 0]


def test_outputs_from_trace_has_every_level_in_performance_time() -> None:
    edges = _firmware_pin(5_000.0, 30_000.0, 180, 89, 60_000.0)
    tr = _trace({4: edges, 7: []})
    tr.changes.append((16 * 20_000, 9, 300))  # a PCA9685 channel: its level as traced
    tr.changes.sort()
    out = outputs_from_trace(tr, lambda c: c / 16 - 1000, {4: 255, 9: 4095}, {4})
    rows = list(zip(out.t_us.tolist(), out.actuator.tolist(), out.level.tolist(), strict=True))
    assert rows[0] == (4000, 4, 180)
    assert (19_000, 9, 300) in rows
    assert [r[2] for r in rows if r[1] == 4] == [180, 89, 0]


HAVE_AVR = (fwmod.SIM_BIN.exists() and fwmod.AVR_ELF.exists()) or (
    shutil.which("avr-gcc") is not None and shutil.which("simavr") is not None
)


@pytest.mark.skipif(not HAVE_AVR, reason="no AVR build and no avr-gcc/simavr")
def test_sim_and_fw_avr_hear_the_same_velocities() -> None:
    """piano-61-diy: one plan through sim:// and fw-avr:// (simavr, about 20 s): every
    note heard on both, velocities equal within the sensor's noise (1 unit s.d.)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from driver_helpers import SPEC_61, make_plan, spec

    from robo_player.driver.ports import open_port

    sp = spec(SPEC_61)
    plan = make_plan(sp, notes=12, gap_us=120_000, chord=2, pulse_us=35_000, busy_us=400_000)
    heard = {}
    for url in ("sim://", "fw-avr://"):
        with open_port(url, sp) as dev:
            perf = dev.play(plan)
        heard[url] = sorted(perf.heard, key=lambda h: (h.pitch, h.t_us))
        if url == "fw-avr://":
            err = perf.extra["actuation_error_us"]
            assert err["matched"] == 12 and err["p99"] <= 20.0, err
    a, b = heard["sim://"], heard["fw-avr://"]
    assert [h.pitch for h in a] == [h.pitch for h in b] and len(a) == 12
    for x, y in zip(a, b, strict=True):
        assert abs(x.velocity - y.velocity) <= 2.0, (x, y)
        assert abs(x.t_us - y.t_us) <= 1000, (x, y)
