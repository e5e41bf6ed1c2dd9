"""Integer encodings of the wire protocol.

Two encodings, both big-endian groups of 7 bits with bit 7 as "more bytes follow":

- :func:`put_vlq` / :func:`get_vlq`: **signed VLQ** for message fields (the scheme
  Klipper's protocol document describes; our own implementation). The first byte's
  bits 6..5 tell the sign: values -32..95 take 1 byte, -4096..12287 2 bytes,
  -2**19..3*2**19-1 3 bytes, -2**26..3*2**26-1 4 bytes, and any 32-bit value 5 bytes.
  Unsigned 32-bit values >= 2**31 travel as their two's complement (5 bytes).
- :func:`put_uvar` / :func:`get_uvar`: **unsigned varint** for the packed schedule
  records, where every value is >= 0: 0..127 take 1 byte, ..16383 2 bytes,
  ..2**21-1 3 bytes, ..2**28-1 4 bytes, ..2**32-1 5 bytes.

:func:`zigzag` maps a signed delta onto an unsigned value (0, -1, 1, -2, ... -> 0, 1, 2,
3, ...), so small deltas of either sign stay small.

The decoders raise :class:`~robo_player.errors.ProtocolError` on a truncated value or one
longer than 5 bytes; the C side (``firmware/core/wire.c``) does the same checks.
"""

from __future__ import annotations

from ..errors import ProtocolError

U32 = 0xFFFFFFFF
MAX_VARINT_BYTES = 5


def vlq_size(v: int) -> int:
    """Bytes :func:`put_vlq` needs for ``v`` (a signed or unsigned 32-bit value)."""
    v = _as_i32(v)
    if -0x20 <= v < 0x60:
        return 1
    if -0x1000 <= v < 0x3000:
        return 2
    if -0x80000 <= v < 0x180000:
        return 3
    if -0x4000000 <= v < 0xC000000:
        return 4
    return 5


def _as_i32(v: int) -> int:
    if not -(1 << 31) <= v <= U32:
        raise ValueError(f"vlq: {v} does not fit 32 bits (allowed -2**31..2**32-1)")
    return v - (1 << 32) if v >= (1 << 31) else v


def put_vlq(out: bytearray, v: int) -> None:
    """Append the signed VLQ of ``v`` (int32, or uint32 sent as two's complement)."""
    v = _as_i32(v)
    n = vlq_size(v)
    for shift in range(7 * (n - 1), 0, -7):
        out.append(((v >> shift) & 0x7F) | 0x80)
    out.append(v & 0x7F)


def get_vlq(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode a signed VLQ at ``pos``; returns ``(value as int32, next pos)``."""
    end = len(data)
    if pos >= end:
        raise ProtocolError(f"vlq at byte {pos}: truncated (no bytes left)")
    c = data[pos]
    pos += 1
    v = c & 0x7F
    if (c & 0x60) == 0x60:  # negative: sign-extend the first group
        v -= 0x80
    count = 1
    while c & 0x80:
        if pos >= end:
            raise ProtocolError(f"vlq at byte {pos}: truncated (continuation bit set)")
        count += 1
        if count > MAX_VARINT_BYTES:
            raise ProtocolError(f"vlq at byte {pos}: longer than {MAX_VARINT_BYTES} bytes")
        c = data[pos]
        pos += 1
        v = (v << 7) | (c & 0x7F)
    v &= U32
    return (v - (1 << 32) if v >= (1 << 31) else v), pos


def uvar_size(v: int) -> int:
    if not 0 <= v <= U32:
        raise ValueError(f"uvar: {v} out of range (allowed 0..2**32-1)")
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def put_uvar(out: bytearray, v: int) -> None:
    """Append the unsigned varint of ``v`` (0..2**32-1), high groups first."""
    n = uvar_size(v)
    for shift in range(7 * (n - 1), 0, -7):
        out.append(((v >> shift) & 0x7F) | 0x80)
    out.append(v & 0x7F)


def get_uvar(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; returns ``(value, next pos)``."""
    end = len(data)
    v = 0
    for count in range(1, MAX_VARINT_BYTES + 1):
        if pos >= end:
            raise ProtocolError(f"uvar at byte {pos}: truncated")
        c = data[pos]
        pos += 1
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            if v > U32:
                raise ProtocolError(f"uvar ending at byte {pos}: {v} exceeds 32 bits")
            return v, pos
        if count == MAX_VARINT_BYTES:
            break
    raise ProtocolError(f"uvar at byte {pos}: longer than {MAX_VARINT_BYTES} bytes")


def zigzag(v: int) -> int:
    """Signed -> unsigned: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ..."""
    return (v << 1) if v >= 0 else ((-v << 1) - 1)


def unzigzag(u: int) -> int:
    return (u >> 1) if not u & 1 else -((u + 1) >> 1)
