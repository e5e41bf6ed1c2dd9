"""The C scheduler and its Python model give the same coil events for random plans.

The same random command streams (strikes with pulse and hold, sets, releases; actuator
indices up to 299, so the wire's escape for indices from 127 on and the firmware's
16-bit indices are exercised; up to 300 actuators configured) go, byte for byte, to the
host build of the firmware (``fw-host://``'s process, on a pty, real time) and to the
firmware's Python model (``VirtualMCU``, what ``vmcu://`` runs, on virtual time). Both
traces must hold the same output changes per actuator: the same levels in the same
order, at the same clocks (the host build writes the clock it actually switched at: a
few hundred µs of OS scheduling late, bounded here by the firmware's late slack), and
the same status counters (played, late, refused, cutoffs). A run in which the host
process was descheduled past that slack (its status counts late commands: the model,
on virtual time, never is) says nothing about the scheduler and is skipped. The host
build runs with ``--realtime 1``, as ``fw-host://`` runs it (the OS's real-time class
as root, else nice -10), so that other work on the machine seldom holds it; the
watchdog test also measures how long the OS held it (``run_delay_us``: a pulse end or
the drain's end held past the slack leaves no late command to say so).
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from test_firmware import (
    HOST_BIN,
    LATE_SLACK_US,
    MAX_WAIT_S,
    Link,
    Trace,
    configure,
    fw_built,  # noqa: F401  (a fixture)
    wait_done,
)

from robo_player.protocol.framing import Frame, FrameDecoder, FrameKind
from robo_player.protocol.messages import (
    ConfigReason,
    Message,
    Op,
    ShutdownReason,
    config_hash,
    decode_messages,
    encode_messages,
)
from robo_player.protocol.schedule import ScheduleEncoder, TimedCommand, pack
from robo_player.sim.vmcu import DUTY_POLL_US, MCUConfig, VirtualMCU

LEAD_US = 250_000  # the first command this far after "now": every frame is in by then
SPAN_US = 120_000  # commands within this window
# the host build's output clock vs the model's: OS scheduling, up to the firmware's own
# late slack (what it still plays as on time: boards/host/board_config.h)
TIME_TOL_US = LATE_SLACK_US
# the most the OS may have held the host build (runnable, not running) over a watchdog
# example for it to say something: past this a pulse end or the drain's end may be
# later than the slack (run_delay_us)
HELD_MAX_US = TIME_TOL_US // 2
MAX_ON_US = (40_000, 1_000_000)  # two limit sets: a short max on-time cuts some holds
COUNTERS = ("played", "late", "refused", "cutoffs")


@dataclass(frozen=True)
class Case:
    n_act: int
    max_concurrent: int
    cmds: tuple[TimedCommand, ...]  # clocks relative to the base
    duty: tuple[int, int] = (600_000, 1000)  # duty_window_ms, duty_permille


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n_act = draw(st.sampled_from((4, 130, 300)))
    wide = [a for a in (0, 1, 126, 127, 128, 129, n_act - 1) if a < n_act]
    acts = st.one_of(st.sampled_from(wide), st.integers(0, n_act - 1))
    cmds = []
    for _ in range(draw(st.integers(1, 20))):
        # clocks on a 10 µs grid, pulses 5 µs off it: a pulse end never ties with a
        # command (ties have their own test below: test_c_scheduler_and_model_agree_on_
        # concurrency_ties)
        t = draw(st.integers(0, SPAN_US // 10)) * 10
        a = draw(acts)
        op = draw(st.sampled_from((Op.STRIKE, Op.STRIKE, Op.RELEASE, Op.SET)))
        if op is Op.STRIKE:
            pulse = draw(st.sampled_from((0, 5_005, 10_005, 20_005, 25_005)))
            cmds.append(TimedCommand(t, op, a, draw(st.integers(1, 4095)), pulse,
                                     draw(st.sampled_from((0, 800, 4095)))))  # fmt: skip
        elif op is Op.SET:
            cmds.append(TimedCommand(t, op, a, draw(st.integers(0, 4095))))
        else:
            cmds.append(TimedCommand(t, op, a))
    cmds.sort(key=lambda c: c.clock)
    return Case(n_act, draw(st.integers(1, 4)), tuple(cmds))


def cfg_for(case: Case, watchdog_ms: int = 5_000, drain_ms: int = 0) -> list[Message]:
    msgs = [
        Message.make(
            "configure_begin", actuator_count=case.n_act, max_concurrent=case.max_concurrent,
            watchdog_ms=watchdog_ms, duty_window_ms=case.duty[0], time_shift=0, level_shift=0,
            pca_prescale=5, watchdog_drain_ms=drain_ms,
        )
    ]  # fmt: skip
    for a in range(case.n_act):
        msgs.append(
            Message.make(
                "configure_actuator", actuator=a, out_kind=0, out_addr=a >> 8,
                out_channel=a & 255, pwm_max=4095, max_drive=4095,
                max_on_us=MAX_ON_US[a % 2], max_pulse_us=30_000, duty_permille=case.duty[1],
            )
        )  # fmt: skip
    return msgs


def payloads(case: Case, base: int) -> list[bytes]:
    enc = ScheduleEncoder(case.n_act, 0)
    items = [
        it
        for c in case.cmds
        for it in enc.add(TimedCommand(base + c.clock, c.op, c.actuator, c.level, c.pulse_us,
                                       c.hold)).items
    ]  # fmt: skip
    return [p for p, _ in pack(items)]


def end_us(case: Case) -> int:
    return SPAN_US + max(MAX_ON_US) + 50_000


# ---- the Python model ------------------------------------------------------------------
def run_model(case: Case) -> tuple[list[tuple[int, int, int]], dict[str, int]]:
    rows, st_, _ = run_model_wd(case)
    return rows, {k: st_[k] for k in COUNTERS}


def run_model_wd(
    case: Case,
    watchdog_ms: int = 5_000,
    drain_ms: int = 0,
    last_rel: int | None = None,
    duty_poll: tuple[int, int] = (DUTY_POLL_US, 0),
) -> tuple[list[tuple[int, int, int]], dict[str, int], int | None]:
    """The model's output changes and counters (clocks relative to the base), and the
    clock of its watchdog's shutdown_notice (None if none). ``last_rel``: one more
    frame (a get_clock) at this clock relative to the base, after the schedule, as the
    host build's test sends it; then silence."""
    cfg = MCUConfig(  # boards/host/board_config.h
        clock_hz=1_000_000,
        queue_size=1024,
        max_actuators=512,
        late_slack_us=10_000,
        duty_poll_us=duty_poll[0],
        duty_poll_phase_us=duty_poll[1],
    )
    mcu = VirtualMCU(cfg, random.Random(1))
    seq = 0
    t = 1.0

    def send(payload: bytes, dt: float = 0.001) -> None:
        nonlocal seq, t
        mcu.receive(Frame(FrameKind.DATA, seq, 0, payload).encode(), t)
        seq = (seq + 1) % 64
        t += dt

    mcu.receive(Frame(FrameKind.SYNC, 0, 0).encode(), t)
    msgs = cfg_for(case, watchdog_ms, drain_ms)
    for i in range(0, len(msgs), 4):  # as test_firmware.configure() sends them
        send(encode_messages(msgs[i : i + 4]))
    send(Message.make("configure_end", hash=config_hash(msgs)).encode())
    assert mcu.state.name == "READY"
    base = mcu.clock_at(t) + LEAD_US
    for p in payloads(case, base):
        send(p, 0.0001)  # 100 µs apart: the host build's last frame comes no sooner
    if last_rel is not None:
        t = max(t, mcu.time_of(base + last_rel))
        send(Message.make("get_clock", tag=9).encode())
    mark = len(mcu.outbox)
    mcu.run_until(base + end_us(case))
    rows = [(c - base, a, lv) for c, a, lv in mcu.trace if c >= base]
    st_ = mcu.status(0, base + end_us(case))
    notes = [
        m["clock"] - (base & 0xFFFFFFFF)
        for f in FrameDecoder().feed(b"".join(mcu.outbox[mark:]))
        if f.kind is FrameKind.DATA
        for m in decode_messages(f.payload)
        if m.name == "shutdown_notice"
    ]
    return rows, {k: st_[k] for k in (*COUNTERS, "flushed")}, (notes[0] if notes else None)


# ---- the C firmware on the host ---------------------------------------------------------
@dataclass
class Host:
    proc: subprocess.Popen[str]
    link: Link
    trace: Trace


@pytest.fixture(scope="module")
def host(fw_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:  # noqa: F811
    d = tmp_path_factory.mktemp("fw_property")
    pty_link, trace = d / "fw.pty", d / "trace.txt"
    # --realtime 1, as fw-host:// runs it: the OS's real-time class where it allows it
    # (root), else nice -10. At a normal priority, beside other work on 2 cores (load
    # 8-10), the OS held it 0-220 ms in a watchdog example and a pulse end or the
    # drain's end up to 11.6 ms late (past the slack: no command late to say so)
    proc = subprocess.Popen(
        [str(HOST_BIN), "--pty-link", str(pty_link), "--trace", str(trace), "--realtime", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PTY "), line
    link = Link(str(pty_link))
    try:
        link.sync()
        yield Host(proc, link, Trace(trace))
    finally:
        link.close()
        proc.terminate()
        proc.wait(timeout=10)


def run_host(h: Host, case: Case) -> tuple[list[tuple[int, int, int]], dict[str, int]]:
    rows, st_, _ = run_host_held(h, case)
    return rows, st_


def run_host_held(
    h: Host, case: Case
) -> tuple[list[tuple[int, int, int]], dict[str, int], int]:
    """As run_host, with how long the OS held the host build meanwhile (µs,
    :func:`run_delay_us`)."""
    assert configure(h.link, cfg_for(case))["reason"] == ConfigReason.OK
    mark = len(h.trace.rows())
    held0 = run_delay_us(h.proc.pid)
    base = h.link.clock() + LEAD_US
    for p in payloads(case, base):
        h.link.send(p)
    wait_done(h.link, len(case.cmds))
    deadline = time.monotonic() + MAX_WAIT_S
    while h.link.clock() - base < end_us(case) and time.monotonic() < deadline:
        h.link.pump()  # a 20 ms read: waits on the device's own clock
    # the status first: the clock's reply may leave before that loop pass's timer work
    # reaches the trace file (flushed at the pass's end); the status's reply comes after
    st_ = h.link.status(3)
    held = run_delay_us(h.proc.pid) - held0
    rows = [(c - base, a, lv) for c, a, lv in h.trace.rows()[mark:] if c >= base - 1000]
    return rows, {k: st_[k] for k in COUNTERS}, held


def run_host_unheld(h: Host, case: Case) -> tuple[list[tuple[int, int, int]], dict[str, int], int]:
    """As run_host_held, run again (up to 3 tries) while a command came late or the OS held
    the host build past HELD_MAX_US: a run the OS held back past the late slack says
    nothing about the firmware (the module's docstring); a late command shows in the
    counters, a pulse end or a duty poll held back only on the OS's side (CI, session 31: a
    pulse end 13.8 ms late, no command late; session 33, at load 10: a duty cut 759 µs
    early). The caller does not count a run that stayed held (``assume``)."""
    for _ in range(3):
        rows, st_, held = run_host_held(h, case)
        if st_["late"] == 0 and held <= HELD_MAX_US:
            break
    return rows, st_, held


def by_actuator(rows: list[tuple[int, int, int]]) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for c, a, lv in rows:
        out.setdefault(a, []).append((c, lv))
    return out


def same_changes(
    model_rows: list[tuple[int, int, int]], host_rows: list[tuple[int, int, int]], case: Case
) -> None:
    """The same levels per actuator in the same order, the host build's at most its late
    slack after the model's."""
    m, h = by_actuator(model_rows), by_actuator(host_rows)
    assert sorted(m) == sorted(h), (m, h, case)
    for a in m:
        assert [lv for _, lv in h[a]] == [lv for _, lv in m[a]], (a, h[a], m[a], case)
        late = [hc - mc for (hc, _), (mc, _) in zip(h[a], m[a], strict=True)]
        assert all(0 <= d <= TIME_TOL_US for d in late), (a, late, case)


@settings(
    max_examples=12,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_c_scheduler_and_python_model_give_the_same_coil_events(host: Host, case: Case) -> None:
    model_rows, model_st = run_model(case)
    host_rows, host_st, held = run_host_unheld(host, case)
    assume(host_st["late"] == 0 and held <= HELD_MAX_US)
    assert host_st == model_st, (host_st, model_st, case)
    same_changes(model_rows, host_rows, case)


# ---- the concurrency tie: a strike on the tick where another pulse ends ------------------
@st.composite
def tie_cases(draw: st.DrawFn) -> Case:
    """Strikes on a 1 ms grid with whole-millisecond pulses, on few coils with a cap of
    1 or 2: a pulse often ends on the tick of another strike (and of a release or a
    strike on its own coil)."""
    n_act = draw(st.sampled_from((3, 6)))
    cmds = []
    for _ in range(draw(st.integers(4, 16))):
        t = draw(st.integers(0, 40)) * 1000
        a = draw(st.integers(0, n_act - 1))
        if draw(st.integers(0, 4)):
            pulse = draw(st.sampled_from((1_000, 2_000, 3_000, 5_000)))
            cmds.append(TimedCommand(t, Op.STRIKE, a, 3000, pulse, draw(st.sampled_from((0, 800)))))
        else:
            cmds.append(TimedCommand(t, Op.RELEASE, a))
    cmds.sort(key=lambda c: c.clock)
    return Case(n_act, draw(st.integers(1, 2)), tuple(cmds))


def _ties(case: Case) -> int:
    """Strikes at a clock where a strike on another coil ends its pulse."""
    ends = {(c.clock + c.pulse_us, c.actuator) for c in case.cmds if c.op is Op.STRIKE}
    return sum(
        1
        for c in case.cmds
        if c.op is Op.STRIKE and any(t == c.clock and a != c.actuator for t, a in ends)
    )


TIE = Case(
    3,
    1,
    (
        TimedCommand(0, Op.STRIKE, 0, 3000, 2_000, 0),
        TimedCommand(2_000, Op.STRIKE, 1, 3000, 2_000, 800),  # on the tick 0's pulse ends
        TimedCommand(4_000, Op.STRIKE, 2, 3000, 1_000, 0),  # on the tick 1's pulse ends
        TimedCommand(9_000, Op.RELEASE, 1),
    ),
)


def _same_events(host: Host, case: Case, tries: int = 1) -> dict[str, int] | None:
    """The host build's counters, after checking them and its output changes against the
    model's; None when the host fell behind its late slack in every try (the OS, not the
    scheduler: see the module's docstring)."""
    model_rows, model_st = run_model(case)
    for _ in range(tries):
        host_rows, host_st = run_host(host, case)
        if host_st["late"] == 0:
            break
    else:
        return None
    assert host_st == model_st, (host_st, model_st, case)
    m, h = by_actuator(model_rows), by_actuator(host_rows)
    assert sorted(m) == sorted(h), (m, h, case)
    for a in m:
        assert [lv for _, lv in h[a]] == [lv for _, lv in m[a]], (a, h[a], m[a], case)
    return host_st


def test_a_strike_on_the_tick_another_pulse_ends_is_played(host: Host) -> None:
    """Issue 9 §7: the C core decided such a strike before the ending pulse's deadline and
    refused it for concurrency; the planner and the model count the ending pulse as
    gone (rules.pulse_counts_at). With a cap of 1, all three strikes play."""
    st_ = _same_events(host, TIE, tries=3)
    if st_ is None:
        pytest.skip("the host process fell behind its late slack 3 times (a loaded machine)")
    assert (st_["played"], st_["refused"]) == (4, 0), st_


# Issue 9 (docs/hardware.md): 4 pulses end on the tick where 3 strikes start; the C core
# ran the strikes first and then each pulse end in a pass of its own (on the AVR 166-454
# us late: 7 coils at strike drive at once). Both now switch the ending pulses first.
ENDS_AND_STRIKES = Case(
    8,
    8,
    (
        *(TimedCommand(0, Op.STRIKE, a, 3000, 2_000, 1200) for a in range(4)),
        *(TimedCommand(2_000, Op.STRIKE, a, 3000, 3_000, 0) for a in range(4, 7)),
        TimedCommand(2_000, Op.STRIKE, 7, 3000, 2_000, 0),  # its own pulse ends here too
        *(TimedCommand(9_000, Op.RELEASE, a) for a in range(4)),
    ),
)


def _ends_before_strikes(rows: list[tuple[int, int, int]]) -> None:
    """In trace order (the order the outputs were written), every pulse end of coils 0..3
    (to their hold, 1200) comes before every strike of coils 4..6 (3000), and no later."""
    ends = [(i, c) for i, (c, a, lv) in enumerate(rows) if a < 4 and lv == 1200]
    strikes = [(i, c) for i, (c, a, lv) in enumerate(rows) if 4 <= a < 7 and lv == 3000]
    assert len(ends) == 4 and len(strikes) == 3, rows
    assert max(i for i, _ in ends) < min(i for i, _ in strikes), rows
    assert max(c for _, c in ends) <= min(c for _, c in strikes), rows


def test_pulses_ending_on_a_strike_tick_go_off_before_the_strikes(host: Host) -> None:
    model_rows, model_st = run_model(ENDS_AND_STRIKES)
    _ends_before_strikes(model_rows)
    assert [c for c, a, lv in model_rows if a < 4 and lv == 1200] == [2_000] * 4
    assert (model_st["played"], model_st["refused"]) == (12, 0), model_st
    for _ in range(3):
        host_rows, host_st = run_host(host, ENDS_AND_STRIKES)
        if host_st["late"] == 0:
            break
    else:
        pytest.skip("the host process fell behind its late slack 3 times (a loaded machine)")
    assert host_st == model_st, (host_st, model_st)
    same_changes(model_rows, host_rows, ENDS_AND_STRIKES)
    _ends_before_strikes(host_rows)


# found in session 10: on a tick with a coil's command after a repeated coil's (two
# batches), that coil's pulse end goes out with the first batch, so its re-strike needs
# a slot of the cap (refused at 1); the model had kept the pulse running
TIE_SECOND_BATCH = Case(6, 1, (
    TimedCommand(4000, Op.STRIKE, 3, 3000, 1000, 800), TimedCommand(6000, Op.RELEASE, 0),
    TimedCommand(6000, Op.STRIKE, 0, 3000, 5000, 800), TimedCommand(15000, Op.STRIKE, 2, 3000, 2000, 800),
    TimedCommand(15000, Op.STRIKE, 0, 3000, 2000, 800), TimedCommand(20000, Op.STRIKE, 1, 3000, 3000, 0),
    TimedCommand(23000, Op.STRIKE, 4, 3000, 1000, 800), TimedCommand(23000, Op.RELEASE, 4),
    TimedCommand(23000, Op.STRIKE, 3, 3000, 3000, 0), TimedCommand(23000, Op.STRIKE, 1, 3000, 3000, 0),
    TimedCommand(31000, Op.RELEASE, 1), TimedCommand(33000, Op.RELEASE, 4),
    TimedCommand(38000, Op.STRIKE, 0, 3000, 1000, 800), TimedCommand(38000, Op.STRIKE, 1, 3000, 2000, 0),
    TimedCommand(40000, Op.STRIKE, 3, 3000, 3000, 800),
), (600_000, 1000))  # fmt: skip


@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=tie_cases())
@example(case=TIE_SECOND_BATCH)
def test_c_scheduler_and_model_agree_on_concurrency_ties(host: Host, case: Case) -> None:
    assume(_ties(case) > 0)
    assume(_same_events(host, case) is not None)


# ---- the watchdog: silence, the drain of what is queued, all off --------------------------
WD_MS = 100
DRAINS_MS = (0, 150, 250, 300, 350, 450)  # the drain's end before, in and after the span


def run_delay_us(pid: int) -> int:
    """How long process ``pid`` has waited, runnable, for a CPU (µs, since it started:
    /proc/PID/schedstat's second field, ns): the OS holding it, as against it sleeping."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) // 1000


def run_host_wd(
    h: Host, case: Case, drain_ms: int
) -> tuple[list[tuple[int, int, int]], dict[str, int], int, int, int]:
    """As run_host, with a watchdog of WD_MS and ``drain_ms``: the schedule, one
    get_clock (the last frame: its clock is the last the firmware heard from us), then
    silence until the shutdown_notice. Returns the rows, the counters (and flushed),
    the notice's clock and the last frame's clock, both relative to the base, and how
    long the OS held the host build meanwhile (µs, :func:`run_delay_us`)."""
    assert configure(h.link, cfg_for(case, WD_MS, drain_ms))["reason"] == ConfigReason.OK
    mark = len(h.trace.rows())
    held0 = run_delay_us(h.proc.pid)
    base = h.link.clock() + LEAD_US
    for p in payloads(case, base):
        h.link.send(p)
    last = h.link.clock()
    note_mark = len(h.link.messages)
    note = h.link.wait_message(lambda m: m.name == "shutdown_notice", note_mark)
    # the status after the notice: its reply comes a loop pass after the notice's, whose
    # end flushed the trace (boards/host/main.c: rp_poll() sends the notice, then fflush):
    # read before it, the trace may lack the shutdown's all-off
    st_ = h.link.status(3)
    held = run_delay_us(h.proc.pid) - held0
    rows = [(c - base, a, lv) for c, a, lv in h.trace.rows()[mark:] if c >= base - 1000]
    assert note["reason"] == ShutdownReason.WATCHDOG and st_["state"] == 2, (note, st_)
    return rows, {k: st_[k] for k in (*COUNTERS, "flushed")}, note["clock"] - base, last - base, held


def _near(case: Case, clock: int) -> bool:
    """A command, a pulse end or a short max on-time's cutoff within the host build's
    lateness of ``clock``: which of the two comes first is the OS's call there."""
    times = [c.clock for c in case.cmds]
    times += [c.clock + c.pulse_us for c in case.cmds if c.op is Op.STRIKE]
    times += _short_cutoffs(case)
    return any(abs(t - clock) <= TIME_TOL_US for t in times)


def _short_cutoffs(case: Case) -> list[int]:
    """When a short max on-time (actuators of even index) could cut a coil: from each of
    its commands (the latest that could have switched it on)."""
    return [c.clock + MAX_ON_US[0] for c in case.cmds if c.actuator % 2 == 0]


def _cut_near(case: Case, clock: int) -> bool:
    """A short max on-time's cutoff within the host build's lateness of ``clock`` (the
    model's shutdown: where the queue plays out before the drain's end, at a pulse's
    end, a cutoff due a few µs later is counted by a host build that comes late to both
    and not by the model; session 19: a pulse ending 5 µs before a cutoff, under load)."""
    return any(abs(t - clock) <= TIME_TOL_US for t in _short_cutoffs(case))


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases(), drain_ms=st.sampled_from(DRAINS_MS))
def test_c_watchdog_and_model_drain_the_same_queue(host: Host, case: Case, drain_ms: int) -> None:
    """docs/protocol.md "Watchdog", held together: after the last frame, WD_MS of silence
    fires the watchdog, the queue plays out for at most ``drain_ms`` under every limit,
    then all off. The host build and the model give the same output changes, counters
    (flushed too) and shutdown clock."""
    host_rows, host_st, host_note, last_rel, held = run_host_wd(host, case, drain_ms)
    assume(host_st["late"] == 0)  # the OS, not the firmware (the module's docstring)
    # nor a run the OS held back from a pulse end or the drain's end past the slack (no
    # command late, so the counters cannot tell): measured on the OS's side
    assume(held <= HELD_MAX_US)
    assume(not _near(case, last_rel + (WD_MS + drain_ms) * 1000))
    model_rows, model_st, model_note = run_model_wd(case, WD_MS, drain_ms, last_rel)
    assert model_note is not None
    assume(not _cut_near(case, model_note))
    assert 0 <= host_note - model_note <= TIME_TOL_US, (host_note, model_note, case)
    assert host_st == model_st, (host_st, model_st, drain_ms, case)
    same_changes(model_rows, host_rows, case)


# ---- the duty bucket: long holds on a small bucket ---------------------------------------
DUTY = (100, 100)  # a 100 ms window at 10 %: a 10 ms bucket, full after ~11 ms at full drive
# the host build's duty poll runs every 8 ms at its loop's phase, and the OS may hold the
# loop up to its late slack: a cut comes 0..POLL_WIDE_US after the bucket passes its cap.
# The model is run at a one-unit poll grid (the earliest cut) and on a grid this wide at
# several phases (later cuts: a fuller bucket after them)
POLL_WIDE_US = DUTY_POLL_US + TIME_TOL_US
POLLS = [(64, 0)] + [(POLL_WIDE_US, ph) for ph in range(0, POLL_WIDE_US, 1000)]


@st.composite
def duty_cases(draw: st.DrawFn) -> Case:
    cmds = []
    for _ in range(draw(st.integers(1, 12))):
        t = draw(st.integers(0, SPAN_US // 10)) * 10
        a = draw(st.integers(0, 3))
        op = draw(st.sampled_from((Op.STRIKE, Op.SET, Op.SET, Op.RELEASE)))
        if op is Op.STRIKE:  # a pulse, then a hold: full, partial (w 9 < the drain), none
            cmds.append(TimedCommand(t, op, a, 4095, draw(st.sampled_from((5_005, 20_005))),
                                     draw(st.sampled_from((0, 800, 3000, 4095)))))  # fmt: skip
        elif op is Op.SET:
            cmds.append(TimedCommand(t, op, a, draw(st.sampled_from((1500, 3000, 4095)))))
        else:
            cmds.append(TimedCommand(t, op, a))
    cmds.sort(key=lambda c: c.clock)
    return Case(4, 4, tuple(cmds), DUTY)


def _cuts(rows: list[tuple[int, int, int]]) -> dict[int, list[int]]:
    return {a: [c for c, lv in ch if lv == 0] for a, ch in by_actuator(rows).items()}


# found in session 10: a SET on a coil whose bucket passed its cap after the last duty
# poll is played (sched.c reads the hot flag the last integration left), the poll cuts it
DUTY_BETWEEN_POLLS = Case(4, 4, (
    TimedCommand(2130, Op.RELEASE, 1), TimedCommand(2940, Op.SET, 0, 4095),
    TimedCommand(5440, Op.STRIKE, 1, 4095, 5005, 4095), TimedCommand(5840, Op.SET, 1, 1500),
    TimedCommand(6810, Op.STRIKE, 3, 4095, 5005, 4095), TimedCommand(10970, Op.RELEASE, 1),
    TimedCommand(17980, Op.SET, 3, 4095), TimedCommand(22310, Op.RELEASE, 1),
    TimedCommand(46490, Op.RELEASE, 0), TimedCommand(47560, Op.SET, 1, 3000),
    TimedCommand(56040, Op.STRIKE, 2, 4095, 5005, 800),
), DUTY)  # fmt: skip


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=duty_cases())
@example(case=DUTY_BETWEEN_POLLS)
def test_c_and_model_refuse_and_cut_the_same_coils_for_duty(host: Host, case: Case) -> None:
    """Random plans of long holds on a 10 ms duty bucket: the host build and the model
    refuse the same strikes and cut the same coils (counters, and every actuator's levels
    in the same order), its first cut at most a poll period and the late slack after the
    model's earliest. A plan where a command lands in that window (the model gives other
    events with the poll's phase moved) is a race the firmware's own poll decides: skipped."""
    runs = [run_model_wd(case, duty_poll=p) for p in POLLS]
    early_rows, early_st, _ = runs[0]

    def levels_of(rows: list[tuple[int, int, int]]) -> dict[int, list[int]]:
        return {a: [lv for _, lv in ch] for a, ch in by_actuator(rows).items()}

    levels = levels_of(early_rows)
    assume(all(st_ == early_st and levels_of(rows) == levels for rows, st_, _ in runs))
    host_rows, host_st, held_os = run_host_unheld(host, case)
    assume(host_st["late"] == 0 and held_os <= HELD_MAX_US)
    assert {k: host_st[k] for k in COUNTERS} == {k: early_st[k] for k in COUNTERS}, case
    assert levels_of(host_rows) == levels, case
    # each actuator's first switch-off (a release or a duty cut; the later ones depend on
    # how far past its cap the poll's phase let an earlier cut fill the bucket)
    # A cut may also come early by what the OS held the host build on this coil's earlier
    # edges: a pulse's end or a drop switched late leaves the coil fuller longer, so its
    # bucket passes the cap sooner (net fill >= 0.5 of the lateness at these drives: x2).
    host_ch, model_ch = by_actuator(host_rows), by_actuator(early_rows)
    for a, cuts in _cuts(host_rows).items():
        hc, mc = cuts[0], _cuts(early_rows)[a][0]
        pairs = zip(host_ch[a], model_ch[a], strict=True)  # the same levels (asserted above)
        held = sum(max(0, h - m) for (h, _), (m, _) in pairs if m < mc)
        assert -64 - 2 * held <= hc - mc <= POLL_WIDE_US + TIME_TOL_US, (a, hc, mc, held, case)


def test_a_full_hold_is_cut_for_duty_and_the_drained_coil_plays_again(host: Host) -> None:
    """A coil held at full drive on a 10 ms bucket is cut (CUTOFF_DUTY) by both, 11..12 ms
    in by the model (the bucket fills at 90 % net), a poll period and the late slack later
    at most by the host build; a strike 400 ms on finds it drained (played) in both."""
    first = Case(4, 4, (TimedCommand(0, Op.SET, 1, 4095),), DUTY)
    rows, st_, _ = run_model_wd(first, duty_poll=POLLS[0])
    cut = _cuts(rows)[1][0]
    assert 11_000 <= cut <= 12_000 and st_["cutoffs"] == 1, (rows, st_)
    case = Case(4, 4, (*first.cmds, TimedCommand(400_000, Op.STRIKE, 1, 4095, 5_005)), DUTY)
    m_rows, m_st, _ = run_model_wd(case)
    h_rows, h_st = run_host(host, case)
    assert {k: m_st[k] for k in COUNTERS} == {"played": 2, "late": 0, "refused": 0, "cutoffs": 1}
    assert h_st == {k: m_st[k] for k in COUNTERS}, (h_st, m_st)
    levels = [lv for _, lv in by_actuator(h_rows)[1]]
    assert levels == [lv for _, lv in by_actuator(m_rows)[1]] == [4095, 0, 4095, 0], h_rows
    assert cut - 64 <= _cuts(h_rows)[1][0] <= cut + POLL_WIDE_US + TIME_TOL_US, (h_rows, cut)
