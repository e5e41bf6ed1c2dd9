# ruff: noqa: T201  (a command-line script: it prints its results)
"""Firmware CPU load under simavr at a given note rate (strike + release per note).

    .venv/bin/python firmware/sim/cpu_load.py [NOTES_PER_S] [SECONDS] [PROFILE_FILE]

Starts build/sim/robo_sim (``make -C firmware sim`` first), configures 8 direct
outputs, streams the notes by the credits in the firmware's ACKs with a heartbeat
every 50 ms, and prints the busy fraction of each simulated second (the harness's
``# cycles`` lines). With PROFILE_FILE the harness writes its busy cycles per program
address there (``firmware/sim/profile.py`` sums them per function).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serial

from robo_player.protocol.framing import Frame, FrameDecoder, FrameKind, seq_add
from robo_player.protocol.messages import Message, Op, config_hash, decode_messages
from robo_player.protocol.schedule import ScheduleEncoder, TimedCommand, pack
from robo_player.protocol.varint import get_vlq

FW = Path(__file__).resolve().parents[1]
US = 16  # ticks per microsecond at 16 MHz


class Link:
    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, timeout=0.02)
        self.dec = FrameDecoder()
        self.seq = 0
        self.msgs: list[Message] = []

    def _until(self, pred) -> Frame:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for f in self.dec.feed(self.ser.read(4096)):
                if f.kind is FrameKind.DATA:
                    self.msgs += decode_messages(f.payload)
                if pred(f):
                    return f
        raise TimeoutError("no answer from the firmware")

    def send(self, payload: bytes, kind: FrameKind = FrameKind.DATA) -> Frame:
        self.ser.write(b"\x00" + Frame(kind, self.seq, 0, payload).encode())
        ack = self._until(lambda f: f.kind in (FrameKind.ACK, FrameKind.NAK))
        if kind is FrameKind.DATA and ack.kind is FrameKind.ACK:
            self.seq = seq_add(self.seq, 1)
        return ack

    def ask(self, msg: Message, reply: str) -> Message:
        n = len(self.msgs)
        self.send(msg.encode())
        while True:
            for m in self.msgs[n:]:
                if m.name == reply:
                    return m
            self._until(lambda f: f.kind is FrameKind.DATA)


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 100.0
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    tmp = Path(tempfile.mkdtemp())
    trace = tmp / "trace"
    extra = ["--profile", sys.argv[3]] if len(sys.argv) > 3 else []
    proc = subprocess.Popen(
        [str(FW / "build/sim/robo_sim"), "--elf", str(FW / "build/avr/robo_fw.elf"),
         "--pty-link", str(tmp / "pty"), "--trace", str(trace), *extra],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    while not proc.stdout.readline().startswith("PTY"):
        pass
    link = Link(str(tmp / "pty"))
    try:
        link.send(b"", FrameKind.SYNC)
        cfg = [
            Message.make(
                "configure_begin", actuator_count=8, max_concurrent=8, watchdog_ms=1000,
                duty_window_ms=10_000, time_shift=6, level_shift=2,
                pca_prescale=5,
                watchdog_drain_ms=0,
            )
        ] + [
            Message.make(
                "configure_actuator", actuator=a, out_kind=0, out_addr=0, out_channel=a,
                pwm_max=4095, max_drive=4095, max_on_us=5_000_000, max_pulse_us=40_000,
                duty_permille=1000,
            )
            for a in range(8)
        ]  # fmt: skip
        for m in cfg:
            link.send(m.encode())
        res = link.ask(Message.make("configure_end", hash=config_hash(cfg)), "config_result")
        assert res["reason"] == 0, res
        t0 = link.ask(Message.make("get_clock", tag=1), "clock")["clock"] + 300_000 * US
        enc = ScheduleEncoder(8, 6, 2)
        cmds = []
        for i in range(int(rate * secs)):
            t = t0 + int(i / rate * 1e6) * US
            cmds.append(TimedCommand(t, Op.STRIKE, i % 8, 3000, 20_000, 1200))
            cmds.append(TimedCommand(t + 60_000 * US, Op.RELEASE, i % 8))
        cmds.sort(key=lambda c: c.clock)
        sent = [enc.add(c) for c in cmds]
        credits, tag = 80, 0
        for payload, n in pack([it for e in sent for it in e.items], 60):
            while credits < n:
                time.sleep(0.05)
                tag = (tag + 1) % 256
                credits = link.ask(Message.make("heartbeat", tag=tag), "status")["free"]
            credits = get_vlq(link.send(payload).payload, 0)[0]
        # until every command has run (at most 10 s more); rate 0: the idle load
        end = time.monotonic() + (10.0 if cmds else secs)
        while time.monotonic() < end:
            time.sleep(0.05)
            tag = (tag + 1) % 256
            st = link.ask(Message.make("heartbeat", tag=tag), "status")
            if cmds and st["played"] + st["late"] + st["refused"] >= len(cmds):
                break
        print(f"played {st['played']} late {st['late']} refused {st['refused']}")
    finally:
        link.ser.close()
        proc.terminate()
        proc.wait()
    rows = [ln.split() for ln in trace.read_text().splitlines()]
    busy = [(int(r[2]), int(r[4])) for r in rows if r[:2] == ["#", "cycles"]]
    loads = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(busy, busy[1:], strict=False)]
    print(f"{rate:g} notes/s, busy per simulated second: "
          + " ".join(f"{100 * x:.1f}%" for x in loads))  # fmt: skip
    edges = [r for r in rows if r and not r[0].startswith("#")]
    print(f"{len(edges)} pin edges recorded")
    for r in rows:  # the harness's stack depth and longest critical section
        if r[:3] in (["#", "stack", "pointer"], ["#", "interrupts", "off"]):
            print(" ".join(r[1:]))


if __name__ == "__main__":
    main()
