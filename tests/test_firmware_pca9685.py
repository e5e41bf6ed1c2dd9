"""The AVR firmware's PCA9685 output path under simavr, with the harness's model of the
chip on the I2C bus (firmware/sim/pca9685.c, twi.c): the bytes the firmware writes are
decoded into each channel's duty, in the trace at the cycle of the STOP that makes it
take effect (out_kind 1, level = duty in 1/4096).

Timing assertions use the firmware's clock in the trace; wall-clock deadlines only bound
how long a test waits before it fails.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from driver_helpers import SPEC_88, spec
from test_firmware import (
    AVR_ELF,
    AVR_HZ,
    MAX_WAIT_S,
    SIM_BIN,
    Link,
    configure,
    schedule,
    wait_done,
)
from test_firmware import (
    avr_built as avr_built,  # noqa: F401 (the session fixture)
)

from robo_player.driver.ports import open_port
from robo_player.plan import Command, Plan
from robo_player.plan import Op as PlanOp
from robo_player.protocol.framing import FrameKind
from robo_player.protocol.messages import ConfigReason, EventKind, Message, Op, State
from robo_player.protocol.schedule import TimedCommand

US = AVR_HZ // 1_000_000
PCA = 1  # out_kind
FULL_ON = 4096  # duty of a channel with its full-on bit
# A PCA9685 write (START, SLA+W, register, 4 bytes, STOP at 400 kHz: 56 SCL periods =
# 140 us, plus an interrupt per step: 215 us) is started that early by the firmware so its STOP
# lands on the commanded clock; the bound covers the interrupts of the UART and of the
# timer context that can delay a bus step, and two writes due together (one waits for
# the other: 3.2 ms apart in the plan below, so never here).
BUS_BOUND_US = 50.0
# A channel shows a latched value at the end of the running PWM period (the model, as
# the chip: 0 .. 1/f_PWM after the STOP); the firmware aims its STOPs half a period
# early, so each change lands within half a period of its clock, plus the bus's bound.
PRESCALE = 5  # the default: 1017 Hz
PERIOD_CYCLES = 4096 * (PRESCALE + 1) * AVR_HZ / 25e6
HALF_PERIOD_US = PERIOD_CYCLES / 2 / US
PCA_BOUND_US = HALF_PERIOD_US + BUS_BOUND_US


@dataclass
class PcaSim:
    proc: subprocess.Popen[str]
    link: Link
    trace: Path

    def rows(self) -> list[tuple[int, int, int, int]]:
        """(clock, addr, channel, duty) of every PCA9685 channel change."""
        out = []
        for line in self.trace.read_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            c, kind, addr, ch, lv = (int(x) for x in line.split())
            if kind == PCA:
                out.append((c, addr, ch, lv))
        return out

    def i2c(self) -> list[list[str]]:
        """The bus log: [cycle, event, addr, (byte,) ack]."""
        return [ln.split()[2:] for ln in self.trace.read_text().splitlines()
                if ln.startswith("# i2c ")]  # fmt: skip

    def summary(self) -> dict[str, int]:
        m = re.search(r"# pca9685 boards (\d+) transactions (\d+) bytes (\d+) nack_addr (\d+)",
                      self.trace.read_text())  # fmt: skip
        assert m, "the harness wrote no pca9685 summary"
        return {"boards": int(m[1]), "transactions": int(m[2]), "bytes": int(m[3]),
                "nack_addr": int(m[4])}  # fmt: skip

    def boards(self) -> dict[int, dict[str, float]]:
        """Each simulated board's registers at exit (the harness writes them then)."""
        pat = (r"# pca9685 0x([0-9a-f]+) mode1 \S+ mode2 \S+ prescale (\d+) pwm_hz ([\d.]+) "
               r"on (\d+) prescale_ignored (\d+)")
        return {int(m[1], 16): {"prescale": int(m[2]), "pwm_hz": float(m[3]), "on": int(m[4]),
                                "prescale_ignored": int(m[5])}
                for m in re.finditer(pat, self.trace.read_text())}  # fmt: skip

    def settle(self, us: int = 3_000) -> None:
        """Let ``us`` of simulated time pass (clock queries): a change latched by now shows
        within one PWM period (983 us at the default prescale), and the rows have it."""
        end = self.link.clock() + us * US
        while self.link.clock() < end:
            pass

    def stop(self) -> None:
        self.link.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def pca_sim(avr_built: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PcaSim]:  # noqa: F811
    boards = getattr(request, "param", "0x40-0x47")
    link_path = tmp_path / "avr.pty"
    trace = tmp_path / "avr.trace"
    proc = subprocess.Popen(
        [str(SIM_BIN), "--elf", str(AVR_ELF), "--pty-link", str(link_path), "--trace",
         str(trace), "--pca", boards, "--i2c-log", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and not line.startswith("PTY "):
        line = proc.stdout.readline()
    assert line.startswith("PTY "), proc.stderr.read() if proc.stderr else ""
    link = Link(str(link_path))
    s = PcaSim(proc, link, trace)
    try:
        link.sync()
        yield s
    finally:
        s.stop()


def pca_cfg(outs: list[tuple[int, int]], watchdog_ms: int = 2000, prescale: int = 5) -> list[Message]:
    """One actuator per (addr, channel), 12-bit, 5 s max on-time."""
    msgs = [Message.make("configure_begin", actuator_count=len(outs), max_concurrent=len(outs),
                         watchdog_ms=watchdog_ms, duty_window_ms=10_000, time_shift=4,
                         level_shift=0, pca_prescale=prescale, watchdog_drain_ms=0)]  # fmt: skip
    for a, (addr, ch) in enumerate(outs):
        msgs.append(
            Message.make(
                "configure_actuator", actuator=a, out_kind=PCA, out_addr=addr, out_channel=ch,
                pwm_max=4095, max_drive=4095, max_on_us=5_000_000, max_pulse_us=50_000,
                duty_permille=1000,
            )
        )  # fmt: skip
    return msgs


def duty(level: int) -> int:
    """The duty the firmware writes for a level of a 12-bit actuator."""
    return FULL_ON if level >= 4095 else level


def strike_plan(sp, groups: list[list[int]], gap_us: int, release_us: int, drive) -> Plan:
    """One strike per key of each group (``drive(n, key)``, 20 ms pulse, the spec's hold),
    released ``release_us`` after it; group ``n`` at 200 ms + ``n * gap_us``."""
    cmds: list[Command] = []
    for n, keys in enumerate(groups):
        t = 200_000 + n * gap_us
        for k in keys:
            key = sp.keys[k]
            hold = int(key.pwm_max * sp.strike.hold_duty)
            cmds.append(Command(t, PlanOp.STRIKE, key.channel, drive(n, key), 20_000, hold, note=n))
            cmds.append(Command(t + release_us, PlanOp.RELEASE, key.channel, note=n))
    plan = Plan(cmds, spec_name=sp.name, spec_hash=sp.spec_hash)
    plan.sort()
    return plan


def test_pca9685_strikes_holds_releases_through_the_driver() -> None:
    """fw-avr:// with the 88-key spec (six PCA9685 boards at 0x40..0x45): every strike's
    channel goes to its drive on time, to its hold after the pulse, and off at release."""
    sp = spec(SPEC_88)
    keys = [0, 17, 40, 63, 87]  # boards 0x40, 0x41, 0x42, 0x43, 0x45
    plan = strike_plan(sp, [[k] for k in keys], 3_200, 45_000,
                       lambda n, key: key.pwm_max if n == 0 else 1500 + 500 * n)  # one full-on
    with open_port("fw-avr://", sp) as dev:
        perf = dev.play(plan)
        res = dev.last_result
        tr = dev.last_trace
    assert not res.error, res.error
    assert res.counts() == {"played": len(plan)}
    assert tr is not None and tr.clock_hz == AVR_HZ
    # the levels each channel went through, and when, against what was sent
    errors_us: list[float] = []
    for o in res.outcomes:
        c = plan.commands[o.index]
        if c.op is not PlanOp.STRIKE:
            continue
        rel = next(p for p in res.outcomes
                   if plan.commands[p.index].op is PlanOp.RELEASE
                   and plan.commands[p.index].actuator == c.actuator)  # fmt: skip
        got = [(clk, lv) for clk, a, lv in tr.changes if a == c.actuator]
        assert [lv for _, lv in got] == [duty(c.drive), duty(c.hold), 0], (c, got)
        want = [o.clock, o.clock + c.pulse_us * US, rel.clock]
        errors_us += [(g - w) / US for (g, _), w in zip(got, want, strict=True)]
    assert len(errors_us) == 3 * len(keys)
    assert max(abs(e) for e in errors_us) <= PCA_BOUND_US, errors_us
    err = perf.extra["actuation_error_us"]
    assert err["matched"] == len(plan)
    assert sorted(n.pitch for n in perf.heard) == sorted(sp.keys[k].pitch for k in keys)
    assert err["p99"] <= PCA_BOUND_US + 5, err  # + the clock sync's conversion
    # every board answered, and configure's all-off overflowed no write queue
    assert perf.link is not None and perf.link["i2c_errors"] == 0, perf.link


def test_pca9685_repeated_keys_are_all_heard() -> None:
    """The simulated physics takes a PCA9685 channel's levels from the trace: strike,
    hold, off. (It took them for on/off edges, as for direct pins, and so counted each
    hold as the next strike: a key struck again was not heard; bwv66.6 on fw-avr://
    lost 68 of its 154 strikes.)"""
    sp = spec(SPEC_88)
    keys = [10, 10, 10, 50, 50]
    plan = strike_plan(sp, [[k] for k in keys], 90_000, 45_000, lambda n, key: 3000)
    with open_port("fw-avr://", sp) as dev:
        perf = dev.play(plan)
        res = dev.last_result
    assert res.counts() == {"played": len(plan)}
    assert sorted(n.pitch for n in perf.heard) == sorted(sp.keys[k].pitch for k in keys)


def test_pca9685_all_off_and_watchdog_turn_every_channel_off(pca_sim: PcaSim) -> None:
    """Four channels on two boards held on; all_off, then (held on again) the watchdog:
    ALL_LED_OFF goes to both boards first thing, and every channel goes off."""
    outs = [(0x40, 0), (0x40, 15), (0x41, 3), (0x41, 8)]
    watchdog_ms = 250
    cfg = pca_cfg(outs, watchdog_ms=watchdog_ms)
    for n_round, round_ in enumerate(("all_off", "watchdog"), 1):
        # a new configuration each round: the schedule's delta decoding starts afresh
        assert configure(pca_sim.link, cfg)["reason"] == ConfigReason.OK
        t = pca_sim.link.clock() + 100_000 * US
        on = [TimedCommand(t + i * 400 * US, Op.STRIKE, i, 3000, 2_000, 1000)
              for i in range(len(outs))]  # fmt: skip
        later = [TimedCommand(t + 2_000_000 * US, Op.RELEASE, 0)]
        schedule(pca_sim.link, on + later, n_act=len(outs), time_shift=4)
        wait_done(pca_sim.link, len(on))  # a configuration zeroes the counters
        mark = len(pca_sim.i2c())
        start = len(pca_sim.link.messages)
        if round_ == "all_off":
            assert pca_sim.link.send([Message.make("all_off")]).kind is FrameKind.ACK
            ev = pca_sim.link.wait_message(lambda m: m.name == "event", start)
            assert (ev["kind"], ev["clock"]) == (EventKind.FLUSHED, 1)
            assert pca_sim.link.status(7)["state"] == State.READY
        else:  # silence: the watchdog
            note = pca_sim.link.wait_message(lambda m: m.name == "shutdown_notice", start)
        pca_sim.settle()
        rows = pca_sim.rows()
        for addr, ch in outs:
            lv = [d for _, a, c, d in rows if (a, c) == (addr, ch)]
            assert lv == [3000, 1000, 0] * n_round, (round_, addr, ch, lv)
        # ALL_LED_OFF_H (0xFD) = 0x10 to both boards, first thing on the bus
        writes = [(w[2], w[3]) for w in pca_sim.i2c()[mark:] if w[1] == "write"]
        want = [("0x40", "0xfd"), ("0x40", "0x10"), ("0x41", "0xfd"), ("0x41", "0x10")]
        assert writes[:4] == want, writes[:12]
        if round_ == "watchdog":
            offs = [c for c, _, _, d in rows[-len(outs) :]]
            assert all(d == 0 for _, _, _, d in rows[-len(outs) :])
            # the two ALL_LED_OFF writes: their STOPs within 1 ms of the watchdog's
            # shutdown; a channel shows it at the end of its board's PWM period running
            # then (the chip's latency, up to a period: 983 µs at prescale 5), so the
            # offs come within 1 ms plus a period (they were held to 1 ms, which passed
            # or failed with the boards' PWM phase)
            base = int(re.findall(r"# timer1 clock = cycle - (\d+)", pca_sim.trace.read_text())[0])
            stops = [int(w[0]) - base for w in pca_sim.i2c()[mark:] if w[1] == "stop"]
            stops = [t for t in stops if t >= note["clock"]][:2]  # the first after it
            assert len(stops) == 2 and all(
                0 <= s - note["clock"] <= 1_000 * US for s in stops
            ), (stops, note)
            period = 4096 * (5 + 1) * US * 1_000_000 // 25_000_000  # pca_cfg: prescale 5
            assert 0 <= max(offs) - note["clock"] <= 1_000 * US + period, (offs, note)


@pytest.mark.parametrize("pca_sim", ["0x40"], indirect=True)
def test_pca9685_write_to_a_missing_board_turns_nothing_on(pca_sim: PcaSim) -> None:
    """Only 0x40 on the bus: writes to 0x41 are NACKed at the address and dropped (the
    firmware's bus-error path: STOP, counted, next job), nothing switches on, and the
    bus goes on working for 0x40. The all-call address 0x70 is refused at configure."""
    bad = pca_cfg([(0x40, 0), (0x70, 1)])
    res = configure(pca_sim.link, bad)
    assert (res["reason"], res["detail"]) == (ConfigReason.BAD_OUTPUT, 1)
    outs = [(0x41, 2), (0x40, 5)]
    assert configure(pca_sim.link, pca_cfg(outs))["reason"] == ConfigReason.OK
    t = pca_sim.link.clock() + 100_000 * US
    cmds = [
        TimedCommand(t, Op.STRIKE, 0, 4095, 5_000, 2000),  # board 0x41: not there
        TimedCommand(t + 1_000 * US, Op.STRIKE, 1, 2500, 5_000, 800),
        TimedCommand(t + 20_000 * US, Op.RELEASE, 0),
        TimedCommand(t + 20_000 * US, Op.RELEASE, 1),
    ]
    schedule(pca_sim.link, cmds, n_act=len(outs), time_shift=4)
    st = wait_done(pca_sim.link, len(cmds))
    assert st["played"] == len(cmds)
    pca_sim.settle()
    pca_sim.stop()
    nacked = [w for w in pca_sim.i2c() if w[1] == "start-write" and w[2] == "0x41"]
    # status.i2c_errors counts them: 0x41's six set-up transactions (at configure), its
    # strike and pulse end at least (its release may come after the status)
    assert 6 + 2 <= st["i2c_errors"] <= len(nacked), (st["i2c_errors"], len(nacked))
    rows = pca_sim.rows()
    assert all(a == 0x40 for _, a, _, _ in rows), rows
    assert [d for _, a, c, d in rows if (a, c) == (0x40, 5)] == [2500, 800, 0]
    assert nacked and all(w[-1] == "nack" for w in nacked)
    # an address NACK ends the transaction: no data byte ever went to 0x41
    assert not [w for w in pca_sim.i2c() if w[1] == "write" and w[2] == "0x41"]
    assert pca_sim.summary()["nack_addr"] == len(nacked)


def test_pca9685_writes_due_together_take_effect_at_one_stop(pca_sim: PcaSim) -> None:
    """Writes due at one clock on two boards (a chord; a strike and another note's
    release) go out chained by repeated STARTs into one STOP, at which both boards take
    their values (MODE2.OCH 0), aimed half a PWM period early: each change lands within
    half a period (plus the bus's bound) of its clock. Each write with its own STOP,
    centred on the clock, spread the pair over its bus time (issue 9 §7: p99 547 us
    against the 492 us promised)."""
    outs = [(0x40, 1), (0x41, 4)]
    assert configure(pca_sim.link, pca_cfg(outs))["reason"] == ConfigReason.OK
    t = pca_sim.link.clock() + 50_000 * US
    cmds = []
    for i in range(12):  # 7.3 ms apart: every phase of the 983 us grid comes up
        c = t + i * 7_300 * US
        for a in range(2):  # both boards on the same clocks: strike, release
            cmds += [TimedCommand(c, Op.STRIKE, a, 3000, 0, 800),
                     TimedCommand(c + 5_000 * US, Op.RELEASE, a)]  # fmt: skip
    cmds.sort(key=lambda c: c.clock)
    schedule(pca_sim.link, cmds, n_act=len(outs), time_shift=4)
    wait_done(pca_sim.link, len(cmds))
    pca_sim.settle()
    pca_sim.stop()
    text = pca_sim.trace.read_text()
    base = int(re.findall(r"# timer1 clock = cycle - (\d+)", text)[0])
    m = re.search(r"repeated_start (\d+)", text)
    assert m and int(m[1]) >= 24, text[-1500:]  # one per pair at least
    stops = sorted(int(w[0]) for w in pca_sim.i2c() if w[1] == "stop")
    rows = pca_sim.rows()
    shown = {o: sorted(clk for clk, a, c, _ in rows if (a, c) == o) for o in outs}
    errors_us = []
    for cmd in cmds:
        if cmd.actuator:
            continue  # the pair's first: the other's change must share its STOP
        for o in outs:
            x = min(shown[o], key=lambda x: abs(x - cmd.clock))
            errors_us.append((x - cmd.clock) / US)
        latched = [max(s for s in stops if s < min(shown[o], key=lambda x: abs(x - cmd.clock)) + base)
                   for o in outs]  # fmt: skip
        assert latched[0] == latched[1], (cmd, latched)
    assert len(errors_us) == 2 * 24
    assert max(abs(e) for e in errors_us) <= PCA_BOUND_US, errors_us


def test_pca9685_four_note_chords_land_within_their_bound() -> None:
    """4-note chords on the 88-key spec through fw-avr://: the writes due at one clock
    share the bus, and the firmware plans them as a group (shortest register tails,
    started so that their STOPs are centred on the clock less half a PWM period). One
    write after another from the clock (the firmware before) put the 4th strike
    690-730 us late, before the model's PWM period end."""
    sp = spec(SPEC_88)
    chords = [[3, 20, 41, 66], [10, 30, 50, 70], [5, 6, 7, 8], [60, 62, 64, 67]]
    plan = strike_plan(sp, chords, 60_000, 40_000, lambda n, key: key.pwm_max * 3 // 4)
    with open_port("fw-avr://", sp) as dev:
        dev.play(plan)
        res, tr = dev.last_result, dev.last_trace
    assert not res.error, res.error
    assert res.counts() == {"played": len(plan)}
    assert tr is not None
    strikes: list[float] = []
    others: list[float] = []
    for o in res.outcomes:
        c = plan.commands[o.index]
        got = sorted(clk for clk, a, _ in tr.changes if a == c.actuator)
        if c.op is PlanOp.STRIKE:
            strikes.append((got[0] - o.clock) / US)
            others.append((got[1] - o.clock - c.pulse_us * US) / US)  # pulse end
        else:
            others.append((got[2] - o.clock) / US)  # release
    assert len(strikes) == 16 and len(others) == 32
    assert max(abs(e) for e in strikes) <= 350 + HALF_PERIOD_US, strikes
    assert max(abs(e) for e in others) <= 500 + HALF_PERIOD_US, others


def test_pca9685_missing_board_counts_i2c_errors_in_the_link_statistics() -> None:
    """fw-avr:// with the 88-key spec but board 0x45 missing from the simulated bus
    (``pca_bus``): its keys' writes are NACKed, nothing of it switches on, the other
    boards play on time, and the firmware's count reaches ``Performance.link
    ["i2c_errors"]`` (what the play report's ``link`` dict carries)."""
    sp = spec(SPEC_88)
    keys = [0, 87]  # boards 0x40 and 0x45 (missing)
    plan = strike_plan(sp, [[k] for k in keys], 5_000, 40_000, lambda n, key: 2000)
    with open_port("fw-avr://?pca_bus=0x40,0x41,0x42,0x43,0x44", sp) as dev:
        perf = dev.play(plan)
        res, tr = dev.last_result, dev.last_trace
    assert not res.error, res.error
    # the firmware cannot tell: it ran every command
    assert res.counts() == {"played": len(plan)}
    assert tr is not None
    missing = sp.keys[87].channel
    assert [lv for _, a, lv in tr.changes if a == missing] == []
    assert [lv for _, a, lv in tr.changes if a == sp.keys[0].channel] == [2000, 1433, 0]
    assert perf.link is not None
    # 0x45's six set-up transactions at configure, then its strike, pulse end, release
    # (the last status comes after the release's write: the driver drains the queue)
    assert perf.link["i2c_errors"] >= 6 + 3, perf.link


def wait_trace(s: PcaSim, pred: Callable[[str], bool], what: str) -> str:
    """The first trace line that matches, waiting for the harness to write it. The link
    is only read (nothing is sent); the wall-clock deadline only bounds a failing test."""
    deadline = time.monotonic() + MAX_WAIT_S
    while time.monotonic() < deadline:
        for line in s.trace.read_text().splitlines():
            if pred(line):
                return line
        s.link.pump()  # a blocking read of 20 ms on the pty: the wait
    raise AssertionError(f"no {what} in the trace within {MAX_WAIT_S} s")


# after the MCU's reset, the PCA9685 channel must be off within this much simulated
# time: the boot's all-call write (START, 3 bytes, STOP at 400 kHz: about 75 us) runs in
# .init3, before avr-libc's start-up clears .bss (2.7 ms; measured: off 80 us after the
# reset; from main(), as first written, it was 2.77 ms)
BOOT_OFF_BOUND_US = 200 + 2 * HALF_PERIOD_US  # + the PWM period the off waits for


def test_pca9685_channels_go_off_when_the_mcu_resets_mid_hold(pca_sim: PcaSim) -> None:
    """A PCA9685 keeps its outputs running while the MCU resets. A PCA channel and a
    direct pin held on (long hold); the harness resets the MCU (SIGUSR1: the RESET pin,
    the boards keep their state). With no host command after the reset, the firmware's
    boot turns the channel off (ALL_LED_OFF_H full off to the all-call address 0x70,
    reaching a board it set up in its earlier run: the set-up keeps MODE1.ALLCALL), and
    the direct pin is off at the reset itself (every pin an input). The firmware before
    left the channel on until the next configure."""
    outs = [(0x40, 3)]
    cfg = pca_cfg(outs)
    cfg[0] = Message.make("configure_begin", actuator_count=2, max_concurrent=2,
                          watchdog_ms=2000, duty_window_ms=10_000, time_shift=4,
                          level_shift=0, pca_prescale=5, watchdog_drain_ms=0)  # fmt: skip
    cfg.append(Message.make("configure_actuator", actuator=1, out_kind=0, out_addr=0,
                            out_channel=0, pwm_max=4095, max_drive=4095,
                            max_on_us=5_000_000, max_pulse_us=50_000,
                            duty_permille=1000))  # fmt: skip
    assert configure(pca_sim.link, cfg)["reason"] == ConfigReason.OK
    t = pca_sim.link.clock() + 100_000 * US
    cmds = [
        TimedCommand(t, Op.STRIKE, 0, 3000, 5_000, 1000),
        TimedCommand(t, Op.STRIKE, 1, 4095, 5_000, 4095),
        TimedCommand(t + 4_000_000 * US, Op.RELEASE, 0),  # lost in the reset
        TimedCommand(t + 4_000_000 * US, Op.RELEASE, 1),
    ]
    schedule(pca_sim.link, cmds, n_act=2, time_shift=4)
    wait_done(pca_sim.link, 2)
    # the hold: duty 1000 on 0x40 channel 3 after the 5 ms pulse
    wait_trace(pca_sim, lambda ln: ln.endswith(" 1 64 3 1000"), "hold level")
    assert [lv for _, a, c, lv in pca_sim.rows() if (a, c) == (0x40, 3)] == [3000, 1000]
    pca_sim.proc.send_signal(signal.SIGUSR1)  # the MCU resets; nothing is sent after it
    reset = wait_trace(pca_sim, lambda ln: ln.startswith("# mcu reset at "), "reset")
    reset_cycle, reset_clock = int(reset.split()[5]), int(reset.split()[7])
    # run on, in simulated time, to the harness's next once-a-second cycle count
    wait_trace(pca_sim, lambda ln: ln.startswith("# cycles ") and
               int(ln.split()[2]) > reset_cycle + 1_000 * US, "cycle count after the reset")  # fmt: skip
    pca_sim.stop()
    rows = pca_sim.rows()
    after = [(c, lv) for c, a, ch, lv in rows if (a, ch) == (0x40, 3) and c >= reset_clock]
    assert after, "the PCA9685 channel stayed on after the MCU reset"
    assert after[0][1] == 0 and len(after) == 1, after
    off_us = (after[0][0] - reset_clock) / US
    assert 0 <= off_us <= BOOT_OFF_BOUND_US, off_us
    # the direct pin: an input (off) at the reset cycle itself
    pins = [(int(c), int(lv)) for c, k, _a, ch, lv in
            (ln.split() for ln in pca_sim.trace.read_text().splitlines()
             if ln and not ln.startswith("#")) if k == "0" and ch == "0"]  # fmt: skip
    assert pins == [(pins[0][0], 1), (reset_clock, 0)], (pins, reset_clock)
    # the boot's write, first thing on the bus after the reset: 0x70 ALL_LED_OFF_H = 0x10
    text = pca_sim.trace.read_text()
    boot = [ln.split()[2:] for ln in text[text.index("# mcu reset at "):].splitlines()
            if ln.startswith("# i2c ")]  # fmt: skip
    assert [w[1:] for w in boot[:4]] == [
        ["start-write", "0x70", "ack"], ["write", "0x70", "0xfd", "ack"],
        ["write", "0x70", "0x10", "ack"], ["stop", "0x70", "ack"]], boot[:6]  # fmt: skip


@pytest.mark.parametrize("pca_sim", ["0x40-0x42"], indirect=True)
def test_pca9685_pwm_frequency_comes_from_the_configuration(pca_sim: PcaSim) -> None:
    """configure_begin.pca_prescale is what each board is set up with (written while it
    sleeps, as the chip requires); a configuration with a new one sets up again the boards
    set up with the old one. 0x42 is never used, so never set up (power-on 30)."""
    outs = [(0x40, 0), (0x41, 3)]
    for prescale in (11, 60, 60):
        assert configure(pca_sim.link, pca_cfg(outs, prescale=prescale))["reason"] == ConfigReason.OK
        t = pca_sim.link.clock() + 50_000 * US
        on = [TimedCommand(t + i * 400 * US, Op.STRIKE, i, 3000, 2_000, 0) for i in range(len(outs))]
        schedule(pca_sim.link, on, n_act=len(outs), time_shift=4)
        wait_done(pca_sim.link, len(on))
    pca_sim.settle()
    rows = pca_sim.rows()
    assert [d for _, a, c, d in rows if (a, c) == (0x40, 0)][-2:] == [3000, 0]
    pca_sim.stop()
    boards = pca_sim.boards()
    assert set(boards) == {0x40, 0x41, 0x42}
    for addr in (0x40, 0x41):
        b = boards[addr]
        assert b["prescale"] == 60 and b["prescale_ignored"] == 0, (addr, b)
        assert abs(b["pwm_hz"] - 25e6 / (4096 * 61)) < 0.1
    assert boards[0x42]["prescale"] == 30  # the chip's power-on value: never touched


def test_pca9685_changes_show_at_the_end_of_the_pwm_period(pca_sim: PcaSim) -> None:
    """The model shows a latched value at the end of the PWM period running at its STOP,
    as the chip does: every channel change lies on its board's period grid (counted
    from its wake, 4096 (PRE_SCALE + 1) / 25 MHz), at the first grid point after the
    STOP before it, and the firmware's half-period lead centres the changes on their
    clocks (some land early, some late; none more than half a period plus the bus)."""
    outs = [(0x40, 1), (0x40, 9), (0x41, 4)]
    assert configure(pca_sim.link, pca_cfg(outs))["reason"] == ConfigReason.OK
    t = pca_sim.link.clock() + 50_000 * US
    cmds = []
    for i in range(24):  # 7.3 ms apart: against a 983 us grid, every phase comes up
        c = t + i * 7_300 * US
        cmds += [TimedCommand(c, Op.STRIKE, i % 3, 3000, 3_000, 800),
                 TimedCommand(c + 5_000 * US, Op.RELEASE, i % 3)]  # fmt: skip
    cmds.sort(key=lambda c: c.clock)
    schedule(pca_sim.link, cmds, n_act=len(outs), time_shift=4)
    wait_done(pca_sim.link, len(cmds))
    pca_sim.settle()
    pca_sim.stop()
    text = pca_sim.trace.read_text()
    base = int(re.findall(r"# timer1 clock = cycle - (\d+)", text)[0])
    log = pca_sim.i2c()
    wakes = {int(w[2], 16): int(w[0]) for w in log if w[1] == "wake"}
    stops = sorted(int(w[0]) for w in log if w[1] == "stop")
    rows = [r for r in pca_sim.rows() if r[0] + base > max(wakes.values())]
    assert len(rows) >= 24 * 3, len(rows)  # strike, pulse end, release of each
    for clk, addr, _ch, _lv in rows:
        cycle = clk + base
        k = round((cycle - wakes[addr]) / PERIOD_CYCLES)
        # simavr runs a cycle timer at the next instruction boundary: up to 4 cycles on
        assert abs(cycle - (wakes[addr] + k * PERIOD_CYCLES)) <= 5, (clk, addr)
        stop = max(s for s in stops if s < cycle)
        assert 0 < cycle - stop <= PERIOD_CYCLES + 5, (clk, addr, stop)
    # against the commands' clocks: strikes and releases (the pulse ends follow them)
    shown = {(a, c): sorted(clk for clk, a2, c2, _ in rows if (a2, c2) == (a, c)) for a, c in outs}
    errors_us = []
    for cmd in cmds:
        times = shown[outs[cmd.actuator]]
        errors_us.append(min((x - cmd.clock for x in times), key=abs) / US)
    assert max(abs(e) for e in errors_us) <= PCA_BOUND_US, errors_us
    assert min(errors_us) < -HALF_PERIOD_US / 3 and max(errors_us) > HALF_PERIOD_US / 3, errors_us
