"""Keep-alives from a thread (issue 9 §6): a stream loop held up for longer than the
watchdog no longer ends the performance, and a host that is really gone still turns
every output off within the watchdog window (the host build, real time)."""

from __future__ import annotations

import shutil
import time

import pytest
from driver_helpers import make_plan, spec

from robo_player.driver.ports import open_port
from robo_player.errors import DeviceShutdown
from robo_player.sim import mcu_process as fwmod

HAVE_HOST = fwmod.HOST_BIN.exists() or shutil.which("cc") is not None
pytestmark = pytest.mark.skipif(not HAVE_HOST, reason="no host firmware and no C compiler")

SP = spec()


def _held_up_stream(keepalive_thread: int) -> tuple[object, object]:
    plan = make_plan(SP, notes=12, gap_us=100_000)
    url = f"fw-host://?keepalive_thread={keepalive_thread}&watchdog_ms=90"
    with open_port(url, SP) as dev:
        dev.submit(plan.commands[:4])
        time.sleep(0.4)  # the loop held up (planning, GC, a slow callback): 4 watchdog windows
        try:
            dev.submit(plan.commands[4:])
            return dev, dev.drain()
        except DeviceShutdown as err:
            return dev, err


def test_a_held_up_stream_loop_does_not_trip_the_watchdog() -> None:
    dev, perf = _held_up_stream(keepalive_thread=1)
    assert not isinstance(perf, Exception), perf
    res = dev.last_result  # type: ignore[attr-defined]
    assert res is not None and not res.error
    assert perf.extra["keepalive"]["thread_sent"] >= 5  # type: ignore[attr-defined]


def test_without_the_thread_the_same_pause_trips_it() -> None:
    # the control: what happened before the thread existed
    _dev, out = _held_up_stream(keepalive_thread=0)
    assert isinstance(out, DeviceShutdown) and "WATCHDOG" in str(out), out


def test_the_watchdog_window_is_named_in_the_spec_and_used() -> None:
    from dataclasses import replace

    from robo_player.driver.keepalive import DEFAULT_WATCHDOG_MS, watchdog_ms_for
    from robo_player.spec import load_spec

    for name in ("piano-61-diy", "piano-88-grand"):
        sp = load_spec(name)
        assert sp.thermal.watchdog_ms == DEFAULT_WATCHDOG_MS == watchdog_ms_for(sp)
        longer = replace(sp, thermal=replace(sp.thermal, watchdog_ms=150))
        assert longer.spec_hash == sp.spec_hash  # a link setting: plans/calibrations still fit
        with open_port("vmcu://", longer) as dev:
            assert dev.stream_config().watchdog_ms == 150  # type: ignore[attr-defined]
        with open_port("vmcu://?watchdog_ms=60", longer) as dev:
            assert dev.stream_config().watchdog_ms == 60  # type: ignore[attr-defined]


def test_the_watchdog_drain_is_named_in_the_spec_and_reaches_the_firmware() -> None:
    """thermal.watchdog_drain_ms (700 on the shipped pianos) goes to the firmware in
    configure_begin; ?watchdog_drain_ms= overrides it (0: all off when it fires)."""
    from dataclasses import replace

    from robo_player.driver.keepalive import DEFAULT_WATCHDOG_DRAIN_MS, watchdog_drain_ms_for
    from robo_player.spec import load_spec

    sp = load_spec("piano-88-grand")
    assert sp.thermal.watchdog_drain_ms == DEFAULT_WATCHDOG_DRAIN_MS == watchdog_drain_ms_for(sp)
    zero = replace(sp, thermal=replace(sp.thermal, watchdog_drain_ms=0))
    assert watchdog_drain_ms_for(zero) == 0 and zero.spec_hash == sp.spec_hash
    plan = make_plan(sp, notes=2, gap_us=50_000)
    for url, spec_, want in (("vmcu://", sp, 700), ("vmcu://", zero, 0),
                             ("vmcu://?watchdog_drain_ms=250", sp, 250)):  # fmt: skip
        with open_port(url, spec_) as dev:
            assert dev.stream_config().watchdog_drain_ms == want  # type: ignore[attr-defined]
            dev.play(plan)
            assert dev.last_backend.world.mcu.watchdog_drain_ms == want  # type: ignore[attr-defined]


def test_a_host_pause_is_not_the_devices_silence() -> None:
    """The link's silence check (``silence_s``: a dead device) counts only time the host
    listened: after the host's own pause (its caller's work between two reads, e.g. the
    closed loop's ear) the device has a third of ``silence_s`` less the heartbeat's
    answer time before it is called silent, not nothing."""
    from robo_player.driver.link import Link
    from robo_player.errors import DeviceTimeout
    from robo_player.protocol.framing import Frame, FrameKind

    def heard_at(t: float) -> Link:
        link = Link(silence_s=0.9)
        link.input(Frame(FrameKind.ACK, 0, 0).encode(), t)
        assert link.quiet_for(t) == 0.0
        return link

    link = heard_at(10.0)
    with pytest.raises(DeviceTimeout, match="nothing from the device for 1200 ms"):
        link.check(11.2)  # listened all along: silent
    link = heard_at(10.0)
    link.host_paused(11.2, 1.15)  # the host did not read for 1.15 s
    link.check(11.2)
    assert link.quiet_for(11.2) == pytest.approx(0.3)  # the heartbeat goes now (> silence / 3)
    link.check(11.7)
    with pytest.raises(DeviceTimeout, match="nothing from the device for 950 ms"):
        link.check(11.85)  # and it did not answer
    link = heard_at(10.0)
    link.host_paused(10.25, 0.2)  # a short pause changes nothing
    assert link.quiet_for(10.25) == pytest.approx(0.25)
