"""A virtual microcontroller on virtual time: the firmware's behaviour, in Python.

:class:`VirtualWorld` holds a virtual clock, a serial line (bytes take ``10 / baud``
s each, both directions) and a :class:`VirtualMCU` that follows ``docs/protocol.md``
the way the C firmware does: the delivery table (ACK/NAK, credits, duplicates, SYNC),
the packed schedule (through :class:`~robo_player.protocol.ScheduleDecoder`), the late
rule, max on-time, the concurrency cap, the duty limit, the watchdog and its drain
(:meth:`VirtualMCU._watchdog`), ``all_off``,
``shutdown`` and the status counters. Every output change goes into
:attr:`VirtualMCU.trace` as ``(clock, actuator, level)``, like the host build's trace.

Commands expand to output levels through :func:`robo_player.actuation.output_steps`,
the expansion the simulator's physics uses too.

It lets the driver's link and streaming code, and the fault injection around them, run
in tests without sleeping: :class:`VirtualPort` is a transport whose ``read(timeout)``
advances the world instead of waiting. The C firmware is tested through ``fw-host://``
and ``fw-avr://`` with the same driver code; this model is not a substitute for it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from dataclasses import dataclass, field

from .. import rules
from ..actuation import output_steps
from ..errors import ProtocolError, TransportError
from ..motion import move_steps
from ..protocol.framing import Frame, FrameDecoder, FrameKind, seq_add, seq_diff
from ..protocol.messages import (
    MAX_LEVEL,
    MAX_ON_US,
    MAX_PAYLOAD,
    NO_ACTUATOR,
    NO_DETAIL,
    PROTOCOL_VERSION,
    ConfigReason,
    EventKind,
    Message,
    Op,
    OutKind,
    ShutdownReason,
    State,
    config_hash,
    decode_messages,
    encode_messages,
)
from ..protocol.schedule import ScheduleDecoder, TimedCommand
from ..protocol.varint import U32, put_vlq
from ..servo import ServoTrain, width_us

log = logging.getLogger(__name__)


def _s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v & 0x80000000 else v


# the firmware's duty arithmetic, one copy (robo_player/rules.py); re-exported here
DUTY_UNIT_US = rules.DUTY_UNIT_US
DUTY_POLL_US = rules.DUTY_POLL_US
BATCH = 8  # sched.c BATCH: commands decided together before their outputs
duty_weight = rules.duty_weight
duty_drain_k = rules.duty_drain_k


def _slots(m: Message) -> int:
    """Queue slots (and record indices) a message takes."""
    if m.name == "schedule":
        return len(m["records"])
    return int(m.name in ("schedule_ext", "schedule_move"))


@dataclass(slots=True)
class _Act:
    pwm_max: int = 0
    max_drive: int = 0
    max_on_us: int = 0
    max_pulse_us: int = 0
    duty_permille: int = 1000
    level: int = 0
    on_since: int | None = None  # clock the coil went on (continuous on-time)
    pulse_end: int | None = None
    hold: int = 0
    strike_index: int = -1
    bucket: int = 0  # duty leaky bucket, in µs of full drive (sched.c bucket_us)
    bucket_unit: int = 0  # the 64 µs unit it is integrated up to (sched.c bucket_unit)
    # the bucket at its cap when last integrated (sched.c ``hot``: set where the firmware
    # integrates - a level change, the duty poll, a status - and read, as it stands, by a
    # command's decision: a bucket that passed its cap since waits for the next poll)
    hot: bool = False
    weight: int = 0  # duty_weight() of the present level
    drain_k: int = 0  # duty_drain_k(duty_permille)


@dataclass(slots=True)
class _Stepper:
    """A step/dir carriage (OutKind.STEP_DIR), as firmware/boards/avr/out_step.c runs
    it: ``moves`` are ``(start, end, target, first, before)`` (clocks; ``first``: its
    first entry in the trace; ``before``: the position it starts from), each move's steps follow robo_player.motion's profile (the C
    generator's, tested equal), a move asked while one runs starts at its end (one
    waits; a second is refused)."""

    actuator: int
    presser: int
    travel: int  # pwm_max: the highest position
    speed: int  # max_pulse_us: steps/s
    accel: int  # max_on_us: steps/s²
    pos: int = 0  # where the last move leaves it
    moves: list[tuple[int, int, int, int, int]] = field(default_factory=list)

    def active(self, clock: int) -> list[tuple[int, int, int, int, int]]:
        return [m for m in self.moves if m[1] > clock]

    def busy(self, clock: int) -> bool:
        act = self.active(clock)
        return len(act) > 1 or any(m[0] <= clock <= m[1] for m in act)


@dataclass(slots=True)
class MCUConfig:
    clock_hz: int = 16_000_000
    queue_size: int = 64
    max_actuators: int = 100
    rx_buffer: int = 256
    max_on_us_limit: int = MAX_ON_US
    max_level: int = MAX_LEVEL
    late_slack_us: int = 200
    board: bytes = b"vmcu"
    fw_version: int = 0x0100
    duty_poll_us: int = DUTY_POLL_US  # the duty poll's grid (its phase is the loop's:
    duty_poll_phase_us: int = 0  # the model polls at phase + k * duty_poll_us)
    protocol_version: int = PROTOCOL_VERSION
    drift_ppm: float = 0.0
    reply_delay_s: float = 20e-6  # time from a frame's last byte to its answer


@dataclass
class VirtualMCU:
    """The device side; driven by :class:`VirtualWorld` (``t`` in host seconds)."""

    cfg: MCUConfig
    rng: random.Random
    boot_time: float = 0.0
    trace: list[tuple[int, int, int]] = field(default_factory=list)  # (clock, actuator, level)
    events: list[Message] = field(default_factory=list)  # every event it sent

    def __post_init__(self) -> None:
        self.boot(self.boot_time)

    # ---- lifecycle -----------------------------------------------------------------
    def boot(self, t: float) -> None:
        if getattr(self, "steppers", None):  # a reset: the carriages stop where they are
            self._stop_steppers(self.clock_at(t))
        old: ServoTrain | None = self.__dict__.get("servos")
        if old is not None:  # ... and the servos' pulses stop (their slots go)
            old.stop(self.clock_at(t))
            self.trace.extend(old.take(self.clock_at(t)))
        self.boot_time = t
        self.clock0 = self.rng.randrange(0, 1 << 32)
        self.boot_id = self.rng.randrange(1, 1 << 32)
        self.state = State.UNCONFIGURED
        self.expected = 0
        self.tx_seq = 0
        self.decoder = FrameDecoder()
        self.acts: dict[int, _Act] = {}
        # step/dir carriages by step output (positions from 0 at boot, as in the C board;
        # they stay across configurations)
        self.steppers: dict[int, _Stepper] = {}
        self._stepper_cfg: dict[int, tuple[int, int, int, int, int]] = {}
        # hobby servos (firmware/boards/*/out_servo.c): slots by output, given at configure
        self.servos: ServoTrain = ServoTrain(ticks_per_us=self.cfg.clock_hz // 1_000_000)
        # pin, travel, widths at 0 and at the travel, presser (None: none)
        self._servo_cfg: dict[int, tuple[int, int, int, int, int | None]] = {}
        self.queue: list[tuple[int, int, int, TimedCommand]] = []  # (clock, order, index, cmd)
        self._order = itertools.count()
        self.sched: ScheduleDecoder | None = None
        self.counters = dict.fromkeys(
            ("played", "late", "refused", "flushed", "cutoffs", "bad_frames"), 0
        )
        self.next_index = 0
        self.last_rx_clock = 0
        self.watchdog_ms = 0
        self.watchdog_drain_ms = 0
        self.max_concurrent = 1
        self.duty_window_ms = 1000
        self._cfg_msgs: list[Message] = []
        self._cfg_seen: set[int] = set()
        self._cfg_count = 0
        self.outbox: list[bytes] = []
        self.all_outputs_off(self.clock_at(t))

    def clock_at(self, t: float) -> int:
        rate = self.cfg.clock_hz * (1.0 + self.cfg.drift_ppm * 1e-6)
        return self.clock0 + int((t - self.boot_time) * rate)

    def time_of(self, clock: int) -> float:
        rate = self.cfg.clock_hz * (1.0 + self.cfg.drift_ppm * 1e-6)
        return self.boot_time + (clock - self.clock0) / rate

    def _us(self, us: int) -> int:
        return us * self.cfg.clock_hz // 1_000_000

    @property
    def free(self) -> int:
        return self.cfg.queue_size - len(self.queue)

    def energised(self) -> list[int]:
        return sorted(a for a, s in self.acts.items() if s.level)

    # ---- output --------------------------------------------------------------------
    def _set(self, clock: int, a: int, level: int) -> None:
        s = self.acts[a]
        if level == s.level:
            return
        self._drain(s, clock)
        s.level = level
        s.weight = duty_weight(s.pwm_max, level)
        if level and s.on_since is None:
            s.on_since = clock
        if not level:
            s.on_since = None
            s.pulse_end = None
        self.trace.append((clock, a, level))

    def all_outputs_off(self, clock: int) -> None:
        for a in sorted(self.acts):
            self._set(clock, a, 0)
        self._stop_steppers(clock)
        self.servos.stop(clock)

    # ---- positioners (firmware/boards/*/out_step.c) ------------------------------------
    def _stop_steppers(self, clock: int) -> None:
        """Every carriage stops where it is: its steps after ``clock`` never come."""
        for st in self.steppers.values():
            act = st.active(clock)
            if not act:
                continue
            first, start_pos = act[0][3], act[0][4]
            kept = [e for e in self.trace[first:] if not (e[1] == st.actuator and e[0] > clock)]
            self.trace[first:] = kept
            done = [e[2] for e in kept if e[1] == st.actuator]
            st.pos = done[-1] if done else start_pos
            st.moves = [m for m in st.moves if m[1] <= clock]

    def _move(self, a: int, target: int, clock: int) -> bool:
        """board_output_move: True when taken."""
        servo = self._servo_cfg.get(a)
        if servo is not None:  # out_servo.c: its width from its first pulse at or after clock
            pin, travel, lo, hi, presser = servo
            return target <= travel and self.servos.move(
                pin, a, width_us(target, travel, lo, hi), clock, presser, lo)
        cfg = self._stepper_cfg.get(a)
        if cfg is None or target > cfg[2]:
            return False  # no positioner there, or past its travel: the carriage stays
        pin, presser, travel, speed, accel = cfg
        st = self.steppers.get(pin)
        if st is None:
            st = self.steppers[pin] = _Stepper(a, presser, travel, speed, accel)
        st.actuator, st.presser, st.travel, st.speed, st.accel = a, presser, travel, speed, accel
        act = st.active(clock)
        if len(act) > 1:
            return False  # a move already waits
        start = max(clock, act[0][1]) if act else clock
        rel = move_steps(st.pos, target, 0, speed, max(1000, accel))
        if not len(rel):
            return True
        sign = 1 if target > st.pos else -1
        tpu = self.cfg.clock_hz // 1_000_000
        first = len(self.trace)
        for k, t in enumerate(rel.tolist(), 1):
            self.trace.append((start + t * tpu, a, st.pos + sign * k))
        st.moves.append((start, start + int(rel[-1]) * tpu, target, first, st.pos))
        st.pos = target
        return True

    def _busy(self, presser: int, clock: int) -> bool:
        """board_output_busy: the presser's carriage moves at ``clock``."""
        return any(
            st.presser == presser and st.actuator != presser and st.busy(clock)
            for st in self.steppers.values()
        ) or self.servos.busy(presser, clock)

    def _flush(self, clock: int) -> None:
        if self.queue:
            first = min(q[2] for q in self.queue)
            n = len(self.queue)
            self.counters["flushed"] += n
            self.queue.clear()
            self._event(EventKind.FLUSHED, first, NO_ACTUATOR, n)

    def _unit_of(self, clock: int) -> int:
        return clock // self._us(DUTY_UNIT_US)

    @staticmethod
    def _bucket_after(s: _Act, units: int) -> int:
        """sched.c bucket_integrate(): the bucket ``units`` 64 µs units on, at its weight."""
        return rules.duty_bucket_after(s.bucket, s.weight, s.drain_k, units)

    def _drain(self, s: _Act, clock: int) -> None:
        """Bring the bucket up to the 64 µs unit ``clock`` is in (sched.c's integer rule)."""
        nu = self._unit_of(clock)
        if nu > s.bucket_unit:
            s.bucket = self._bucket_after(s, nu - s.bucket_unit)
            s.bucket_unit = nu
            s.hot = s.bucket >= self._bucket_cap(s)  # sched.c bucket_integrate

    def _bucket_cap(self, s: _Act) -> int:
        return rules.duty_cap_us(self.duty_window_ms, s.duty_permille)  # fw.c lim.cap_us

    def _duty_cut_at(self, s: _Act) -> int | None:
        """The clock of the duty poll that cuts this coil off (its bucket past the cap
        while on, sched.c duty_poll), if it stays as it is: the first unit the bucket is
        over, then the poll grid's next tick (the host build and the AVR poll every
        8 ms; their phase is the loop's, modelled here as the clock's 8 ms grid)."""
        if not s.level:
            return None
        u = rules.duty_units_past_cap(s.bucket, s.weight, s.drain_k, self._bucket_cap(s))
        if u is None:
            return None  # on, but draining below the cap
        return self._poll_at(self._us(DUTY_UNIT_US) * (s.bucket_unit + u))

    def _poll_before(self, clock: int) -> int:
        """The clock of the last duty poll at or before ``clock``."""
        poll, phase = self._us(self.cfg.duty_poll_us), self._us(self.cfg.duty_poll_phase_us)
        return (clock - phase) // poll * poll + phase

    def _poll_at(self, clock: int) -> int:
        """The clock of the first duty poll at or after ``clock``."""
        return self._poll_before(clock + self._us(self.cfg.duty_poll_us) - 1)

    # ---- messages out --------------------------------------------------------------
    def _send_data(self, msgs: list[Message]) -> None:
        f = Frame(FrameKind.DATA, self.tx_seq, 0, encode_messages(msgs))
        self.tx_seq = seq_add(self.tx_seq, 1)
        self.outbox.append(f.encode())

    def _send_ack(self, kind: FrameKind, ack: int) -> None:
        out = bytearray()
        put_vlq(out, self.free)
        self.outbox.append(Frame(kind, 0, ack, bytes(out)).encode())

    def _event(self, kind: EventKind, index: int, actuator: int, clock: int) -> None:
        m = Message.make(
            "event", kind=int(kind), index=index & U32, actuator=actuator, clock=clock & U32
        )
        self.events.append(m)
        self._send_data([m])

    def shutdown(self, clock: int, reason: int) -> None:
        self.all_outputs_off(clock)
        self._flush(clock)
        self.state = State.SHUTDOWN
        self._send_data([Message.make("shutdown_notice", reason=reason, clock=clock & U32)])

    # ---- time ----------------------------------------------------------------------
    def next_timer(self) -> int | None:
        """The next clock at which something must happen (command, pulse end, cutoff, watchdog)."""
        cands: list[int] = []
        if self.queue:
            cands.append(self.queue[0][0])
        for s in self.acts.values():
            if s.pulse_end is not None:
                cands.append(s.pulse_end)
            if s.on_since is not None:
                cands.append(s.on_since + self._us(s.max_on_us))
            cut = self._duty_cut_at(s)
            if cut is not None:
                cands.append(cut)
        wd = self._watchdog_next()
        if wd is not None:
            cands.append(wd)
        return min(cands) if cands else None

    def _watchdog_next(self) -> int | None:
        """fw.c rp_watchdog_next(): READY, the clock the watchdog fires at; DRAINING, the
        drain's end (both from the last frame, which stays put while draining)."""
        if self.state is State.READY and self.watchdog_ms:
            return self.last_rx_clock + self._us(self.watchdog_ms * 1000)
        if self.state is State.DRAINING:
            return self.last_rx_clock + self._us((self.watchdog_ms + self.watchdog_drain_ms) * 1000)
        return None

    def _watchdog(self, now: int) -> None:
        """fw.c watchdog(), after this tick's commands and pulse ends (the host build's
        loop runs rp_poll() after rp_timer()): no frame for ``watchdog_ms`` -> DRAINING
        (the queue plays out under every limit, new records are refused); all off and
        SHUTDOWN once the queue is empty with no strike pulse running, or at the drain's
        end, whichever comes first."""
        if self.state is State.READY and self.watchdog_ms:
            if now >= self.last_rx_clock + self._us(self.watchdog_ms * 1000):
                self.state = State.DRAINING
        if self.state is not State.DRAINING:
            return
        end = self._watchdog_next()
        assert end is not None
        pulses = any(s.pulse_end is not None for s in self.acts.values())
        if now >= end or (not self.queue and not pulses):
            self.shutdown(now, ShutdownReason.WATCHDOG)

    def run_until(self, clock: int) -> None:
        """Run every timer due at or before ``clock``, in order."""
        while True:
            nxt = self.next_timer()
            if nxt is None or nxt > clock:
                break
            self._fire(nxt)
        self.trace.extend(self.servos.take(clock))  # the servos' pulses over by then

    def _fire(self, now: int) -> None:
        # A tie, as in the C core (sched.c run_batch): a coil's own command due now runs
        # instead of its pulse end or cutoff on this tick (a command at or before a
        # pulse's end replaces its drop to hold; a release on the cutoff's tick is no
        # cutoff); the other coils' pulse ends and cutoffs of this tick go out first,
        # before the commands' outputs (a pulse that ends where other strikes start is
        # off when they start), and a pulse that ends now no longer counts against the
        # cap (rules.pulse_counts_at). A command refused on its tick leaves its coil's
        # deadline, which runs after it.
        due = []
        while self.queue and self.queue[0][0] <= now:
            due.append(heapq.heappop(self.queue))
        # sched.c run_batch: the tick's first batch is its commands up to the first that
        # repeats a coil (or BATCH of them); the deadlines of this tick on the coils
        # without a command in it go out first (a coil whose command comes in a later
        # batch of the tick has its pulse ended before that command is decided)
        first: set[int] = set()
        for *_, cmd in due:
            if cmd.actuator in first or len(first) == BATCH:
                break
            first.add(cmd.actuator)
        self._deadlines(now, first)
        for clock, _, index, cmd in due:
            self._execute(clock, index, cmd, now)
        if due:
            self._deadlines(now, set())
        for a, s in sorted(self.acts.items()):  # the duty poll (sched.c duty_poll)
            if (now - self._us(self.cfg.duty_poll_phase_us)) % self._us(self.cfg.duty_poll_us):
                break  # between polls: no duty cutoff (nor a look at the buckets)
            self._drain(s, now)
            if s.level and s.bucket > self._bucket_cap(s):
                self._set(now, a, 0)
                self.counters["cutoffs"] += 1
                self._event(EventKind.CUTOFF_DUTY, s.strike_index, a, now)
        self._watchdog(now)

    def _deadlines(self, now: int, skip: set[int]) -> None:
        """The max on-time cutoffs and pulse ends due at ``now``, but on the coils in
        ``skip`` (sched.c end_level / end_account)."""
        for a, s in sorted(self.acts.items()):
            if a in skip:
                continue
            if s.on_since is not None and now >= s.on_since + self._us(s.max_on_us):
                self._set(now, a, 0)
                self.counters["cutoffs"] += 1
                self._event(EventKind.CUTOFF_MAX_ON, s.strike_index, a, now)
            elif s.pulse_end is not None and now >= s.pulse_end:
                s.pulse_end = None
                self._set(now, a, s.hold)

    def _execute(self, clock: int, index: int, cmd: TimedCommand, now: int) -> None:
        a = cmd.actuator
        s = self.acts[a]
        late = now - clock > self._us(self.cfg.late_slack_us)
        if cmd.op is Op.RELEASE:
            s.pulse_end = None  # every command replaces the pulse (sched.c account)
            self._set(now, a, 0)
            if late:
                self.counters["late"] += 1
                self._event(EventKind.LATE_RELEASE, index, a, now)
            else:
                self.counters["played"] += 1
            return
        if late:
            self.counters["late"] += 1
            self._event(EventKind.LATE, index, a, now)
            return
        if cmd.op is Op.MOVE:
            # the board's move hook (out_step.c), from the command's clock; refused on a
            # board without positioners there (the core's default), counted
            if self._move(a, cmd.level, clock):
                self.counters["played"] += 1
            else:
                self.counters["refused"] += 1
                self._event(EventKind.REFUSED_MOVE, index, a, now)
            return
        if cmd.op is Op.STRIKE and cmd.pulse_us and self._busy(a, clock):
            self.counters["refused"] += 1  # a press on a carriage that moves
            self._event(EventKind.REFUSED_BUSY, index, a, now)
            return
        refuse = self._refusal(cmd, s, now)
        if refuse is not None:
            self.counters["refused"] += 1
            self._event(refuse, index, a, now)
            return
        s.strike_index = index
        # the one pulse/hold expansion: a first level now, maybe a timed second one
        steps = output_steps(cmd.op, cmd.level, cmd.pulse_us, cmd.hold)
        s.pulse_end = None  # every command replaces the pulse (sched.c account)
        if len(steps) > 1:
            s.pulse_end = now + self._us(steps[1][0])
            s.hold = steps[1][1]
        self._set(now, a, steps[0][1])
        self.counters["played"] += 1

    def _pulse_gone(self, s: _Act) -> int:
        """When a running pulse stops: its end, or the coil's cutoff if that comes first."""
        assert s.pulse_end is not None
        if s.on_since is None:
            return s.pulse_end
        return min(s.pulse_end, s.on_since + self._us(s.max_on_us))

    def _refusal(self, cmd: TimedCommand, s: _Act, now: int) -> EventKind | None:
        if cmd.level > s.max_drive or cmd.pulse_us > s.max_pulse_us or cmd.hold > s.max_drive:
            return EventKind.REFUSED_RANGE
        if cmd.op is Op.STRIKE and cmd.pulse_us and s.pulse_end is None:
            # a strike on a coil already in its pulse takes no other slot (sched.c decide)
            running = sum(
                1
                for x in self.acts.values()
                if x.pulse_end is not None and rules.pulse_counts_at(self._pulse_gone(x), now)
            )
            if running >= self.max_concurrent:
                return EventKind.REFUSED_CONCURRENCY
        p = self._poll_before(now)
        if self._unit_of(p) > s.bucket_unit:
            self._drain(s, p)  # the duty poll's look since (sched.c duty_poll)
        if cmd.level and s.hot:  # sched.c decide: hot && level, as last integrated
            return EventKind.REFUSED_DUTY
        return None

    # ---- bytes in ------------------------------------------------------------------
    def receive(self, data: bytes, t: float) -> None:
        now = self.clock_at(t)
        self.run_until(now)
        before = self.decoder.stats.crc_errors + self.decoder.stats.framing_errors
        for f in self.decoder.feed(data):
            self._on_frame(f, now)
        dropped = self.decoder.stats.crc_errors + self.decoder.stats.framing_errors - before
        if dropped:
            self.counters["bad_frames"] += dropped
            self._send_ack(FrameKind.NAK, self.expected)
        self._watchdog(now)  # the host build's loop polls after every read (an all_off
        # while draining leaves nothing to play out: all off and SHUTDOWN at once)

    def _on_frame(self, f: Frame, now: int) -> None:
        if self.state is not State.DRAINING:  # draining: the drain's end stays put
            self.last_rx_clock = now
        if f.kind is FrameKind.SYNC:
            self.expected = f.seq
            self._send_ack(FrameKind.ACK, self.expected)
            return
        if f.kind is not FrameKind.DATA:
            return  # a host ACK/NAK only feeds the watchdog
        d = seq_diff(f.seq, self.expected)
        if d < 0:
            self._send_ack(FrameKind.ACK, self.expected)  # a duplicate: never run twice
            return
        if d > 0:
            self._send_ack(FrameKind.NAK, self.expected)
            return
        try:
            msgs = decode_messages(f.payload)
        except ProtocolError:
            self.expected = seq_add(self.expected, 1)
            self.counters["bad_frames"] += 1
            self._event(EventKind.BAD_MESSAGE, f.seq, NO_ACTUATOR, now)
            self._send_ack(FrameKind.ACK, self.expected)
            return
        slots = sum(
            _slots(m)
            for m in msgs
        )
        if slots > self.free:
            self._send_ack(FrameKind.NAK, self.expected)
            return
        self.expected = seq_add(self.expected, 1)
        for m in msgs:
            self._run(m, now)
        self._send_ack(FrameKind.ACK, self.expected)

    def _run(self, m: Message, now: int) -> None:
        n = m.name
        if n == "identify":
            c = self.cfg
            self._send_data(
                [
                    Message.make(
                        "identify_resp",
                        protocol_version=c.protocol_version,
                        fw_version=c.fw_version,
                        board=c.board,
                        clock_hz=c.clock_hz,
                        queue_size=c.queue_size,
                        max_actuators=c.max_actuators,
                        rx_buffer=c.rx_buffer,
                        max_payload=MAX_PAYLOAD,
                        boot_id=self.boot_id,
                        max_on_us_limit=c.max_on_us_limit,
                        max_level=c.max_level,
                        late_slack_us=c.late_slack_us,
                        state=int(self.state),
                    )
                ]
            )
        elif n == "get_clock":
            self._send_data([Message.make("clock", tag=m["tag"], clock=now & U32)])
        elif n == "heartbeat":
            self._send_data([self.status(m["tag"], now)])
        elif n == "configure_begin":
            self.all_outputs_off(now)
            self._flush(now)
            self.state = State.CONFIGURING
            self._cfg_msgs = [m]
            self._cfg_seen = set()
            self._cfg_count = m["actuator_count"]
        elif n in ("configure_actuator", "configure_servo"):
            if self.state is State.CONFIGURING:
                self._cfg_msgs.append(m)
        elif n == "configure_end":
            self._configure_end(m, now)
        elif n in ("sched_base", "schedule", "schedule_ext", "schedule_move"):
            self._schedule(m, now)
        elif n == "all_off":
            self.all_outputs_off(now)
            self._flush(now)
        elif n == "shutdown":
            self.shutdown(now, m["reason"])

    def status(self, tag: int, now: int) -> Message:
        heat = 0
        hot = NO_ACTUATOR
        for a, s in self.acts.items():
            self._drain(s, now)
            cap = self._bucket_cap(s)
            b = s.bucket
            while b > 4_000_000 or cap > 4_000_000:  # sched.c rp_sched_heat's scaling
                b, cap = b >> 1, cap >> 1
            p = b * 1000 // cap if cap else 0
            if p > heat:
                heat, hot = p, a
        c = self.counters
        return Message.make(
            "status",
            tag=tag,
            state=int(self.state),
            boot_id=self.boot_id,
            clock=now & U32,
            free=self.free,
            next_index=self.next_index & U32,
            played=c["played"],
            late=c["late"],
            refused=c["refused"],
            flushed=c["flushed"],
            cutoffs=c["cutoffs"],
            bad_frames=c["bad_frames"],
            heat_permille=min(heat, 65535),
            heat_actuator=hot,
            i2c_errors=0,  # no output bus
        )

    def _configure_end(self, m: Message, now: int) -> None:
        if self.state is not State.CONFIGURING:
            self._send_data(
                [
                    Message.make(
                        "config_result", reason=int(ConfigReason.NO_BEGIN), detail=NO_DETAIL, hash=0
                    )
                ]
            )
            return
        h = config_hash(self._cfg_msgs)
        begin = self._cfg_msgs[0]
        self._stepper_cfg = {}
        self._servo_cfg = {}
        count = begin["actuator_count"]
        reason, detail = ConfigReason.OK, 0
        acts: dict[int, _Act] = {}
        outputs: set[tuple[int, int, int]] = set()
        if count > self.cfg.max_actuators or begin["max_concurrent"] > count:
            reason, detail = ConfigReason.TOO_MANY_ACTUATORS, count
        else:
            for a_msg in self._cfg_msgs[1:]:
                i = a_msg["actuator"]
                if a_msg.name == "configure_servo":  # fw.c configure_servo: after its servo's
                    sv = self._servo_cfg.get(i)
                    if sv is None or not self.servos.rate(sv[0], a_msg["us_per_width_us"],
                                                          a_msg["settle_us"]):  # fmt: skip
                        reason, detail = ConfigReason.BAD_OUTPUT, i
                        break
                    continue
                out = (a_msg["out_kind"], a_msg["out_addr"], a_msg["out_channel"])
                if i >= count:
                    reason, detail = ConfigReason.BAD_INDEX, i
                elif i in acts:
                    reason, detail = ConfigReason.DUPLICATE_INDEX, i
                elif (
                    a_msg["max_on_us"] > self.cfg.max_on_us_limit
                    or a_msg["max_drive"] > a_msg["pwm_max"]
                    or a_msg["pwm_max"] > self.cfg.max_level
                ):
                    reason, detail = ConfigReason.LIMIT_OUT_OF_RANGE, i
                elif out in outputs:
                    reason, detail = ConfigReason.BAD_OUTPUT, i
                elif a_msg["out_kind"] == OutKind.SERVO and not self.servos.add(a_msg["out_channel"], i):
                    reason, detail = ConfigReason.BAD_OUTPUT, i  # no slot left in the frame
                if reason is not ConfigReason.OK:
                    break
                outputs.add(out)
                if a_msg["out_kind"] == OutKind.SERVO:  # pin, travel, widths, presser
                    self.servos.unrate(a_msg["out_channel"])  # until its configure_servo
                    presser = a_msg["out_addr"] if a_msg["out_addr"] != i else None
                    self._servo_cfg[i] = (a_msg["out_channel"], a_msg["pwm_max"],
                                          a_msg["max_pulse_us"], a_msg["max_on_us"],
                                          presser)  # fmt: skip
                if a_msg["out_kind"] == OutKind.STEP_DIR:  # pin, presser, travel, v, a
                    self._stepper_cfg[i] = (a_msg["out_channel"], a_msg["out_addr"],
                                            a_msg["pwm_max"], a_msg["max_pulse_us"],
                                            a_msg["max_on_us"])  # fmt: skip
                acts[i] = _Act(
                    pwm_max=a_msg["pwm_max"],
                    max_drive=a_msg["max_drive"],
                    max_on_us=a_msg["max_on_us"],
                    max_pulse_us=a_msg["max_pulse_us"],
                    duty_permille=a_msg["duty_permille"],
                    bucket_unit=self._unit_of(now),
                    drain_k=duty_drain_k(a_msg["duty_permille"]),
                )
            if reason is ConfigReason.OK:
                missing = [i for i in range(count) if i not in acts]
                if missing:
                    reason, detail = ConfigReason.MISSING_ACTUATOR, missing[0]
                elif m["hash"] != h:
                    reason, detail = ConfigReason.HASH_MISMATCH, NO_DETAIL
        if reason is ConfigReason.OK:
            self.acts = acts
            self.state = State.READY
            self.watchdog_ms = begin["watchdog_ms"]
            self.watchdog_drain_ms = begin["watchdog_drain_ms"]
            self.max_concurrent = begin["max_concurrent"]
            self.duty_window_ms = begin["duty_window_ms"]
            self.sched = ScheduleDecoder(count, begin["time_shift"], begin["level_shift"])
            self.next_index = 0
            self.counters = dict.fromkeys(self.counters, 0)
        else:
            self.state = State.UNCONFIGURED
            self.all_outputs_off(now)
        self._send_data([Message.make("config_result", reason=int(reason), detail=detail, hash=h)])

    def _schedule(self, m: Message, now: int) -> None:
        if self.sched is None or self.state is not State.READY:
            # count and report every record refused in this state
            n = _slots(m)
            for _ in range(n):
                self.counters["refused"] += 1
                self._event(EventKind.REFUSED_STATE, self.next_index, NO_ACTUATOR, now)
                self.next_index += 1
            return
        for index, cmd in self.sched.apply(m):
            self.next_index = index + 1
            full = now + _s32(cmd.clock - now)  # unwrap the 32-bit clock near now
            if full - now > 1 << 30:
                self.counters["refused"] += 1
                self._event(EventKind.REFUSED_TOO_FAR, index, cmd.actuator, now)
                continue
            if cmd.actuator not in self.acts:
                self.counters["refused"] += 1
                self._event(EventKind.REFUSED_RANGE, index, cmd.actuator, now)
                continue
            if now - full > self._us(self.cfg.late_slack_us):
                self._execute(full, index, cmd, now)  # late: reported (a release still runs)
                continue
            heapq.heappush(self.queue, (full, next(self._order), index, cmd))


@dataclass(slots=True)
class _Line:
    """One direction of a serial line: chunks arrive after their bytes' wire time."""

    byte_s: float
    latency_s: float
    free_at: float = 0.0
    chunks: list[tuple[float, int, bytes]] = field(default_factory=list)
    _n: itertools.count = field(default_factory=itertools.count)

    def put(self, t: float, data: bytes) -> None:
        start = max(t, self.free_at)
        self.free_at = start + len(data) * self.byte_s
        heapq.heappush(self.chunks, (self.free_at + self.latency_s, next(self._n), data))

    def next_time(self) -> float | None:
        return self.chunks[0][0] if self.chunks else None

    def pop_due(self, t: float) -> bytes:
        out = bytearray()
        while self.chunks and self.chunks[0][0] <= t:
            out += heapq.heappop(self.chunks)[2]
        return bytes(out)


class VirtualWorld:
    """Virtual time, a serial line at ``baud`` (0 = instant) and one :class:`VirtualMCU`."""

    def __init__(
        self,
        mcu: MCUConfig | None = None,
        *,
        baud: int = 115200,
        latency_s: float = 100e-6,
        seed: int = 0,
        start_time: float = 1000.0,
    ) -> None:
        self.t = start_time
        self.baud = baud
        byte_s = 10.0 / baud if baud else 0.0
        self.h2d = _Line(byte_s, latency_s)
        self.d2h = _Line(byte_s, latency_s)
        self.rng = random.Random(seed)
        self.mcu = VirtualMCU(mcu or MCUConfig(), self.rng, boot_time=start_time)
        self.resets = 0

    def now(self) -> float:
        return self.t

    def reset_mcu(self) -> None:
        """Power-cycle the MCU: outputs off, queue gone, a new boot id and clock."""
        self.resets += 1
        self.mcu.run_until(self.mcu.clock_at(self.t))
        self.mcu.all_outputs_off(self.mcu.clock_at(self.t))
        trace = self.mcu.trace
        self.mcu.boot(self.t)
        self.mcu.trace = trace
        self.mcu.trace.append((-1, -1, self.mcu.clock0))  # marks a reset: clocks restart

    def _flush_outbox(self) -> None:
        m = self.mcu
        if m.outbox:
            for chunk in m.outbox:
                self.d2h.put(self.t + m.cfg.reply_delay_s, chunk)
            m.outbox.clear()

    def advance(self, until: float, stop_on_rx: bool = True) -> bytes:
        """Run the world to ``until`` (or to the first bytes for the host); return them."""
        while True:
            cands = [until]
            for x in (self.h2d.next_time(), self.d2h.next_time()):
                if x is not None:
                    cands.append(x)
            nt = self.mcu.next_timer()
            if nt is not None:
                cands.append(self.mcu.time_of(nt))
            t = max(self.t, min(cands))
            self.t = t
            clock = self.mcu.clock_at(t)
            if nt is not None and self.mcu.time_of(nt) <= t:
                clock = max(clock, nt)  # float rounding must not leave a due timer behind
            self.mcu.run_until(clock)
            data = self.h2d.pop_due(t)
            if data:
                self.mcu.receive(data, t)
            self._flush_outbox()
            rx = self.d2h.pop_due(t)
            if rx and stop_on_rx:
                return rx
            if t >= until:
                return rx


class VirtualPort:
    """A :class:`~robo_player.driver.transport.Transport` into a :class:`VirtualWorld`."""

    def __init__(self, world: VirtualWorld, url: str = "vmcu://") -> None:
        self.world = world
        self.url = url
        self.baud = world.baud
        self._open = True

    @property
    def is_open(self) -> bool:
        return self._open

    def now(self) -> float:
        return self.world.t

    def write(self, data: bytes) -> None:
        if not self._open:
            raise TransportError(f"{self.url}: write on a closed port")
        if data:
            self.world.h2d.put(self.world.t, data)

    def read(self, timeout: float) -> bytes:
        if not self._open:
            raise TransportError(f"{self.url}: read on a closed port")
        # at least 0.1 µs: a timeout below the float resolution of t must still move time
        return self.world.advance(self.world.t + max(1e-7, timeout))

    def close(self) -> None:
        self._open = False
