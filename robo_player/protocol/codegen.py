"""Generate ``firmware/core/protocol_gen.h`` from the message table.

``python -m robo_player.protocol.codegen`` writes the header (``--check`` only compares
and exits 1 when the committed header is stale; a test runs that). The header holds:

- the protocol constants and every enum of :mod:`.messages` and :mod:`.framing`;
- message ids and field indices (``RP_<MSG>_<FIELD>``);
- ``rp_decode_args()``: the range-checked decoder of every host->device message
  (records are left to the core: the ``schedule`` field gives the count);
- ``rp_put_<msg>()``: an encoder for every device->host message, and
  ``RP_<MSG>_MAX_BYTES``, the most bytes it can take.

The header needs ``rp_get_vlq``/``rp_put_vlq`` from ``firmware/core/wire.h``.
"""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from pathlib import Path

from . import framing
from .messages import (
    MAX_ACTUATORS,
    MAX_BOARD_NAME,
    MAX_LEVEL,
    MAX_ON_US,
    MAX_PAYLOAD,
    MAX_POSITION,
    MAX_PULSE_US,
    MAX_SERVO_SETTLE_US,
    MAX_SERVO_US_PER_WIDTH_US,
    MAX_TIME_SHIFT,
    MESSAGES,
    NO_ACTUATOR,
    NO_DETAIL,
    PROTOCOL_VERSION,
    RECENT_GAPS,
    RECORD_ACT_ESCAPE,
    ConfigReason,
    Direction,
    EventKind,
    Kind,
    MsgSpec,
    Op,
    OutKind,
    ShutdownReason,
    State,
)
from .schedule import MAX_RECORDS_PER_MESSAGE
from .varint import vlq_size

HEADER = Path(__file__).resolve().parents[2] / "firmware" / "core" / "protocol_gen.h"


def _enum(prefix: str, e: type[IntEnum]) -> list[str]:
    lines = [f"/* {e.__name__} */"]
    for m in e:
        lines.append(f"#define RP_{prefix}_{m.name} {int(m)}")
    return lines


def _up(s: str) -> str:
    return s.upper()


def _max_bytes(spec: MsgSpec) -> int:
    n = vlq_size(spec.id)
    for f in spec.fields:
        if f.kind is Kind.INT:
            n += 5 if f.unsigned32 else max(vlq_size(f.lo), vlq_size(f.hi))
        elif f.kind is Kind.BYTES:
            n += vlq_size(f.hi) + f.hi
        else:
            n += 1 + MAX_PAYLOAD
    return n


def _c_const(v: int) -> str:
    return f"{v}UL" if v > 0x7FFF else str(v)


def _decoder(specs: list[MsgSpec]) -> list[str]:
    out = [
        "/* Decode the fields of host->device message `id` from *pp (advanced past them).",
        " * Returns the field count, or -1: unknown id, truncated, or a value out of range.",
        " * INT fields land in args[] (u32 fields as unsigned, others as int32 bits);",
        " * a RECORDS field gives its count: the records follow at *pp. */",
        "static inline int rp_decode_args(uint8_t id, const uint8_t **pp, const uint8_t *end,",
        "                                 uint32_t *args)",
        "{",
        "    int32_t v;",
        "    (void)v; (void)args;",
        "    switch (id) {",
    ]
    for m in specs:
        out.append(f"    case RP_MSG_{_up(m.name)}:")
        for i, f in enumerate(m.fields):
            out.append("        if (!rp_get_vlq(pp, end, &v)) return -1;")
            if f.kind is Kind.RECORDS:
                out.append("        if (v < 0 || v > RP_MAX_RECORDS_PER_MESSAGE) return -1;")
            elif not f.unsigned32:
                out.append(f"        if (v < {f.lo}L || v > {f.hi}L) return -1;")
            out.append(f"        args[{i}] = (uint32_t)v;")
        out.append(f"        return {len(m.fields)};")
    out += ["    default:", "        return -1;", "    }", "}", ""]
    return out


def _encoders(specs: list[MsgSpec]) -> list[str]:
    out: list[str] = []
    for m in specs:
        params = []
        for f in m.fields:
            if f.kind is Kind.BYTES:
                params.append(f"const uint8_t *{f.name}, uint8_t {f.name}_len")
            else:
                params.append(f"uint32_t {f.name}")
        sig = ", ".join(["uint8_t *p", *params])
        out.append(f"/* {m.name}: {m.doc} */")
        out.append(f"static inline uint8_t *rp_put_{m.name}({sig})")
        out.append("{")
        out.append(f"    p = rp_put_vlq(p, RP_MSG_{_up(m.name)});")
        for f in m.fields:
            if f.kind is Kind.BYTES:
                out.append(f"    p = rp_put_vlq(p, {f.name}_len);")
                out.append(f"    for (uint8_t i = 0; i < {f.name}_len; i++) *p++ = {f.name}[i];")
            else:
                out.append(f"    p = rp_put_vlq(p, (int32_t){f.name});")
        out.append("    return p;")
        out.append("}")
        out.append("")
    return out


def _generic_encoder(specs: list[MsgSpec]) -> list[str]:
    out = [
        "/* Encode device->host message `id` from args[] (BYTES fields from bytes/nbytes).",
        " * Returns the end pointer, or 0 for an unknown id. Used by the golden-vector test. */",
        "static inline uint8_t *rp_encode_args(uint8_t id, const uint32_t *args,",
        "                                      const uint8_t *bytes, uint8_t nbytes, uint8_t *p)",
        "{",
        "    (void)bytes; (void)nbytes; (void)args;",
        "    switch (id) {",
    ]
    for m in specs:
        args = []
        for i, f in enumerate(m.fields):
            args.append("bytes, nbytes" if f.kind is Kind.BYTES else f"args[{i}]")
        out.append(
            f"    case RP_MSG_{_up(m.name)}: return rp_put_{m.name}({', '.join(['p', *args])});"
        )
    out += ["    default: return 0;", "    }", "}", ""]
    return out


def generate() -> str:
    h2d = [m for m in MESSAGES if m.direction is Direction.H2D]
    d2h = [m for m in MESSAGES if m.direction is Direction.D2H]
    lines = [
        "/* Generated by `python -m robo_player.protocol.codegen` from",
        " * robo_player/protocol/messages.py. Do not edit: change the table and rerun. */",
        "#ifndef RP_PROTOCOL_GEN_H",
        "#define RP_PROTOCOL_GEN_H",
        "",
        "#include <stdint.h>",
        '#include "wire.h"',
        "",
        f"#define RP_PROTOCOL_VERSION {PROTOCOL_VERSION}",
        f"#define RP_MAX_PAYLOAD {MAX_PAYLOAD}",
        f"#define RP_MAX_ACTUATORS {MAX_ACTUATORS}",
        f"#define RP_NO_ACTUATOR {NO_ACTUATOR}",
        f"#define RP_NO_DETAIL {NO_DETAIL}U",
        f"#define RP_RECORD_ACT_ESCAPE {RECORD_ACT_ESCAPE}",
        f"#define RP_RECENT_GAPS {RECENT_GAPS}",
        f"#define RP_MAX_LEVEL {MAX_LEVEL}",
        f"#define RP_MAX_PULSE_US {MAX_PULSE_US}",
        f"#define RP_MAX_SERVO_US_PER_WIDTH_US {MAX_SERVO_US_PER_WIDTH_US}U",
        f"#define RP_MAX_SERVO_SETTLE_US {MAX_SERVO_SETTLE_US}U",
        f"#define RP_MAX_POSITION {MAX_POSITION}U",
        f"#define RP_MAX_ON_US {MAX_ON_US}UL",
        f"#define RP_MAX_TIME_SHIFT {MAX_TIME_SHIFT}",
        f"#define RP_MAX_BOARD_NAME {MAX_BOARD_NAME}",
        f"#define RP_MAX_RECORDS_PER_MESSAGE {MAX_RECORDS_PER_MESSAGE}",
        f"#define RP_SEQ_MOD {framing.SEQ_MOD}",
        f"#define RP_MIN_RAW {framing.MIN_RAW}",
        f"#define RP_MAX_RAW {framing.MAX_RAW}",
        f"#define RP_MAX_ENCODED {framing.MAX_ENCODED}",
        f"#define RP_MAX_FIELDS {max(len(m.fields) for m in MESSAGES)}",
        f"#define RP_MAX_H2D_FIELDS {max(len(m.fields) for m in h2d)}",
        "",
        "/* a frame's CRC is rp_crc16(...) ^ RP_CRC16_XOROUT (CRC-16/GENIBUS, protocol 5) */",
        f"#define RP_CRC16_XOROUT 0x{framing.CRC_XOROUT:04X}u",
        "/* CRC-16/CCITT-FALSE table (poly 0x1021), for a table-driven CRC */",
        "#define RP_CRC16_TABLE \\",
        *[
            "    " + ", ".join(f"0x{v:04X}" for v in framing._CRC_TABLE[i : i + 8]) + ", \\"
            for i in range(0, 256, 8)
        ],
        "",
        "",
        *_enum("FRAME", framing.FrameKind),
        *_enum("OP", Op),
        *_enum("OUT", OutKind),
        *_enum("STATE", State),
        *_enum("CFG", ConfigReason),
        *_enum("EV", EventKind),
        *_enum("SHUTDOWN", ShutdownReason),
        "",
        "/* message ids */",
    ]
    for m in MESSAGES:
        lines.append(f"#define RP_MSG_{_up(m.name)} {m.id}")
    lines.append("")
    lines.append("/* field indices in args[] and field counts */")
    for m in MESSAGES:
        for i, f in enumerate(m.fields):
            lines.append(f"#define RP_{_up(m.name)}_{_up(f.name)} {i}")
        lines.append(f"#define RP_{_up(m.name)}_NFIELDS {len(m.fields)}")
        if m.direction is Direction.D2H:
            lines.append(f"#define RP_{_up(m.name)}_MAX_BYTES {_max_bytes(m)}")
    lines.append("")
    lines += _decoder(h2d)
    lines += _encoders(d2h)
    lines += _generic_encoder(d2h)
    lines.append("#endif /* RP_PROTOCOL_GEN_H */")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the header is stale")
    ap.add_argument("--out", type=Path, default=HEADER)
    args = ap.parse_args(argv)
    text = generate()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.out}: stale; run `python -m robo_player.protocol.codegen`\n")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
