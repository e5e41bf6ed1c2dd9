"""Frames: header, CRC-16 and COBS, and a streaming decoder that resyncs after garbage.

A raw frame is ``hdr0 hdr1 payload crc_hi crc_lo``:

- ``hdr0`` = ``kind << 6 | seq`` (``seq`` 0..63, the sender's DATA sequence number;
  0 in ACK/NAK frames);
- ``hdr1`` = ``ack`` (0..63, bits 7..6 zero): the sequence number the sender expects
  next from its peer, i.e. a cumulative acknowledgement of everything before it;
- ``payload``: messages (DATA), or for ACK/NAK from the device ``VLQ(credits)`` (free
  command-queue slots), empty from the host; up to :data:`MAX_PAYLOAD` bytes;
- the frame CRC (:func:`frame_crc`): CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
  reflection) of ``hdr0 hdr1 payload`` XORed with :data:`CRC_XOROUT` (0xFFFF: together
  the catalogued CRC-16/GENIBUS), big-endian. Without the final XOR (protocol 4 and
  before) a frame whose CRC low byte is 0 still passed when the flip of its last COBS code
  byte 0x01 -> 0x00 dropped that byte; with it that shortened frame never passes
  (docs/protocol.md, "Error detection").

On the wire a frame is ``COBS(raw) 0x00``: the only zero byte is the delimiter, so a
receiver resyncs at the next 0x00 whatever garbage came before. A sender that starts
after an idle line (or after garbage) sends one extra 0x00 first, so a frame right
after noise is never glued onto it; back-to-back frames share delimiters. Empty frames
(two zeros in a row) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import ProtocolError
from .messages import MAX_PAYLOAD

SEQ_MOD = 64
HEADER_BYTES = 2
CRC_BYTES = 2
MIN_RAW = HEADER_BYTES + CRC_BYTES
MAX_RAW = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
MAX_ENCODED = MAX_RAW + (MAX_RAW + 253) // 254  # COBS overhead, without the delimiter
WIRE_OVERHEAD = MIN_RAW + 2  # header + CRC + 1 COBS byte + delimiter (payload <= 253)


class FrameKind(IntEnum):
    DATA = 0  # carries messages; consumes a sequence number
    ACK = 1  # cumulative ack; device adds VLQ(credits)
    NAK = 2  # "resend from ack": a gap, a corrupt frame, or a frame that did not fit
    SYNC = 3  # host only: the receiver's expected seq becomes this frame's seq


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    seq: int
    ack: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.seq < SEQ_MOD or not 0 <= self.ack < SEQ_MOD:
            raise ProtocolError(f"frame: seq {self.seq} / ack {self.ack} out of range (0..63)")
        if len(self.payload) > MAX_PAYLOAD:
            raise ProtocolError(
                f"frame: payload of {len(self.payload)} bytes (allowed 0..{MAX_PAYLOAD})"
            )

    def raw(self) -> bytes:
        body = bytes((int(self.kind) << 6 | self.seq, self.ack)) + self.payload
        return body + frame_crc(body).to_bytes(2, "big")

    def encode(self) -> bytes:
        """Wire bytes: ``COBS(raw) 0x00`` (no leading delimiter)."""
        return cobs_encode(self.raw()) + b"\x00"

    @classmethod
    def from_raw(cls, raw: bytes) -> Frame:
        if not MIN_RAW <= len(raw) <= MAX_RAW:
            raise ProtocolError(f"frame: {len(raw)} bytes (allowed {MIN_RAW}..{MAX_RAW})")
        body, crc = raw[:-2], int.from_bytes(raw[-2:], "big")
        if frame_crc(body) != crc:
            raise ProtocolError(f"frame: CRC {crc:#06x} != computed {frame_crc(body):#06x}")
        if body[1] & 0xC0:
            raise ProtocolError(f"frame: hdr1 {body[1]:#04x} has reserved bits set")
        return cls(FrameKind(body[0] >> 6), body[0] & 0x3F, body[1], bytes(body[2:]))


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (check value of b"123456789" is 0x29B1)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


CRC_XOROUT = 0xFFFF  # the frame CRC's final XOR (protocol 5)


def frame_crc(body: bytes | bytearray | memoryview) -> int:
    """The CRC a frame carries: :func:`crc16` of ``hdr0 hdr1 payload`` XOR
    :data:`CRC_XOROUT` (CRC-16/GENIBUS; check value of b"123456789" is 0xD64E).

    Why the XOR: CRC-16 without one leaves a zero residue under a trailing 0x00, so a frame
    whose CRC low byte is 0, shortened by one byte (its last COBS code byte 0x01 flipped
    to a delimiter), still checked. With an XOR ``X`` the frame checks only if the register
    after ``body crc_hi`` is ``x**-8 * R`` where the whole frame needs ``R = X * x**16 mod
    g``; both hold only if ``(x**8 - 1) R = 0 mod g``, i.e. ``X`` is 0 or the degree-15
    factor of ``g = (x + 1) p(x)``: with 0xFFFF the shortened frame never passes."""
    return crc16(body) ^ CRC_XOROUT


def cobs_encode(data: bytes | bytearray) -> bytes:
    out = bytearray([0])
    code_at = 0
    code = 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
            continue
        out.append(b)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes | bytearray) -> bytes:
    """Inverse of :func:`cobs_encode` (``data`` without the delimiter)."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError(f"cobs: zero byte at {i} inside a frame")
        i += 1
        end = i + code - 1
        if end > n:
            raise ProtocolError(f"cobs: block of {code - 1} bytes at {i} runs past the end ({n})")
        chunk = data[i:end]
        if 0 in chunk:
            raise ProtocolError("cobs: zero byte inside a block")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(kind: FrameKind, seq: int, ack: int, payload: bytes = b"") -> bytes:
    return Frame(kind, seq, ack, payload).encode()


@dataclass(slots=True)
class DecoderStats:
    frames: int = 0  # good frames returned
    crc_errors: int = 0  # COBS fine, CRC wrong
    framing_errors: int = 0  # bad COBS, too short, too long, reserved bits
    garbage_bytes: int = 0  # bytes of every dropped frame (delimiter excluded)


class FrameDecoder:
    """Streaming decoder: ``feed(bytes) -> list[Frame]``; never returns a corrupt frame.

    Bytes accumulate until a 0x00; a chunk longer than :data:`MAX_ENCODED` is dropped
    at once (and the rest of it, up to the next 0x00), so memory stays bounded.
    """

    def __init__(self) -> None:
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._overflow = 0  # bytes dropped from the current oversized chunk

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        frames: list[Frame] = []
        for b in bytes(data):
            if b != 0:
                if self._overflow:
                    self._overflow += 1
                elif len(self._buf) >= MAX_ENCODED:
                    self._overflow = len(self._buf) + 1
                    self._buf.clear()
                else:
                    self._buf.append(b)
                continue
            if self._overflow:
                self.stats.framing_errors += 1
                self.stats.garbage_bytes += self._overflow
                self._overflow = 0
                continue
            if not self._buf:
                continue
            chunk = bytes(self._buf)
            self._buf.clear()
            frame = self._decode_chunk(chunk)
            if frame is not None:
                frames.append(frame)
        return frames

    def _decode_chunk(self, chunk: bytes) -> Frame | None:
        try:
            raw = cobs_decode(chunk)
        except ProtocolError:
            self._drop(chunk, crc=False)
            return None
        if not MIN_RAW <= len(raw) <= MAX_RAW or raw[1] & 0xC0:
            self._drop(chunk, crc=False)
            return None
        if frame_crc(raw[:-2]) != int.from_bytes(raw[-2:], "big"):
            self._drop(chunk, crc=True)
            return None
        self.stats.frames += 1
        return Frame(FrameKind(raw[0] >> 6), raw[0] & 0x3F, raw[1], bytes(raw[2:-2]))

    def _drop(self, chunk: bytes, crc: bool) -> None:
        if crc:
            self.stats.crc_errors += 1
        else:
            self.stats.framing_errors += 1
        self.stats.garbage_bytes += len(chunk)


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in sequence space, in -32..31."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d
