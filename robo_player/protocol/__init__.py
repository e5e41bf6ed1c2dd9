"""The wire protocol: one message table, framing, CRC, and the packed schedule encoding.

- :mod:`.messages`: the message table (ids, fields, ranges, version), :class:`Message`,
  :class:`Record`, reason/event codes; ``codegen`` makes the firmware's C header from it.
- :mod:`.framing`: frames (seq, ack, kind), CRC-16, COBS, :class:`FrameDecoder`.
- :mod:`.schedule`: absolute timed commands <-> packed delta records.
- :mod:`.varint`: VLQ and unsigned varints.

The rules around the table (acks, credits, window, watchdog, late commands) are in
``docs/protocol.md``.
"""

from .framing import Frame, FrameDecoder, FrameKind, crc16, encode_frame, frame_crc
from .messages import (
    MESSAGES,
    PROTOCOL_VERSION,
    ConfigReason,
    EventKind,
    Message,
    Op,
    OutKind,
    Record,
    ShutdownReason,
    State,
    config_hash,
    decode_messages,
    encode_messages,
)
from .schedule import Encoded, PayloadPacker, ScheduleDecoder, ScheduleEncoder, TimedCommand

__all__ = [
    "MESSAGES",
    "PROTOCOL_VERSION",
    "Encoded",
    "ConfigReason",
    "EventKind",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "Message",
    "Op",
    "OutKind",
    "PayloadPacker",
    "Record",
    "ScheduleDecoder",
    "ScheduleEncoder",
    "ShutdownReason",
    "State",
    "TimedCommand",
    "config_hash",
    "crc16",
    "frame_crc",
    "decode_messages",
    "encode_frame",
    "encode_messages",
]
