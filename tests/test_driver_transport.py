"""One contract for every byte-stream backend: loop://, the virtual MCU, the host
firmware on a pty, and (slow) the AVR firmware under simavr.

A backend answers a ``SYNC(seq)`` frame: loop:// by echoing it, a firmware by an
``ACK(ack=seq)``. Garbage before a frame must not stop the answer (the framing resyncs
at the next 0x00). Reads time out empty; a closed transport refuses to be used.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from robo_player.driver.transport import Transport, open_transport
from robo_player.errors import TransportError
from robo_player.protocol.framing import Frame, FrameDecoder, FrameKind, encode_frame
from robo_player.sim import mcu_process as fwmod
from robo_player.sim.vmcu import VirtualPort, VirtualWorld

Backend = tuple[Transport, Callable[[], float], Callable[[Frame, int], bool]]


def _echo(f: Frame, seq: int) -> bool:
    return f.kind is FrameKind.SYNC and f.seq == seq


def _acked(f: Frame, seq: int) -> bool:
    return f.kind is FrameKind.ACK and f.ack == seq


@pytest.fixture(params=["loop", "vmcu", "fw-host", "fw-avr"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    kind = request.param
    if kind == "loop":
        t = open_transport("loop://?baud=115200")
        yield t, time.perf_counter, _echo
        t.close()
        return
    if kind == "vmcu":
        p = VirtualPort(VirtualWorld())
        yield p, p.now, _acked
        p.close()
        return
    fkind = "host" if kind == "fw-host" else "avr"
    try:
        fwmod.ensure_built(fkind)
    except TransportError as err:
        pytest.skip(str(err))
    proc = fwmod.FirmwareProcess(fkind, Path(tempfile.mkdtemp()), speed=fwmod.AVR_SPEED)
    proc.start()
    port = fwmod.FirmwarePort(proc)
    yield port, time.perf_counter, _acked
    port.close()
    proc.stop()


def _await(
    t: Transport, now: Callable[[], float], ok: Callable[[Frame], bool], within: float
) -> bool:
    dec = FrameDecoder()
    end = now() + within
    while now() < end:
        for f in dec.feed(t.read(0.05)):
            if ok(f):
                return True
    return False


def test_a_request_gets_its_answer(backend: Backend) -> None:
    t, now, answered = backend
    t.write(b"\x00" + encode_frame(FrameKind.SYNC, 5, 0))
    assert _await(t, now, lambda f: answered(f, 5), 5.0)


def test_garbage_before_a_frame_does_not_stop_the_answer(backend: Backend) -> None:
    t, now, answered = backend
    t.write(bytes(range(1, 200)) + b"\x00" + encode_frame(FrameKind.SYNC, 9, 0))
    assert _await(t, now, lambda f: answered(f, 9), 5.0)


def test_reads_time_out_empty(backend: Backend) -> None:
    t, now, _ = backend
    t.write(b"\x00" + encode_frame(FrameKind.SYNC, 1, 0))
    _await(t, now, lambda f: True, 5.0)
    # quiet now: a read with a timeout comes back empty (no answer without a request)
    assert t.read(0.02) == b""


def test_closed_transport_refuses_use(backend: Backend) -> None:
    t, _, _ = backend
    t.close()
    assert not t.is_open
    with pytest.raises(TransportError):
        t.write(b"\x00")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("serial://", "no device path"),
        ("serial:///dev/null-robo-player?baud=115200", "cannot open"),
        ("serial:///dev/ttyS0?baud=fast", "baud='fast' is not an integer"),
        ("serial:///dev/ttyS0?baud=10", "out of range"),
        ("serial:///dev/ttyS0?parity=E", "unknown option"),
        ("ftp://x", "no byte-stream transport 'ftp'"),
        ("socket://127.0.0.1:1", "cannot open"),
    ],
)
def test_bad_urls_are_clear_errors(url: str, match: str) -> None:
    with pytest.raises(TransportError, match=match):
        open_transport(url)


def test_frame_round_trip_over_loop() -> None:
    with open_transport("loop://") as t:
        f = Frame(FrameKind.DATA, 3, 7, b"\x01\x00\x02")
        t.write(f.encode())
        got = FrameDecoder().feed(t.read(0.5))
        assert got == [f]
