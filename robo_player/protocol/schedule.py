"""Absolute timed commands <-> the packed delta form of ``schedule`` messages.

The wire carries each command's clock as a delta from the previous command's clock (in
units of ``2**time_shift`` ticks), a strike's drive as a delta from the previous packed
strike's drive (in units of ``2**level_shift`` counts), and pulse/hold only when they
change. Both ends keep the same state, reset by an accepted ``configure``:

- ``base``: the clock of the previous record (0; set absolutely by ``sched_base``);
- ``last_drive`` (0, wire units), ``last_pulse_us`` (0), ``last_hold`` (0): of the
  previous packed strike, whatever its actuator;
- ``recent``: the last :data:`~.messages.RECENT_GAPS` gaps packed records used, most
  recent first (zeros), that a record's time code may name (protocol 7, :func:`take_gap`);
- ``index``: the record counter; every record, ``schedule_ext`` and ``schedule_move``
  gets the next index, which events and status counters refer to.

A move (``Op.MOVE``: a positioner to a target) travels as ``schedule_move``; its
:attr:`TimedCommand.level` is the target position (steps or counts, 0..65535).

:class:`ScheduleEncoder` is the host side; :class:`ScheduleDecoder` mirrors what the
firmware does with the same bytes (used by tests and by in-process device models).
With ``level_shift > 0`` a packed strike's drive is rounded to a multiple of
``2**level_shift`` (the encoder says which level it sends: :attr:`Encoded.level`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import ProtocolError
from .messages import (
    MAX_ACTUATORS,
    MAX_DCLOCK,
    MAX_LEVEL,
    MAX_LEVEL_SHIFT,
    MAX_PAYLOAD,
    MAX_POSITION,
    MAX_TIME_SHIFT,
    RECENT_GAPS,
    Message,
    Op,
    Record,
    put_message,
    put_record,
    take_gap,
)
from .varint import U32, uvar_size, vlq_size

# Messages carry no more records than this (so the count is a 1-byte VLQ).
MAX_RECORDS_PER_MESSAGE = 95


@dataclass(frozen=True, slots=True)
class TimedCommand:
    """One command at an absolute MCU clock (full width on the host; low 32 bits on the wire)."""

    clock: int
    op: Op
    actuator: int
    level: int = 0  # strike drive or set level (PWM counts); MOVE: the target position
    pulse_us: int = 0  # strike only
    hold: int = 0  # strike only


@dataclass(slots=True)
class _State:
    base: int | None = None
    index: int = 0
    last_drive: int = 0  # wire units (counts >> level_shift)
    last_pulse: int = 0
    last_hold: int = 0
    recent: list[int] = field(default_factory=lambda: [0] * RECENT_GAPS)
    late: int = 0  # units the previous command runs after its exact clock (a near gap)


Item = Message | Record


@dataclass(frozen=True, slots=True)
class Encoded:
    items: tuple[Item, ...]  # a sched_base (if needed) then one Record or schedule_ext
    index: int  # record index the firmware gives this command
    clock: int  # the clock it will run at (after rounding to the time unit)
    level: int  # the level it will run with (after rounding to the level unit)


class ScheduleEncoder:
    """Host side: turn time-ordered :class:`TimedCommand`\\ s into wire items.

    Clocks are rounded to the time unit; the returned :attr:`Encoded.clock` is the
    exact clock the firmware will use. A command earlier than the previous one, or
    more than 2**32-1 units later, gets a ``sched_base`` first.

    A record whose gap would take more than one byte uses a recent gap within
    ``gap_tolerance`` units of it (default 1): it runs up to 1.5 units from its clock
    instead of 0.5 (1.5 µs on the AVR); a command that the one before it passed this
    way runs at that one's clock, never before it.
    """

    def __init__(
        self, actuator_count: int, time_shift: int, level_shift: int = 0, gap_tolerance: int = 1
    ) -> None:
        if not 1 <= actuator_count <= MAX_ACTUATORS:
            raise ProtocolError(
                f"schedule: {actuator_count} actuators (allowed 1..{MAX_ACTUATORS})"
            )
        if not 0 <= time_shift <= MAX_TIME_SHIFT or not 0 <= level_shift <= MAX_LEVEL_SHIFT:
            raise ProtocolError(
                f"schedule: time_shift {time_shift} (0..{MAX_TIME_SHIFT}) / level_shift "
                f"{level_shift} (0..{MAX_LEVEL_SHIFT}) out of range"
            )
        self.actuator_count = actuator_count
        self.time_shift = time_shift
        self.level_shift = level_shift
        self.gap_tolerance = gap_tolerance
        self._s = _State()

    @property
    def next_index(self) -> int:
        return self._s.index

    def reset(self) -> None:
        """Call after every accepted ``configure``: the firmware resets the same state."""
        self._s = _State()

    def add(self, cmd: TimedCommand, not_before: int | None = None) -> Encoded:
        """Encode ``cmd``. ``not_before``: a clock it may not run before (a strike on the
        tick where other pulses end: the firmware times their ends in its own ticks, and
        a strike a unit early would count them against the concurrency cap); the clock
        is raised to it, and no time code takes it earlier."""
        s = self._s
        if not_before is not None and cmd.clock < not_before:
            cmd = TimedCommand(not_before, cmd.op, cmd.actuator, cmd.level, cmd.pulse_us, cmd.hold)
        a = cmd.actuator
        if not 0 <= a < self.actuator_count:
            raise ProtocolError(
                f"schedule: actuator {a} not configured (allowed 0..{self.actuator_count - 1})"
            )
        top = MAX_POSITION if cmd.op is Op.MOVE else MAX_LEVEL
        if not 0 <= cmd.level <= top:
            what = "position" if cmd.op is Op.MOVE else "level"
            raise ProtocolError(
                f"schedule: actuator {a} {what} {cmd.level} out of range (allowed 0..{top})"
            )
        items: list[Item] = []
        unit = 1 << self.time_shift
        d = exact = 0  # exact: the gap to its own (rounded) clock, maybe < 0 (below)
        need = 0  # the fewest units after the previous command (not_before)
        if s.base is not None:
            d = exact = (cmd.clock - s.base + unit // 2) >> self.time_shift
            if -s.late <= d < 0:
                d = 0  # the previous command runs late by a near gap: this one with it
            if not_before is not None:  # the units it needs after the previous one
                need = -((s.base - not_before) >> self.time_shift)
                d = max(d, need)
        packed = cmd.op in (Op.STRIKE, Op.RELEASE)
        if s.base is None or d < 0 or d > (MAX_DCLOCK if packed else U32):
            items.append(Message.make("sched_base", clock=cmd.clock & U32))
            s.base = cmd.clock
            d = exact = 0
        dclock, recent = d, 0
        if packed and d:
            dclock, recent = self._time_code(d, need)
            d = take_gap(s.recent, dclock, recent)
        s.late = d - exact
        s.base += d << self.time_shift
        level = cmd.level
        if cmd.op is Op.STRIKE:
            half = (1 << self.level_shift) >> 1
            wdrive = min((cmd.level + half) >> self.level_shift, MAX_LEVEL >> self.level_shift)
            level = wdrive << self.level_shift
            ph = (cmd.pulse_us, cmd.hold)
            changed = ph != (s.last_pulse, s.last_hold)
            items.append(
                Record(
                    a,
                    True,
                    dclock,
                    wdrive - s.last_drive,
                    cmd.pulse_us if changed else None,
                    cmd.hold if changed else None,
                    recent,
                )
            )
            s.last_drive = wdrive
            s.last_pulse, s.last_hold = ph
        elif cmd.op is Op.RELEASE:
            level = 0
            items.append(Record(a, False, dclock, recent=recent))
        elif cmd.op is Op.MOVE:
            items.append(Message.make("schedule_move", actuator=a, dclock=d, position=level))
        else:
            items.append(
                Message.make(
                    "schedule_ext",
                    op=int(cmd.op),
                    actuator=a,
                    dclock=d,
                    level=cmd.level,
                    pulse_us=0,
                    hold=0,
                )
            )
        for it in items:
            if isinstance(it, Record):
                it.validate()
        enc = Encoded(tuple(items), s.index, s.base, level)
        s.index += 1
        return enc

    def _time_code(self, d: int, lo: int = 0) -> tuple[int, int]:
        """``(dclock, recent)`` for a record ``d`` units after the previous one: a recent
        gap equal to it, else (when ``d`` takes more than one byte) the nearest within
        the tolerance and at least ``lo``, else ``d`` itself."""
        best = -1
        for k, g in enumerate(self._s.recent):
            if g == d:
                return 0, k + 1
            if g >= lo and abs(g - d) <= self.gap_tolerance and (
                best < 0 or abs(g - d) < abs(self._s.recent[best] - d)
            ):
                best = k
        if best >= 0 and uvar_size(d + RECENT_GAPS) > 1:
            return 0, best + 1
        return d, 0


class PayloadPacker:
    """Packs wire items into DATA payloads of at most ``max_payload`` bytes.

    Consecutive records share one ``schedule`` message. ``add`` returns False (and
    takes nothing) when the item does not fit; then take :meth:`payload` and start a
    new packer.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._done = bytearray()
        self._records: list[Record] = []
        self._rec_bytes = bytearray()
        self.n_records = 0  # records + schedule_ext/move in this payload (queue slots)

    def _size_with_records(self, extra: int, n: int) -> int:
        if n == 0:
            return len(self._done) + extra
        return len(self._done) + 1 + vlq_size(n) + len(self._rec_bytes) + extra

    def add(self, item: Item) -> bool:
        if isinstance(item, Record):
            if len(self._records) >= MAX_RECORDS_PER_MESSAGE:
                self._flush_records()
            b = bytearray()
            put_record(b, item)
            n = len(self._records) + 1
            if len(self._done) + 1 + vlq_size(n) + len(self._rec_bytes) + len(b) > self.max_payload:
                return False
            self._records.append(item)
            self._rec_bytes += b
            self.n_records += 1
            return True
        b = bytearray()
        put_message(b, item)
        if self._size_with_records(len(b), len(self._records)) > self.max_payload:
            return False
        self._flush_records()
        self._done += b
        if item.name in ("schedule_ext", "schedule_move"):
            self.n_records += 1
        return True

    def _flush_records(self) -> None:
        if self._records:
            put_message(self._done, Message("schedule", (tuple(self._records),)))
            self._records.clear()
            self._rec_bytes.clear()

    def __len__(self) -> int:
        return self._size_with_records(0, len(self._records))

    def payload(self) -> bytes:
        self._flush_records()
        return bytes(self._done)


def pack(items: Iterable[Item], max_payload: int = MAX_PAYLOAD) -> list[tuple[bytes, int]]:
    """Pack items greedily; returns ``(payload, queue slots it uses)`` per frame."""
    out: list[tuple[bytes, int]] = []
    p = PayloadPacker(max_payload)
    for it in items:
        if not p.add(it):
            out.append((p.payload(), p.n_records))
            p = PayloadPacker(max_payload)
            if not p.add(it):
                raise ProtocolError(f"schedule: item {it!r} larger than a payload")
    if len(p):
        out.append((p.payload(), p.n_records))
    return out


class ScheduleDecoder:
    """Device side mirror: wire messages -> (index, :class:`TimedCommand` with 32-bit clock)."""

    def __init__(self, actuator_count: int, time_shift: int, level_shift: int = 0) -> None:
        self.actuator_count = actuator_count
        self.time_shift = time_shift
        self.level_shift = level_shift
        self.reset()

    def reset(self) -> None:
        self._s = _State(base=0)

    def apply(self, msg: Message) -> list[tuple[int, TimedCommand]]:
        s = self._s
        assert s.base is not None
        out: list[tuple[int, TimedCommand]] = []
        if msg.name == "sched_base":
            s.base = msg["clock"]
        elif msg.name == "schedule":
            for r in msg["records"]:
                gap = take_gap(s.recent, r.dclock, r.recent)
                s.base = (s.base + (gap << self.time_shift)) & U32
                a = r.actuator
                if r.strike:
                    s.last_drive += r.ddrive
                    if r.pulse_us is not None:
                        assert r.hold is not None
                        s.last_pulse, s.last_hold = r.pulse_us, r.hold
                    cmd = TimedCommand(
                        s.base,
                        Op.STRIKE,
                        a,
                        s.last_drive << self.level_shift,
                        s.last_pulse,
                        s.last_hold,
                    )
                else:
                    cmd = TimedCommand(s.base, Op.RELEASE, a)
                out.append((s.index, cmd))
                s.index += 1
        elif msg.name == "schedule_ext":
            s.base = (s.base + (msg["dclock"] << self.time_shift)) & U32
            cmd = TimedCommand(
                s.base, Op(msg["op"]), msg["actuator"], msg["level"], msg["pulse_us"], msg["hold"]
            )
            out.append((s.index, cmd))
            s.index += 1
        elif msg.name == "schedule_move":
            s.base = (s.base + (msg["dclock"] << self.time_shift)) & U32
            cmd = TimedCommand(s.base, Op.MOVE, msg["actuator"], msg["position"])
            out.append((s.index, cmd))
            s.index += 1
        return out
