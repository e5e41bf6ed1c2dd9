"""Opening a device: a board that is still booting when its port opens, and an opening
that a lost frame stalls (virtual time, no sleeps)."""

from __future__ import annotations

import logging

import pytest
from driver_helpers import check_accounting, make_plan, spec

from robo_player.driver.stream import Session, StreamConfig
from robo_player.errors import DeviceTimeout
from robo_player.sim.ports import open_vmcu
from robo_player.sim.vmcu import MCUConfig, VirtualPort, VirtualWorld

SP = spec()


class BootingPort(VirtualPort):
    """A board in its bootloader for ``boot_s`` after the port opens: what the host
    writes then is lost and nothing comes back (an Arduino Mega resets on open)."""

    def __init__(self, world: VirtualWorld, boot_s: float) -> None:
        super().__init__(world, "serial:///dev/ttyACM0")
        self.ready_at = world.t + boot_s

    def write(self, data: bytes) -> None:
        if self.world.t >= self.ready_at:
            super().write(data)

    def read(self, timeout: float) -> bytes:
        got = super().read(timeout)
        return got if self.world.t >= self.ready_at else b""


def _session(boot_s: float, boot_wait_s: float) -> Session:
    world = VirtualWorld(MCUConfig(), baud=115200, seed=3)
    port = BootingPort(world, boot_s)
    return Session(port, SP, now=port.now, config=StreamConfig(boot_wait_s=boot_wait_s))


def test_a_slow_booting_board_is_waited_for_and_the_wait_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        s = _session(boot_s=2.5, boot_wait_s=3.0)
        info = s.open()
    assert info.boot_id
    assert s.now() >= 2.5
    assert any("waiting up to 3.0 s for the board to boot" in r.getMessage() for r in caplog.records)


def test_without_a_boot_wait_a_silent_board_times_out_naming_the_wait() -> None:
    with pytest.raises(DeviceTimeout, match="does not answer SYNC"):
        _session(boot_s=20.0, boot_wait_s=0.0).open()
    with pytest.raises(DeviceTimeout, match=r"waited 3.0 s for it to boot"):
        _session(boot_s=20.0, boot_wait_s=3.0).open()


def test_serial_ports_wait_3_s_by_default_simulated_ones_do_not() -> None:
    from robo_player.driver.ports import open_port

    for url, wait in (("serial:///dev/ttyACM0", 3.0), ("serial:///dev/x?boot_wait_s=8", 8.0)):
        with open_port(url, SP) as dev:  # nothing is opened before the first submit
            assert dev.stream_config().boot_wait_s == wait  # type: ignore[attr-defined]
    with open_vmcu("vmcu://", SP) as dev:
        assert dev.stream_config().boot_wait_s == 0.0


def test_a_frame_lost_while_opening_is_retried() -> None:
    # the loss pattern that made test_any_loss_pattern_delivers_everything_once_in_order
    # flaky: faults hit a frame during Session.open -> 1 s of silence -> DeviceTimeout
    seed, drop, dup, corrupt = 14141, 0.03125, 0.0625, 0.001953125
    plan = make_plan(SP, notes=16, gap_us=30_000, seed=seed)
    with open_vmcu("vmcu://", SP, fault_seed=seed, drop=drop, dup=dup, corrupt=corrupt,
                   seed=seed) as dev:  # fmt: skip
        dev.play(plan)
        res = dev.last_result
    assert res is not None and not res.error
    check_accounting(plan, res)
    assert res.counts() == {"played": len(plan)}
