"""The one definition of the wire protocol's messages.

Every message is a :class:`MsgSpec` in :data:`MESSAGES`: its id, direction, fields (each
with a kind and an allowed range) and documentation. This table drives Python encoding,
decoding and validation here, and ``python -m robo_player.protocol.codegen`` generates
``firmware/core/protocol_gen.h`` from it (ids, constants, a range-checking decoder and
reply encoders), so the firmware cannot disagree with it. ``docs/protocol.md`` explains
the rules around the table (who sends what, acks, credits, timing, safety).

A message on the wire is ``VLQ(id)`` followed by its fields in table order:

- ``INT`` fields are signed VLQs (:mod:`.varint`), range-checked on both sides; ranges
  above 2**31 mean an unsigned 32-bit value (sent as two's complement).
- ``BYTES`` fields are ``VLQ(length)`` then the bytes.
- ``RECORDS`` (only in ``schedule``) is ``VLQ(count)`` then packed records
  (:class:`Record`, see :func:`put_record`).

A DATA frame's payload is one or more messages back to back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Any

from ..errors import ProtocolError
from ..servo import MAX_SETTLE_US, MAX_US_PER_WIDTH_US
from .varint import U32, get_uvar, get_vlq, put_uvar, put_vlq, unzigzag, zigzag

PROTOCOL_VERSION = 8  # 2: status.i2c_errors; 3: configure_begin.pca_prescale;
# 4: 10-bit actuator indices (records escape 127; NO_ACTUATOR 1024; config_result.detail 16 bits);
# 5: the frame CRC's final XOR (framing.CRC_XOROUT), schedule_move (Op.MOVE),
#    events REFUSED_BUSY and REFUSED_MOVE;
# 6: configure_begin.watchdog_drain_ms, State.DRAINING (the watchdog plays out the queue)
# 7: a record's time is a code: 0 (no gap), one of the RECENT_GAPS last gaps, or a new gap
# 8: configure_servo (a hobby servo's speed and settle: a press refused while it moves)

# ---- limits shared by both sides (the C header gets them as RP_* macros) ----
MAX_PAYLOAD = 120  # bytes of messages in one frame
MAX_ACTUATORS = 1024  # actuator indices 0..1023 (10 bits; a record spends 1 byte on 0..126)
MAX_LEVEL = 4095  # PWM counts (12 bits: PCA9685); a board may declare less
MAX_PULSE_US = 65535
MAX_POSITION = 65535  # a positioner's target (steps or counts of its travel: 16 bits)
MAX_ON_US = 600_000_000  # 10 min: the widest max_on a config may ask for
MAX_TIME_SHIFT = 8
MAX_LEVEL_SHIFT = 4
PCA_OSC_HZ = 25_000_000  # the PCA9685's internal oscillator
PCA_PRESCALE_DEFAULT = 5  # PRE_SCALE for ~1 kHz (1017 Hz)
MAX_BOARD_NAME = 16
# a hobby servo's speed and settle (configure_servo; robo_player/servo.py's rule)
MAX_SERVO_US_PER_WIDTH_US = MAX_US_PER_WIDTH_US
MAX_SERVO_SETTLE_US = MAX_SETTLE_US
MAX_OUT_KIND = 15  # OutKind values the wire carries (boards/: one hook entry per kind)
NO_ACTUATOR = MAX_ACTUATORS  # "no actuator" in events and status
NO_DETAIL = 65535  # config_result.detail when no index or count applies
# a record's first byte holds the index up to this; from it on, uvar(index - it) follows
RECORD_ACT_ESCAPE = 0x7F
# a record's time code 1..RECENT_GAPS names one of the gaps used last (Record.recent)
RECENT_GAPS = 4
U32_MAX = U32
MAX_DCLOCK = U32 - RECENT_GAPS  # the largest new gap a time code carries


class Direction(Enum):
    H2D = "host->device"
    D2H = "device->host"


class Kind(Enum):
    INT = "int"
    BYTES = "bytes"
    RECORDS = "records"


class Op(IntEnum):
    """What a queued command does to its actuator."""

    RELEASE = 0  # level 0 (always safe: a late release still runs, and is reported)
    STRIKE = 1  # level = drive for pulse_us, then hold level until a release
    SET = 2  # level stays (pedal); still bounded by max_on and the duty limit
    MOVE = 3  # a positioner to `position` (schedule_move); the board's hook starts it at
    # its clock, or refuses it (REFUSED_MOVE: a board or kind without positioners)


class OutKind(IntEnum):
    """How an actuator's output is driven; each board has one entry of hooks per kind it
    drives (``firmware/boards/avr/outputs.h``)."""

    DIRECT = 0  # out_channel = the board's output number (AVR: boards/avr/pins.h)
    PCA9685 = 1  # out_addr = 7-bit I2C address, out_channel = 0..15
    # a hobby servo's position (docs/guitar.md, "Hobby-servo carriages"): out_channel =
    # a direct output, out_addr = the presser on its carriage; pwm_max = max_drive = the
    # travel (counts), max_pulse_us = the pulse width at 0, max_on_us = at the travel (µs)
    SERVO = 2
    # a positioner on a stepper driver (docs/guitar.md, "Firmware"): out_channel = the
    # step output (the dir output is the next one), out_addr = the presser actuator on
    # its carriage (its own index: none); pwm_max = max_drive = the travel (steps),
    # max_pulse_us = the top speed (steps/s), max_on_us = the acceleration (steps/s^2)
    STEP_DIR = 3


class State(IntEnum):
    UNCONFIGURED = 0
    READY = 1
    SHUTDOWN = 2
    CONFIGURING = 3
    DRAINING = 4  # the watchdog fired: the queue plays out, nothing new is taken; then
    # all off and SHUTDOWN (docs/protocol.md "Watchdog")


class ConfigReason(IntEnum):
    """Why ``configure_end`` was refused (``config_result.reason``)."""

    OK = 0
    TOO_MANY_ACTUATORS = 1  # actuator_count > identify.max_actuators (detail = count)
    BAD_INDEX = 2  # configure_actuator index >= actuator_count (detail = index)
    DUPLICATE_INDEX = 3  # index configured twice (detail = index)
    MISSING_ACTUATOR = 4  # an index below actuator_count never configured (detail = index)
    LIMIT_OUT_OF_RANGE = 5  # a limit the firmware cannot honour, or more distinct limit sets
    # than it holds (identify has no field for that: AVR 8, host 64) (detail = index)
    BAD_OUTPUT = 6  # output kind/address/channel this board cannot drive, or used twice
    HASH_MISMATCH = 7  # configure_end.hash != hash of what the firmware received
    NO_BEGIN = 8  # configure_actuator/end without configure_begin


class EventKind(IntEnum):
    """Asynchronous reports (``event``). ``index`` is the command's record index."""

    LATE = 1  # a strike/set whose time had passed: not played
    LATE_RELEASE = 2  # a release whose time had passed: run at once
    REFUSED_RANGE = 3  # actuator not configured, drive > max_drive, pulse > max_pulse
    REFUSED_DUTY = 4  # the coil's duty budget is spent
    REFUSED_CONCURRENCY = 5  # max_concurrent strike pulses already running
    REFUSED_TOO_FAR = 6  # more than 2**30 ticks ahead
    REFUSED_STATE = 7  # not configured, or shut down
    CUTOFF_MAX_ON = 8  # coil forced off: on longer than max_on_us (index = its strike)
    CUTOFF_DUTY = 9  # coil forced off: duty budget overflowed while on
    BAD_MESSAGE = 10  # a CRC-good frame whose messages do not parse (index = frame seq)
    FLUSHED = 11  # queue flushed by all_off/shutdown/watchdog (index = first, clock = count)
    REFUSED_BUSY = 12  # a strike pulse on an actuator its board calls busy (a press on a
    # carriage that is still moving: board_output_busy)
    REFUSED_MOVE = 13  # a move the board did not take (no positioner there, a target past
    # its travel: board_output_move)


class ShutdownReason(IntEnum):
    """``shutdown_notice.reason``; a host ``shutdown`` carries its own code (>= 16)."""

    NONE = 0
    WATCHDOG = 1  # no valid frame from the host for watchdog_ms (+ the drain)
    INTERNAL = 2  # a firmware invariant broke
    HOST = 16  # the smallest code the host uses in its own ``shutdown``


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    lo: int = 0
    hi: int = 0
    kind: Kind = Kind.INT
    doc: str = ""

    @property
    def unsigned32(self) -> bool:
        return self.kind is Kind.INT and self.hi > 0x7FFFFFFF


def _u32(name: str, doc: str = "") -> Field:
    return Field(name, 0, U32, Kind.INT, doc)


def _int(name: str, lo: int, hi: int, doc: str = "") -> Field:
    return Field(name, lo, hi, Kind.INT, doc)


@dataclass(frozen=True, slots=True)
class MsgSpec:
    id: int
    name: str
    direction: Direction
    fields: tuple[Field, ...]
    doc: str

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


H2D = Direction.H2D
D2H = Direction.D2H
_TAG = _int("tag", 0, 255, "echoed in the reply, to match it to its request")
_ACT = _int("actuator", 0, MAX_ACTUATORS - 1)

MESSAGES: tuple[MsgSpec, ...] = (
    # ---------------- host -> device ----------------
    MsgSpec(1, "identify", H2D, (), "ask for identify_resp"),
    MsgSpec(
        2,
        "configure_begin",
        H2D,
        (
            _int("actuator_count", 1, MAX_ACTUATORS),
            _int("max_concurrent", 1, MAX_ACTUATORS, "strike pulses that may overlap"),
            _int("watchdog_ms", 10, 10_000, "host silent this long -> the watchdog fires (see watchdog_drain_ms)"),
            _int("duty_window_ms", 100, 600_000, "duty limit: window of the leaky bucket"),
            _int("time_shift", 0, MAX_TIME_SHIFT, "schedule clock unit = 2**time_shift ticks"),
            _int("level_shift", 0, MAX_LEVEL_SHIFT, "packed strike drive unit = 2**level_shift"),
            _int("pca_prescale", 3, 255,
                 "PCA9685 PRE_SCALE, every board: PWM Hz = 25 MHz / (4096 (pca_prescale + 1))"),
            _int("watchdog_drain_ms", 0, 10_000,
                 "after the watchdog fires: the queue plays out (state DRAINING, nothing new "
                 "taken) until it is empty or this long has passed, then all off, shutdown"),
        ),
        "start a configuration: all off, queue flushed, state CONFIGURING",
    ),
    MsgSpec(
        3,
        "configure_actuator",
        H2D,
        (
            _ACT,
            _int("out_kind", 0, MAX_OUT_KIND,
                 "OutKind; a kind the board has no hooks for is refused with BAD_OUTPUT"),
            _int("out_addr", 0, 127, "PCA9685 I2C address; 0 for direct"),
            _int("out_channel", 0, 255, "PCA9685 channel or MCU pin"),
            _int("pwm_max", 1, MAX_LEVEL, "full-drive level (2**pwm_bits-1)"),
            _int("max_drive", 0, MAX_LEVEL, "highest strike/set level allowed"),
            _int("max_on_us", 1000, MAX_ON_US, "longest continuous on-time (pulse + hold)"),
            _int("max_pulse_us", 0, MAX_PULSE_US),
            _int("duty_permille", 1, 1000, "mean (level/pwm_max)**2 over duty_window_ms"),
        ),
        "one actuator's output and safety limits (several per frame)",
    ),
    MsgSpec(
        4,
        "configure_end",
        H2D,
        (_u32("hash", "config_hash() of the configure messages sent"),),
        "validate and apply; the device answers config_result",
    ),
    MsgSpec(5, "get_clock", H2D, (_TAG,), "ask for the MCU clock (answer: clock)"),
    MsgSpec(
        6,
        "sched_base",
        H2D,
        (_u32("clock", "absolute MCU clock (low 32 bits) of the schedule base"),),
        "set the clock that the next record's dclock counts from",
    ),
    MsgSpec(
        7,
        "schedule",
        H2D,
        (Field("records", 0, 0, Kind.RECORDS, "packed records, see Record"),),
        "queue commands in packed delta form",
    ),
    MsgSpec(
        8,
        "schedule_ext",
        H2D,
        (
            _int("op", 0, 2, "Op"),
            _ACT,
            _u32("dclock", "units of 2**time_shift ticks after the previous record"),
            _int("level", 0, MAX_LEVEL, "strike drive or set level; 0 for release"),
            _int("pulse_us", 0, MAX_PULSE_US, "strike only"),
            _int("hold", 0, MAX_LEVEL, "strike only"),
        ),
        "queue one command in explicit form (pedal, one-off pulse/hold); "
        "leaves the drive/pulse/hold predictors alone",
    ),
    MsgSpec(9, "all_off", H2D, (), "every output off now, queue flushed; stays READY"),
    MsgSpec(10, "heartbeat", H2D, (_TAG,), "keep the watchdog fed; the device answers status"),
    MsgSpec(
        11,
        "shutdown",
        H2D,
        (_int("reason", 16, 255, "host's own code"),),
        "all off, flush, state SHUTDOWN until the next configure",
    ),
    MsgSpec(
        12,
        "schedule_move",
        H2D,
        (
            _ACT,
            _u32("dclock", "units of 2**time_shift ticks after the previous record"),
            _int("position", 0, MAX_POSITION, "target: steps or counts of the positioner"),
        ),
        "queue a positioner move (Op.MOVE), timed like a strike; takes a record index and a "
        "queue slot; leaves the drive/pulse/hold predictors alone",
    ),
    MsgSpec(
        13,
        "configure_servo",
        H2D,
        (
            _ACT,
            _int("us_per_width_us", 0, MAX_SERVO_US_PER_WIDTH_US,
                 "how long the servo takes per us of pulse width it is moved (its speed: its "
                 "full travel's time / (pulse_max - pulse_min), rounded up)"),
            _int("settle_us", 0, MAX_SERVO_SETTLE_US, "then how long it takes to settle"),
        ),
        "a hobby servo's (configure_actuator out_kind SERVO, sent before it) speed and "
        "settle: the firmware holds its carriage busy to a press from a move's clock to its "
        "first pulse + the width change at that speed + settle (REFUSED_BUSY); a servo "
        "without one is held for the slowest (docs/guitar.md, Firmware: hobby-servo)",
    ),
    # ---------------- device -> host ----------------
    MsgSpec(
        33,
        "identify_resp",
        D2H,
        (
            _int("protocol_version", 0, 255),
            _int("fw_version", 0, 65535, "major*256 + minor"),
            Field("board", 0, MAX_BOARD_NAME, Kind.BYTES, "ASCII board name"),
            _u32("clock_hz"),
            _int("queue_size", 1, 65535, "command queue slots"),
            _int("max_actuators", 1, MAX_ACTUATORS),
            _int("rx_buffer", 1, 65535, "bytes the host may have in flight"),
            _int("max_payload", 1, MAX_PAYLOAD),
            _u32("boot_id", "new random value at every reset"),
            _u32("max_on_us_limit", "largest max_on_us this firmware accepts"),
            _int("max_level", 1, MAX_LEVEL),
            _int("late_slack_us", 0, 65535, "dispatch later than this = late"),
            _int("state", 0, max(State), "State"),
        ),
        "answer to identify",
    ),
    MsgSpec(
        34,
        "config_result",
        D2H,
        (
            _int("reason", 0, 255, "ConfigReason"),
            _int("detail", 0, NO_DETAIL, "actuator index, count, or NO_DETAIL (65535)"),
            _u32("hash", "hash of what the firmware received"),
        ),
        "answer to configure_end",
    ),
    MsgSpec(35, "clock", D2H, (_TAG, _u32("clock")), "answer to get_clock"),
    MsgSpec(
        36,
        "status",
        D2H,
        (
            _TAG,
            _int("state", 0, max(State), "State"),
            _u32("boot_id"),
            _u32("clock", "MCU clock when the status was made"),
            _int("free", 0, 65535, "free command-queue slots (credits)"),
            _u32("next_index", "records accepted since configure"),
            _u32("played", "records run on time"),
            _u32("late", "records reported late (LATE or LATE_RELEASE)"),
            _u32("refused", "records refused (REFUSED_*)"),
            _u32("flushed", "records dropped by all_off/shutdown/watchdog"),
            _u32("cutoffs", "coils forced off by max_on or duty"),
            _u32("bad_frames", "CRC or framing errors and bad messages seen"),
            _int("heat_permille", 0, 65535, "hottest coil's duty budget used, 1000 = full"),
            _int("heat_actuator", 0, MAX_ACTUATORS, "hottest coil (NO_ACTUATOR = none)"),
            _int(
                "i2c_errors",
                0,
                65535,
                "output bus faults since boot (PCA9685: NACKs, bus errors, stuck buses, "
                "write-queue overflows; 0 without one)",
            ),
        ),
        "answer to heartbeat; played+late+refused+flushed+queued == next_index",
    ),
    MsgSpec(
        37,
        "event",
        D2H,
        (
            _int("kind", 0, 255, "EventKind"),
            _u32("index", "record index (or frame seq for BAD_MESSAGE)"),
            _int("actuator", 0, MAX_ACTUATORS),
            _u32("clock", "when (or a count, for FLUSHED)"),
        ),
        "asynchronous report; not retransmitted (status counters are cumulative)",
    ),
    MsgSpec(
        38,
        "shutdown_notice",
        D2H,
        (_int("reason", 0, 255, "ShutdownReason or the host's code"), _u32("clock")),
        "the firmware went all off and into SHUTDOWN",
    ),
)

BY_NAME: dict[str, MsgSpec] = {m.name: m for m in MESSAGES}
BY_ID: dict[int, MsgSpec] = {m.id: m for m in MESSAGES}


@dataclass(frozen=True, slots=True)
class Record:
    """One packed ``schedule`` command (a strike or a release).

    Wire form: ``byte(strike << 7 | min(actuator, 127))``, for an actuator >= 127 then
    ``uvar(actuator - 127)`` (indices 0..126 cost one byte), ``uvar(time code)``, then for
    a strike ``uvar(zigzag(ddrive) << 1 | has_pulse_hold)`` and, if that flag is set,
    ``uvar(pulse_us)`` ``uvar(hold)``.

    - The time code (protocol 7) says how far after the previous record this one is, in
      units of ``2**time_shift`` ticks: ``0`` = no gap (a chord); ``1..RECENT_GAPS``
      (``recent``) = the gap of that rank in the list of recent gaps; from
      ``RECENT_GAPS + 1`` on, a new gap of ``code - RECENT_GAPS`` units (``dclock`` >= 1).
      Both ends keep the list, most recent first (empty = zeros after configure): a
      gap used, new or recent, moves to its front and a new one pushes the last one
      out (:func:`take_gap`). Music repeats a handful of gaps (a beat, a note's length,
      a key's latency), so most records spend one byte on their time instead of three.
    - ``dclock``: a new gap (>= 0: the stream is in time order; :class:`ScheduleEncoder`
      sends ``sched_base`` otherwise); 0 with ``recent``.
    - ``ddrive``: this strike's drive minus the previous packed strike's drive (any
      actuator; 0 after configure), both in units of ``2**level_shift`` counts.
    - ``pulse_us``/``hold``: None = the previous packed strike's values (0 and 0 after
      configure); given = new values (hold in counts), remembered for the next strikes.
    """

    actuator: int
    strike: bool
    dclock: int
    ddrive: int = 0
    pulse_us: int | None = None
    hold: int | None = None
    recent: int = 0  # 1..RECENT_GAPS: the gap is the recent one of that rank (dclock 0)

    def validate(self) -> None:
        if not 0 <= self.actuator < MAX_ACTUATORS:
            raise ProtocolError(
                f"record: actuator {self.actuator} out of range (allowed 0..{MAX_ACTUATORS - 1})"
            )
        if not 0 <= self.dclock <= MAX_DCLOCK:
            raise ProtocolError(
                f"record: dclock {self.dclock} out of range (allowed 0..2**32-1-{RECENT_GAPS})"
            )
        if not 0 <= self.recent <= RECENT_GAPS or (self.recent and self.dclock):
            raise ProtocolError(
                f"record: recent {self.recent} (allowed 0..{RECENT_GAPS}; with dclock 0)"
            )
        if not self.strike:
            if self.ddrive or self.pulse_us is not None or self.hold is not None:
                raise ProtocolError("record: a release carries no drive, pulse or hold")
            return
        if not -MAX_LEVEL <= self.ddrive <= MAX_LEVEL:
            raise ProtocolError(f"record: ddrive {self.ddrive} out of range (allowed ±{MAX_LEVEL})")
        if (self.pulse_us is None) != (self.hold is None):
            raise ProtocolError("record: pulse_us and hold come together or not at all")
        if self.pulse_us is not None and not 0 <= self.pulse_us <= MAX_PULSE_US:
            raise ProtocolError(
                f"record: pulse_us {self.pulse_us} out of range (allowed 0..{MAX_PULSE_US})"
            )
        if self.hold is not None and not 0 <= self.hold <= MAX_LEVEL:
            raise ProtocolError(f"record: hold {self.hold} out of range (allowed 0..{MAX_LEVEL})")


def put_record(out: bytearray, r: Record) -> None:
    r.validate()
    a = r.actuator
    if a < RECORD_ACT_ESCAPE:
        out.append((0x80 if r.strike else 0) | a)
    else:
        out.append((0x80 if r.strike else 0) | RECORD_ACT_ESCAPE)
        put_uvar(out, a - RECORD_ACT_ESCAPE)
    put_uvar(out, r.recent or (r.dclock and r.dclock + RECENT_GAPS))
    if r.strike:
        has = r.pulse_us is not None
        put_uvar(out, (zigzag(r.ddrive) << 1) | int(has))
        if has:
            assert r.pulse_us is not None and r.hold is not None
            put_uvar(out, r.pulse_us)
            put_uvar(out, r.hold)


def get_record(data: bytes | bytearray | memoryview, pos: int) -> tuple[Record, int]:
    if pos >= len(data):
        raise ProtocolError(f"record at byte {pos}: truncated")
    b = data[pos]
    pos += 1
    strike = bool(b & 0x80)
    act = b & 0x7F
    if act == RECORD_ACT_ESCAPE:
        ext, pos = get_uvar(data, pos)
        act += ext
        if act >= MAX_ACTUATORS:
            raise ProtocolError(
                f"record at byte {pos}: actuator {act} out of range (allowed 0..{MAX_ACTUATORS - 1})"
            )
    code, pos = get_uvar(data, pos)
    recent = code if code <= RECENT_GAPS else 0
    dclock = code - RECENT_GAPS if code > RECENT_GAPS else 0
    if not strike:
        return Record(act, False, dclock, recent=recent), pos
    v, pos = get_uvar(data, pos)
    ddrive = unzigzag(v >> 1)
    pulse = hold = None
    if v & 1:
        pulse, pos = get_uvar(data, pos)
        hold, pos = get_uvar(data, pos)
    r = Record(act, True, dclock, ddrive, pulse, hold, recent)
    try:
        r.validate()
    except ProtocolError as err:
        raise ProtocolError(f"record ending at byte {pos}: {err}") from err
    return r, pos


def take_gap(recent_gaps: list[int], dclock: int, recent: int) -> int:
    """The gap a record's time code means, and the list of recent gaps moved on, as
    the firmware does it (``run_record`` in ``firmware/core/fw.c``): the gap used, a
    recent one or a new one, goes to the front; a new one pushes the last one out."""
    if recent:
        dclock = recent_gaps.pop(recent - 1)
    elif not dclock:
        return 0
    else:
        recent_gaps.pop()
    recent_gaps.insert(0, dclock)
    return dclock


Value = int | bytes | tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its name and field values in table order (mido-like)."""

    name: str
    values: tuple[Value, ...]

    @classmethod
    def make(cls, name: str, **kw: Any) -> Message:
        spec = BY_NAME.get(name)
        if spec is None:
            raise ProtocolError(f"message {name!r}: unknown (known: {', '.join(BY_NAME)})")
        names = spec.field_names()
        extra = set(kw) - set(names)
        if extra:
            raise ProtocolError(f"message {name}: unknown field(s) {sorted(extra)}")
        missing = [n for n in names if n not in kw]
        if missing:
            raise ProtocolError(f"message {name}: missing field(s) {missing}")
        vals: list[Value] = []
        for f in spec.fields:
            v = kw[f.name]
            if f.kind is Kind.RECORDS:
                v = tuple(v)
            vals.append(v)
        msg = cls(name, tuple(vals))
        msg.validate()
        return msg

    @property
    def spec(self) -> MsgSpec:
        return BY_NAME[self.name]

    def __getitem__(self, field_name: str) -> Any:
        try:
            return self.values[self.spec.field_names().index(field_name)]
        except ValueError:
            raise KeyError(f"message {self.name} has no field {field_name!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.spec.field_names(), self.values, strict=True))

    def validate(self) -> None:
        spec = self.spec
        if len(self.values) != len(spec.fields):
            raise ProtocolError(
                f"message {self.name}: {len(self.values)} values for {len(spec.fields)} fields"
            )
        for f, v in zip(spec.fields, self.values, strict=True):
            if f.kind is Kind.INT:
                if not isinstance(v, int) or isinstance(v, bool) or not f.lo <= v <= f.hi:
                    raise ProtocolError(
                        f"message {self.name}.{f.name}: {v!r} out of range (allowed {f.lo}..{f.hi})"
                    )
            elif f.kind is Kind.BYTES:
                if not isinstance(v, bytes) or not f.lo <= len(v) <= f.hi:
                    raise ProtocolError(
                        f"message {self.name}.{f.name}: {v!r} must be {f.lo}..{f.hi} bytes"
                    )
            else:
                if not isinstance(v, tuple):
                    raise ProtocolError(f"message {self.name}.{f.name}: records must be a tuple")
                for r in v:
                    if not isinstance(r, Record):
                        raise ProtocolError(f"message {self.name}.{f.name}: {r!r} is not a Record")
                    r.validate()

    def encode(self) -> bytes:
        out = bytearray()
        put_message(out, self)
        return bytes(out)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Message({self.name!r}, {args})"


def put_message(out: bytearray, msg: Message) -> None:
    spec = msg.spec
    put_vlq(out, spec.id)
    for f, v in zip(spec.fields, msg.values, strict=True):
        if f.kind is Kind.INT:
            assert isinstance(v, int)
            put_vlq(out, v)
        elif f.kind is Kind.BYTES:
            assert isinstance(v, bytes)
            put_vlq(out, len(v))
            out += v
        else:
            assert isinstance(v, tuple)
            put_vlq(out, len(v))
            for r in v:
                assert isinstance(r, Record)
                put_record(out, r)


def encode_messages(msgs: Iterable[Message]) -> bytes:
    out = bytearray()
    for m in msgs:
        put_message(out, m)
    return bytes(out)


def get_message(data: bytes | bytearray | memoryview, pos: int) -> tuple[Message, int]:
    start = pos
    mid, pos = get_vlq(data, pos)
    spec = BY_ID.get(mid)
    if spec is None:
        raise ProtocolError(f"message at byte {start}: unknown id {mid}")
    vals: list[Value] = []
    for f in spec.fields:
        at = pos
        if f.kind is Kind.INT:
            v, pos = get_vlq(data, pos)
            if f.unsigned32:
                v &= U32
            if not f.lo <= v <= f.hi:
                raise ProtocolError(
                    f"{spec.name}.{f.name} at byte {at}: {v} out of range (allowed {f.lo}..{f.hi})"
                )
            vals.append(v)
        elif f.kind is Kind.BYTES:
            n, pos = get_vlq(data, pos)
            if not f.lo <= n <= f.hi or pos + n > len(data):
                raise ProtocolError(f"{spec.name}.{f.name} at byte {at}: bad length {n}")
            vals.append(bytes(data[pos : pos + n]))
            pos += n
        else:
            n, pos = get_vlq(data, pos)
            if not 0 <= n <= MAX_PAYLOAD:
                raise ProtocolError(f"{spec.name}.{f.name} at byte {at}: bad count {n}")
            recs = []
            for _ in range(n):
                r, pos = get_record(data, pos)
                recs.append(r)
            vals.append(tuple(recs))
    return Message(spec.name, tuple(vals)), pos


def decode_messages(payload: bytes | bytearray | memoryview) -> list[Message]:
    """All messages of a DATA payload; ProtocolError if any byte does not parse."""
    out: list[Message] = []
    pos = 0
    while pos < len(payload):
        m, pos = get_message(payload, pos)
        out.append(m)
    return out


def iter_specs(direction: Direction | None = None) -> Iterator[MsgSpec]:
    return (m for m in MESSAGES if direction is None or m.direction is direction)


FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a(data: bytes | bytearray, h: int = FNV_OFFSET) -> int:
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & U32
    return h


def config_hash(msgs: Iterable[Message]) -> int:
    """FNV-1a 32 over the encoded ``configure_begin``, ``configure_actuator`` and
    ``configure_servo`` messages, in the order sent. The firmware hashes the same bytes as
    it receives them."""
    h = FNV_OFFSET
    for m in msgs:
        if m.name in ("configure_begin", "configure_actuator", "configure_servo"):
            h = fnv1a(m.encode(), h)
    return h


def _check_table(table: Mapping[str, MsgSpec]) -> None:
    ids = [m.id for m in MESSAGES]
    assert len(set(ids)) == len(ids), "duplicate message id"
    assert all(0 < i < 96 for i in ids), "ids must be 1-byte VLQs"
    for m in table.values():
        for f in m.fields:
            assert f.kind is not Kind.RECORDS or m.fields == (f,), "records field must be alone"


_check_table(BY_NAME)
