"""Golden byte vectors shared by the Python and the C side of the protocol.

``tests/golden/protocol_vectors.json`` is a JSON list with **one vector object per
line** (so the C test, ``firmware/test/test_core.c``, can read it with a line scanner).
:func:`make_vectors` made it once; tests check the Python code against the committed
file, never against a fresh run, so a change of encoding shows up as a failure.
``python -m robo_player.protocol.golden --write`` rewrites it (only for a deliberate
protocol change, with a new ``PROTOCOL_VERSION``).

Kinds: ``vlq``, ``uvar``, ``crc16``, ``cobs``, ``frame``, ``stream``, ``h2d``, ``d2h``,
``sched``, ``config_hash``; the fields of each are described in :func:`make_vectors`.
A ``sched`` vector's ``payload`` is the DATA payloads of its frames, comma-separated.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from ..errors import ProtocolError
from .framing import Frame, FrameDecoder, FrameKind, cobs_encode, crc16
from .messages import (
    BY_ID,
    MAX_DCLOCK,
    NO_ACTUATOR,
    NO_DETAIL,
    RECENT_GAPS,
    RECORD_ACT_ESCAPE,
    Kind,
    Message,
    Op,
    Record,
    config_hash,
    decode_messages,
    encode_messages,
)
from .schedule import ScheduleDecoder, ScheduleEncoder, TimedCommand, pack
from .varint import put_uvar, put_vlq

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "protocol_vectors.json"


def messages_text(payload: bytes) -> str:
    """Canonical text of a host->device payload, or ``ERR`` if it does not parse.

    ``id:f1,f2,...`` per message, joined by ``;``; a records field is
    ``[strike act dclock recent ddrive pulse hold|...]`` with -1 for an absent pulse/hold.
    """
    try:
        msgs = decode_messages(payload)
    except ProtocolError:
        return "ERR"
    parts = []
    for m in msgs:
        spec = m.spec
        vals = []
        for f, v in zip(spec.fields, m.values, strict=True):
            if f.kind is Kind.RECORDS:
                assert isinstance(v, tuple)
                vals.append("[" + "|".join(_record_text(r) for r in v) + "]")
            else:
                vals.append(str(v) if isinstance(v, int) else v.hex())  # type: ignore[union-attr]
        parts.append(f"{spec.id}:" + ",".join(vals))
    return ";".join(parts)


def _record_text(r: Record) -> str:
    p = -1 if r.pulse_us is None else r.pulse_us
    h = -1 if r.hold is None else r.hold
    return f"{int(r.strike)} {r.actuator} {r.dclock} {r.recent} {r.ddrive} {p} {h}"


def frames_text(frames: list[Frame]) -> str:
    return ";".join(f"{int(f.kind)},{f.seq},{f.ack},{f.payload.hex()}" for f in frames)


def commands_text(cmds: list[tuple[int, TimedCommand]]) -> str:
    return ";".join(
        f"{i},{c.clock},{int(c.op)},{c.actuator},{c.level},{c.pulse_us},{c.hold}" for i, c in cmds
    )


def _vlq_hex(v: int) -> str:
    b = bytearray()
    put_vlq(b, v)
    return b.hex()


def _uvar_hex(v: int) -> str:
    b = bytearray()
    put_uvar(b, v)
    return b.hex()


def _escaped_record(actuator: int) -> bytes:
    """A schedule message of one release record for ``actuator`` (>= 127), unchecked."""
    b = bytearray([7, 1, RECORD_ACT_ESCAPE])
    put_uvar(b, actuator - RECORD_ACT_ESCAPE)
    b += b"\x00"
    return bytes(b)


def make_vectors(seed: int = 2024) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    vec: list[dict[str, Any]] = []
    # vlq: value (int32) <-> hex
    for v in (
        0, 1, -1, 95, 96, -32, -33, 0x2FFF, 0x3000, -0x1000, -0x1001, 0x17FFFF, 0x180000,
        -0x80000, -0x80001, 0xBFFFFFF, 0xC000000, -0x4000000, -0x4000001, 2**31 - 1, -(2**31),
        1000, 100000, 16_000_000,
    ):  # fmt: skip
        vec.append({"kind": "vlq", "value": v, "hex": _vlq_hex(v)})
    # uvar: value (uint32) <-> hex
    for v in (0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**32 - 1):
        vec.append({"kind": "uvar", "value": v, "hex": _uvar_hex(v)})
    # crc16 of data
    for data in (b"123456789", b"", b"\x00", bytes(range(64))):
        vec.append({"kind": "crc16", "data": data.hex(), "crc": crc16(data)})
    # cobs: raw <-> enc
    for raw in (
        b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x00\x00\x00",
        bytes(range(1, 255)), bytes(range(1, 256)), bytes(range(0, 256)),
    ):  # fmt: skip
        vec.append({"kind": "cobs", "raw": raw.hex(), "enc": cobs_encode(raw).hex()})
    # frames: fields -> wire
    for kind, seq, ack, payload in (
        (FrameKind.DATA, 0, 0, bytes([1])),
        (FrameKind.ACK, 0, 17, bytes([40])),
        (FrameKind.NAK, 0, 63, bytes([0])),
        (FrameKind.SYNC, 5, 0, b""),
        (FrameKind.DATA, 63, 62, bytes(rnd.randrange(256) for _ in range(120))),
        (FrameKind.DATA, 9, 3, bytes(120)),
    ):
        f = Frame(kind, seq, ack, payload)
        vec.append(
            {"kind": "frame", "frame_kind": int(kind), "seq": seq, "ack": ack,
             "payload": payload.hex(), "wire": f.encode().hex()}
        )  # fmt: skip
    # streams: garbage, good frames, corrupt frames -> decoded frames and error counts
    good = [Frame(FrameKind.DATA, i, 1, bytes([5, i])) for i in range(4)]
    streams = [
        b"\x00" + good[0].encode() + good[1].encode(),
        b"\x13\x37garbage" + b"\x00" + good[0].encode(),
        b"\x55" * 300 + b"\x00" + good[2].encode(),  # too long: dropped at once
        good[0].encode()[:-3] + b"\x00" + good[1].encode(),  # truncated frame
    ]
    bad = bytearray(good[3].encode())
    bad[3] ^= 0x04  # one flipped bit: CRC error
    streams.append(bytes(bad) + good[1].encode())
    bad2 = bytearray(good[2].encode())
    bad2[0] = 0x02  # wrong COBS block length
    streams.append(bytes(bad2) + good[0].encode())
    streams.append(b"\x00\x00\x00" + good[3].encode() + b"\x00\x00")
    streams.append(bytes(rnd.randrange(1, 256) for _ in range(50)) + b"\x00" + good[1].encode())
    # protocol 5: a frame whose CRC low byte is 0 with its last COBS code byte 0x01 flipped
    # to a delimiter loses that byte; the final XOR makes the shortened frame fail
    streams.append(b"\x00" + _last_code_flipped() + b"\x00" + good[0].encode())
    for s in streams:
        d = FrameDecoder()
        frames = d.feed(s)
        vec.append(
            {"kind": "stream", "wire": s.hex(), "frames": frames_text(frames),
             "crc_errors": d.stats.crc_errors, "framing_errors": d.stats.framing_errors}
        )  # fmt: skip
    # h2d payloads -> canonical text (or ERR)
    h2d: list[bytes] = [
        Message.make("identify").encode(),
        Message.make(
            "configure_begin",
            actuator_count=61,
            max_concurrent=4,
            watchdog_ms=80,
            duty_window_ms=10_000,
            time_shift=6,
            level_shift=2,
            pca_prescale=11,
            watchdog_drain_ms=250,
        ).encode(),
        Message.make(
            "configure_actuator",
            actuator=12,
            out_kind=1,
            out_addr=0x41,
            out_channel=15,
            pwm_max=4095,
            max_drive=4095,
            max_on_us=20_000_000,
            max_pulse_us=40_000,
            duty_permille=350,
        ).encode(),
        Message.make("configure_end", hash=0xDEADBEEF).encode(),
        Message.make("get_clock", tag=200).encode() + Message.make("heartbeat", tag=7).encode(),
        Message.make("sched_base", clock=0xFFFFFFF0).encode(),
        Message.make(
            "schedule",
            records=(
                Record(3, True, 0, 400, 35000, 1433),
                Record(4, True, 0, -3),
                Record(3, False, 12000),
                Record(126, False, MAX_DCLOCK),
                Record(5, False, 0, recent=1),  # protocol 7: the most recent gap
                Record(6, True, 0, 2, recent=RECENT_GAPS),  # ... the oldest one
                Record(0, True, 127, 4095, 0, 0),
                Record(127, True, 1, 5),  # the escape: 127 + uvar(0)
                Record(128, False, 2),
                Record(1023, True, 0, -7, 100, 0),
            ),
        ).encode(),
        Message.make("schedule_ext", op=1, actuator=700, dclock=0, level=9, pulse_us=1, hold=2)
        .encode(),
        Message.make(
            "schedule_ext", op=2, actuator=88, dclock=5, level=127, pulse_us=0, hold=0
        ).encode(),
        Message.make("schedule_move", actuator=5, dclock=1000, position=40000).encode(),
        Message.make("schedule_move", actuator=900, dclock=0, position=0).encode()
        + Message.make("schedule_move", actuator=0, dclock=2**32 - 1, position=65535).encode(),
        bytes([12, 5, 0, 0x84, 0x80, 0x00]),  # position 65536: out of range
        Message.make("all_off").encode() + Message.make("shutdown", reason=99).encode(),
        bytes([99]),  # unknown id
        bytes([5, 0x81]),  # truncated vlq
        bytes([5, 0x82, 0x00]),  # tag 256: out of range
        bytes([11, 15]),  # shutdown reason 15 < 16
        bytes([7, 1, 0x7F]),  # record: the escape, truncated
        _escaped_record(1024),  # record actuator 1024: out of range
        bytes([7, 2, 0x01, 0]),  # count 2, one record
        bytes([7, 1, 0x01, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F]),  # time code 2**32-1: a gap of 2**32-5
        bytes([7, 1, 0x01, 0x90, 0x80, 0x80, 0x80, 0x00]),  # time code past 32 bits
        bytes([7, 1, 0x81, 0, 0xC0, 0x00]),  # ddrive 2048
        bytes([7, 1, 0x81, 0, 0xFF, 0x7E]),  # ddrive -4096: out of range
        bytes([6, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F]),  # sched_base 5-byte max
        bytes([6, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]),  # 6-byte vlq
    ]
    for p in h2d:
        vec.append({"kind": "h2d", "payload": p.hex(), "text": messages_text(p)})
    # d2h: id + args -> payload
    d2h = [
        Message.make(
            "identify_resp",
            protocol_version=1,
            fw_version=0x0100,
            board=b"host",
            clock_hz=1_000_000,
            queue_size=256,
            max_actuators=1024,
            rx_buffer=1024,
            max_payload=120,
            boot_id=0x12345678,
            max_on_us_limit=60_000_000,
            max_level=4095,
            late_slack_us=500,
            state=0,
        ),
        Message.make("config_result", reason=5, detail=12, hash=0xFFFFFFFF),
        Message.make("config_result", reason=7, detail=NO_DETAIL, hash=1),
        Message.make("config_result", reason=2, detail=900, hash=1),
        Message.make("clock", tag=3, clock=0x80000000),
        Message.make(
            "status",
            tag=7,
            state=1,
            boot_id=0xCAFEF00D,
            clock=123456789,
            free=200,
            next_index=1000,
            played=900,
            late=3,
            refused=2,
            flushed=0,
            cutoffs=1,
            bad_frames=4,
            heat_permille=512,
            heat_actuator=NO_ACTUATOR,
            i2c_errors=300,
        ),
        Message.make("event", kind=1, index=77, actuator=40, clock=4_000_000_000),
        Message.make("event", kind=8, index=78, actuator=1023, clock=5),
        Message.make("shutdown_notice", reason=1, clock=42),
    ]
    for m in d2h:
        spec = m.spec
        args = []
        blob = b""
        for fld, val in zip(spec.fields, m.values, strict=True):
            if fld.kind is Kind.BYTES:
                assert isinstance(val, bytes)
                blob = val
                args.append(0)
            else:
                assert isinstance(val, int)
                args.append(val)
        vec.append(
            {"kind": "d2h", "id": spec.id, "args": ",".join(map(str, args)),
             "bytes": blob.hex(), "payload": m.encode().hex()}
        )  # fmt: skip
    # sched: a command stream through the encoder; the device side must rebuild it
    for time_shift, level_shift, n_act in ((0, 0, 8), (6, 2, 8), (0, 0, 300)):
        enc = ScheduleEncoder(n_act, time_shift, level_shift)
        t = 1_000_000
        cmds = []
        for _ in range(40):
            t += rnd.choice((0, 0, 50, 900, 20_000, 300_000))
            a = rnd.randrange(8) if n_act == 8 else rnd.choice((0, 126, 127, 128, n_act - 1))
            if rnd.random() < 0.5:
                pulse = rnd.choice((35000, 35000, 20000))
                cmds.append(TimedCommand(t, Op.STRIKE, a, rnd.randrange(4096), pulse, 1433))
            elif rnd.random() < 0.8:
                cmds.append(TimedCommand(t, Op.RELEASE, a))
            else:
                cmds.append(TimedCommand(t, Op.SET, a, rnd.randrange(128)))
        cmds.append(TimedCommand(500, Op.RELEASE, 1))  # backwards: sched_base
        cmds.append(TimedCommand(2**32 + 77, Op.RELEASE, 2))  # wraps the 32-bit clock
        items = [it for c in cmds for it in enc.add(c).items]
        payloads = [p for p, _ in pack(items, 120)]
        dec = ScheduleDecoder(n_act, time_shift, level_shift)
        out: list[tuple[int, TimedCommand]] = []
        for p in payloads:
            for m in decode_messages(p):
                out += dec.apply(m)
        vec.append(
            {"kind": "sched", "time_shift": time_shift, "level_shift": level_shift,
             "actuators": n_act,
             "payload": ",".join(p.hex() for p in payloads), "commands": commands_text(out)}
        )  # fmt: skip
    # sched with moves (protocol 5): schedule_move between packed records
    enc = ScheduleEncoder(8, 0, 0)
    cmds = [
        TimedCommand(2000, Op.MOVE, 7, 12000),
        TimedCommand(2000, Op.STRIKE, 1, 800, 20000, 100),
        TimedCommand(2500, Op.MOVE, 6, 0),
        TimedCommand(2600, Op.RELEASE, 1),
        TimedCommand(90_000, Op.MOVE, 7, 65535),
        TimedCommand(90_000, Op.STRIKE, 2, 700, 20000, 100),
    ]
    items = [it for c in cmds for it in enc.add(c).items]
    payloads = [p for p, _ in pack(items, 120)]
    dec = ScheduleDecoder(8, 0, 0)
    out = []
    for p in payloads:
        for m in decode_messages(p):
            out += dec.apply(m)
    vec.append(
        {"kind": "sched", "time_shift": 0, "level_shift": 0, "actuators": 8,
         "payload": ",".join(p.hex() for p in payloads), "commands": commands_text(out)}
    )  # fmt: skip
    # config hash of a configure sequence
    cfg = [
        Message.make(
            "configure_begin",
            actuator_count=2,
            max_concurrent=2,
            watchdog_ms=100,
            duty_window_ms=10_000,
            time_shift=0,
            level_shift=0,
            pca_prescale=5,
            watchdog_drain_ms=0,
        ),
        Message.make(
            "configure_actuator",
            actuator=1,
            out_kind=0,
            out_addr=0,
            out_channel=22,
            pwm_max=255,
            max_drive=255,
            max_on_us=5_000_000,
            max_pulse_us=40_000,
            duty_permille=400,
        ),
        Message.make(
            "configure_actuator",
            actuator=0,
            out_kind=0,
            out_addr=0,
            out_channel=23,
            pwm_max=255,
            max_drive=200,
            max_on_us=5_000_000,
            max_pulse_us=40_000,
            duty_permille=400,
        ),
    ]
    vec.append(
        {"kind": "config_hash", "payload": encode_messages(cfg).hex(), "hash": config_hash(cfg)}
    )
    return vec


def _last_code_flipped() -> bytes:
    """The first DATA frame (seq 0..63, payload ``01 nn``) whose CRC low byte is 0, on the
    wire with its last COBS code byte (0x01, for that 0) turned into 0x00, without the
    final delimiter: what a one-bit flip of that byte leaves."""
    for n in range(256):
        for seq in range(64):
            f = Frame(FrameKind.DATA, seq, 0, bytes([1, n]))
            raw = f.raw()
            if raw[-1] == 0:
                wire = f.encode()
                assert wire[-2] == 1
                return wire[:-2]
    raise AssertionError("no frame with a CRC low byte of 0")


def dump(vectors: list[dict[str, Any]]) -> str:
    lines = [json.dumps(v, separators=(", ", ": ")) for v in vectors]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def load(path: Path = GOLDEN) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write the protocol's golden vectors")
    ap.add_argument("--write", action="store_true", help=f"rewrite {GOLDEN}")
    args = ap.parse_args(argv)
    text = dump(make_vectors())
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {GOLDEN}\n")
    else:
        sys.stdout.write(text)
    return 0


# BY_ID is re-exported for the tests that walk every message id.
__all__ = ["BY_ID", "GOLDEN", "commands_text", "dump", "frames_text", "load", "make_vectors",
           "messages_text"]  # fmt: skip

if __name__ == "__main__":
    sys.exit(main())
