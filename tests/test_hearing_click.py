"""The sync click (spec.sync_click): timed on synthetic audio, rendered by the room
from what its output pin did, and the clock it gives is absolute (issue 11)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from robo_player.driver import open_port
from robo_player.errors import HearingError
from robo_player.hearing.align import PATTERN_US, align_clicks
from robo_player.hearing.click import find_clicks
from robo_player.performance import HeardNote
from robo_player.plan import Command, Op, Plan
from robo_player.sim.room import Room, RoomTake, _add_at, click_wave
from robo_player.spec import load_spec


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_click_time_recovered_on_synthetic_audio(sample_rate: int) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(3 * sample_rate) / sample_rate
    # a loud piano-like tone under the clicks (C4 and partials) and noise
    y = sum(0.1 / k * np.sin(2 * np.pi * 261.6 * k * t) for k in range(1, 9)) + rng.normal(0, 0.003, len(t))
    truth = [0.3123456, 1.00001, 1.7777, 2.5]
    for x in truth:
        _add_at(y, click_wave(sample_rate), x * sample_rate)
    got = find_clicks(y, sample_rate)
    assert len(got) == len(truth)
    err_us = (np.array(got) - truth) * 1e6
    assert np.max(np.abs(err_us)) < 50, err_us  # measured: 4-7 us


def test_no_clicks_in_a_piano_take() -> None:
    notes = [HeardNote(200_000 + 150_000 * i, 40 + 3 * i, 30.0 + 8 * i, 500_000 + 150_000 * i) for i in range(12)]
    y = RoomTake(Room(offset_s=0.1, drift_ppm=0.0), notes, [], 0).samples()
    assert find_clicks(y, 48000) == []


@pytest.mark.parametrize("drift_ppm", [-100.0, 100.0])
def test_click_alignment_is_absolute(drift_ppm: float) -> None:
    delay = 100
    starts = [0, 20_000_000]
    clicks = [s + d + delay for s in starts for d in PATTERN_US]
    notes = [HeardNote(9_000_000, 50, 80.0, 9_100_000), HeardNote(1_000_000, 72, 120.0, 1_200_000)]
    y = RoomTake(Room(offset_s=0.37, drift_ppm=drift_ppm), notes, [], 0, clicks).samples()
    clock = align_clicks(y, 48000, starts, delay, "test")
    assert clock.drift_ppm == pytest.approx(drift_ppm, abs=0.5)
    # an MCU time's sound maps back to that MCU time, no constant left over
    for t in (0, 10_000_000, 20_000_000):
        audio_s = (t * 1e-6 + 0.37) * (1 + drift_ppm * 1e-6)
        assert abs(clock.to_mcu_us(audio_s) - t) < 50.0


def test_click_alignment_says_what_it_heard() -> None:
    y = RoomTake(Room(offset_s=0.1, drift_ppm=0.0), [], [], 0, [200_000, 360_000]).samples()
    with pytest.raises(HearingError, match=r"sync pattern \(click output.*heard 2 of its strikes"):
        align_clicks(y, 48000, [0], 100, "take.wav")


def _click_plan(spec, drive: int) -> Plan:  # noqa: ANN001
    c = spec.sync_click
    return Plan(
        commands=[Command(500_000, Op.STRIKE, c.channel, drive, c.pulse_us, 0)],
        pipeline_delay_us=0, spec_name=spec.name, spec_hash=spec.spec_hash,
    )


def _pin_on_edge_s(dev, spec) -> float | None:  # noqa: ANN001
    """When the click output's pin went on (performance time, s), read from the
    firmware's own trace of its outputs (fw-host://, fw-avr://, and vmcu://, the model's),
    through the stream's timeline (the same mapping the room's outputs come through);
    None where the device keeps no trace (sim://: its pin goes on at the command's time)."""
    trace = getattr(dev, "last_trace", None)
    if trace is None:
        return None
    act = spec.actuators.by_role("sync_click").index
    on = [clock for clock, a, level in sorted(trace.changes) if a == act and level > 0]
    assert on, trace.changes  # the pulse at full drive switched the pin on
    return float(dev.last_session.timeline.t_us_for(on[0])) * 1e-6


# how far before its command a firmware's pin may go on (the stream's clock mapping: under
# simavr -137 and +29 us were measured; on the host a loaded machine's clock fit is given
# 1 ms; the model on virtual time: at its clock) and after
# (the late slack it still plays in, boards/*/board_config.h RP_LATE_SLACK_US: a command
# later than that is reported late, not played)
PIN_WINDOW_S = {"vmcu://": (1e-6, 1e-6), "fw-host://": (1e-3, 10e-3), "fw-avr://": (500e-6, 1e-3)}


@pytest.mark.parametrize(
    "url", ["sim://", "vmcu://", "fw-host://", pytest.param("fw-avr://", marks=pytest.mark.slow)]
)
def test_the_room_clicks_where_the_pin_went_on(spec, url: str) -> None:  # noqa: ANN001
    with open_port(f"{url}?sensor=audio&offset_s=0.2&drift_ppm=0", spec) as dev:
        perf = dev.play(_click_plan(spec, spec.sync_click.pwm_max))
        assert perf.audio is not None
        if perf.extra.get("commands", {}).get("late"):  # the OS held the host build past its slack
            pytest.skip(f"{url}: the click's command was reported late (a loaded machine)")
        got = find_clicks(perf.audio.samples(), perf.audio.sample_rate)
        # the room renders the pin, not the plan: its click is the pin's on-edge + the
        # click's delay, where the firmware's own trace puts that edge (the host build's
        # pin moves when the OS wakes it, 15-55 us late at load 6, 506 us seen once); the
        # host models put it at the command's time. The detector's error is 4-7 us (room
        # less pin edge on fw-host://: -4.1..+4.6 us over 20 plays), so 25 us tells the pin
        # from the plan wherever the pin is 30 us or more late.
        edge_s = _pin_on_edge_s(dev, spec)
        if edge_s is None:
            edge_s = 0.5
        else:  # the edge is this command's: within the firmware's slack of its clock
            early, late = PIN_WINDOW_S[url]
            assert -early <= edge_s - 0.5 <= late, edge_s
        want = 0.2 + edge_s + spec.sync_click.delay_us * 1e-6
        assert len(got) == 1 and abs(got[0] - want) < 25e-6, (got, want)
        assert dev.energised() == []  # the pulse ended: the output is off again
        # a pulse at level 0 never turns the pin on: no click (the room renders the pin, not the plan)
        perf = dev.play(_click_plan(spec, 0))
        assert perf.audio is not None and find_clicks(perf.audio.samples(), perf.audio.sample_rate) == []


def test_spec_without_a_click_has_no_click_actuator(spec) -> None:  # noqa: ANN001
    assert spec.actuators.by_role("sync_click").index == spec.sync_click.channel
    bare = replace(spec, sync_click=None)
    assert "sync_click" not in {a.role for a in bare.actuators}
    assert bare.spec_hash == spec.spec_hash  # plans and calibrations do not depend on it
