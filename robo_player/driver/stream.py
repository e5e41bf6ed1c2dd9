"""Stream a plan to firmware: open, identify, configure, sync clocks, send ahead, account.

:class:`Session` drives one device over one :class:`~robo_player.driver.transport.Transport`:

1. ``open()``: ``SYNC`` the link, ``identify`` (protocol version checked), remember the
   boot id.
2. ``configure()``: actuator map and per-actuator limits from the spec; the device's
   echoed config hash must match ours.
3. ``sync()``: a burst of ``get_clock``; then clock queries keep coming while playing
   (:meth:`ClockSync.next_query_in`).
4. ``stream(plan, start_index)``: commands go out as packed ``schedule`` records between
   ``lead_max_s`` and ``lead_min_s`` before their time (0.25–1 s buffered by default),
   in full frames where they can, within the link's window and the device's credits.
   Keep-alives feed the watchdog, ``heartbeat``\\ s poll ``status`` (boot id: a reset;
   counters: what ran).
5. Every command of the plan ends as played, or is reported: late, refused, flushed,
   cut off, or never sent (the link was lost, the device reset or shut down). The
   last command known to have run is saved for ``--resume``.

Only this module and :mod:`.fw` read the wall clock (``time.perf_counter``), through
the injectable ``now`` (virtual time in tests).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    DeviceShutdown,
    DeviceTimeout,
    PlanError,
    ProtocolError,
    SpecError,
    TransportError,
)
from ..fileio import write_text
from ..plan import Command, Plan
from ..plan import Op as PlanOp
from ..protocol.messages import (
    PCA_OSC_HZ,
    PCA_PRESCALE_DEFAULT,
    PROTOCOL_VERSION,
    ConfigReason,
    EventKind,
    Message,
    Op,
    OutKind,
    ShutdownReason,
    State,
    config_hash,
    encode_messages,
)
from ..protocol.schedule import PayloadPacker, ScheduleEncoder, TimedCommand
from ..protocol.varint import U32
from ..spec.model import DriverKind, PianoSpec
from .clocksync import ClockSync, PerfTimeline
from .link import Link
from .transport import Transport

log = logging.getLogger(__name__)

Now = Callable[[], float]
Progress = Callable[[float], None]

HOST_SHUTDOWN_DONE = 16  # our shutdown reason code: the piece is over


class DeviceReset(TransportError):  # noqa: N818 (named like DeviceTimeout)
    """The device restarted (its boot id changed) while we were using it."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    protocol_version: int
    fw_version: int
    board: str
    clock_hz: int
    queue_size: int
    max_actuators: int
    rx_buffer: int
    max_payload: int
    boot_id: int
    max_on_us_limit: int
    max_level: int
    late_slack_us: int
    state: int

    @classmethod
    def from_message(cls, m: Message) -> DeviceInfo:
        d = m.as_dict()
        d["board"] = bytes(d["board"]).decode("ascii", "replace")
        return cls(**d)


@dataclass(slots=True)
class StreamConfig:
    lead_min_s: float = 0.25  # a command is on the wire at least this long before its time
    lead_max_s: float = 1.0  # ... and never earlier than this
    start_delay_s: float = 0.4  # the first command plays this long after streaming starts
    watchdog_ms: int = 90  # all-off after this much silence (100 ms minus output latency)
    keepalive_s: float = 0.03  # feed the watchdog at least this often (< watchdog / 3)
    status_s: float = 0.25  # heartbeat -> status this often
    clock_period_s: float = 1.0  # clock queries once the sync has settled
    sync_burst: int = 16  # get_clock exchanges before streaming
    level_shift: int = 0  # drive resolution on the wire: 2**level_shift counts
    reply_timeout_s: float = 1.0  # identify/configure answers
    drain_timeout_s: float = 5.0  # after the last command: wait this long for the device
    max_tries: int = 6
    clock_scale: float = 1.0  # MCU seconds per host second (simavr paced slower than real)
    # When the device's queue, not the lead window, decides what goes (short lead), a
    # frame waits for this many records (credits come back a few at a time; a frame per
    # ACK would spend the wire on framing) ...
    batch_records: int = 12
    # ... unless its first command plays within this long
    batch_urgent_s: float = 0.02
    # ... and holds at most this many (short lead only)
    batch_max_records: int = 20


@dataclass(slots=True)
class CommandOutcome:
    """What happened to one plan command (index into ``plan.commands``)."""

    index: int
    status: str  # played | late | late_release | refused_* | flushed | not_sent | unknown
    device_index: int = -1
    clock: int = 0  # the MCU clock it was scheduled at (full width)


@dataclass(slots=True)
class StreamResult:
    outcomes: list[CommandOutcome] = field(default_factory=list)
    start_index: int = 0
    last_done_index: int = -1  # last plan index known to have run (for --resume)
    error: str = ""  # why streaming stopped early ("" = it finished)
    device: DeviceInfo | None = None
    link: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, int]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    short_lead: int = 0  # commands sent with less than lead_min_s to spare (queue full)
    boot_ids: list[int] = field(default_factory=list)
    exc: Exception | None = None  # the fault that ended streaming early

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out


# ---- the configuration a spec asks for ---------------------------------------------
def actuator_outputs(spec: PianoSpec) -> dict[int, tuple[int, int, int, int]]:
    """actuator -> (out_kind, out_addr, out_channel, pwm_max), from the spec's wiring.

    Boards own consecutive blocks of the channel space in their listed order; a board's
    output is the channel minus its first channel.
    """
    first: dict[str, int] = {}
    start = 0
    for b in spec.boards:
        first[b.id] = start
        start += b.channels
    kinds = {b.id: b for b in spec.boards}
    out: dict[int, tuple[int, int, int, int]] = {}
    wiring: list[tuple[int, str, int]] = [(k.channel, k.board, k.pwm_max) for k in spec.keys]
    if spec.pedal is not None:
        wiring.append((spec.pedal.channel, spec.pedal.board, (1 << spec.pedal.pwm_bits) - 1))
    for ch, board, pwm_max in wiring:
        b = kinds[board]
        kind = OutKind.PCA9685 if b.kind is DriverKind.PCA9685 else OutKind.DIRECT
        addr = b.i2c_address or 0 if kind is OutKind.PCA9685 else 0
        out[ch] = (int(kind), addr, ch - first[board], pwm_max)
    return out


def pca_prescale(spec: PianoSpec) -> int:
    """The PCA9685 PRE_SCALE for the spec's ``pwm_hz`` (the nearest the chip has:
    25 MHz / (4096 (prescale + 1))). The firmware runs every board at one frequency,
    so boards that ask for different ones are refused; no PCA9685 board: the default."""
    hz = {b.id: b.pwm_hz for b in spec.boards if b.kind is DriverKind.PCA9685}
    if not hz:
        return PCA_PRESCALE_DEFAULT
    if len(set(hz.values())) > 1:
        each = ", ".join(f"{k} {v} Hz" for k, v in hz.items())
        raise SpecError(
            f"spec {spec.name!r}: boards[].pwm_hz: the firmware drives every PCA9685 board "
            f"at one PWM frequency; these differ ({each})"
        )
    f = next(iter(hz.values()))
    return max(3, min(255, round(PCA_OSC_HZ / (4096 * f)) - 1))


def duty_permille(spec: PianoSpec) -> int:
    """Mean (level/pwm_max)² a coil may keep up for ever without passing its allowed rise."""
    th, pw = spec.thermal, spec.power
    full_rise = pw.supply_v**2 / pw.coil_ohm * th.coil_tau_s / th.coil_heat_capacity_j_per_k
    return max(1, min(1000, int(1000 * th.coil_max_rise_k / full_rise)))


def configure_messages(
    spec: PianoSpec, *, watchdog_ms: int, time_shift: int, level_shift: int
) -> list[Message]:
    outs = actuator_outputs(spec)
    count = max(outs) + 1
    duty = duty_permille(spec)
    msgs = [
        Message.make(
            "configure_begin",
            actuator_count=count,
            max_concurrent=min(spec.power.max_simultaneous_strikes, count),
            watchdog_ms=watchdog_ms,
            duty_window_ms=max(100, min(600_000, int(spec.thermal.coil_tau_s * 1000))),
            time_shift=time_shift,
            level_shift=level_shift,
            pca_prescale=pca_prescale(spec),
        )
    ]
    for a in range(count):
        kind, addr, ch, pwm_max = outs.get(a, (int(OutKind.DIRECT), 0, 255, 1))
        msgs.append(
            Message.make(
                "configure_actuator",
                actuator=a,
                out_kind=kind,
                out_addr=addr,
                out_channel=ch,
                pwm_max=pwm_max,
                max_drive=pwm_max,
                max_on_us=spec.thermal.max_on_us,
                max_pulse_us=spec.strike.max_pulse_us,
                duty_permille=duty,
            )
        )
    return msgs


def time_shift_for(clock_hz: int) -> int:
    """The shift that makes the schedule's time unit the nearest power of two <= 1 µs."""
    return max(0, min(8, int(math.floor(math.log2(max(1, clock_hz) / 1e6)))))


def to_timed(cmd: Command, clock: int, pwm_max: int) -> TimedCommand:
    if cmd.op is PlanOp.PULSE_HOLD:
        return TimedCommand(clock, Op.STRIKE, cmd.actuator, cmd.drive, cmd.pulse_us, cmd.hold)
    if cmd.op is PlanOp.RELEASE:
        return TimedCommand(clock, Op.RELEASE, cmd.actuator)
    if cmd.op is PlanOp.SET:  # plan levels are PWM counts already (plan v2)
        return TimedCommand(clock, Op.SET, cmd.actuator, cmd.drive)
    raise PlanError(f"plan command {cmd.op.value} at t_us={cmd.t_us}: not supported by the firmware yet")


# ---- resume state ---------------------------------------------------------------------
@dataclass(slots=True)
class ResumeState:
    """What ``play --resume`` needs: where the last run stopped (``next_index``)."""

    spec_hash: str
    plan_commands: int
    next_index: int  # first plan command not known to have run
    note: int  # score note of the last command that ran (-1 if none)
    t_us: int  # its performance time
    reason: str = ""

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ResumeState:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(**d)
        except (OSError, json.JSONDecodeError, TypeError) as err:
            raise TransportError(f"{path}: cannot read the resume state: {err}") from err

    def start_index_for(self, plan: Plan, spec_hash: str) -> int:
        if self.spec_hash != spec_hash or self.plan_commands != len(plan):
            raise TransportError(
                f"resume state is for another plan (spec {self.spec_hash}, "
                f"{self.plan_commands} commands; now spec {spec_hash}, {len(plan)} commands)"
            )
        return self.next_index


# ---- the session ------------------------------------------------------------------------
@dataclass(slots=True)
class _Sent:
    plan_index: int
    clock: int
    op: Op
    actuator: int


class Session:
    """One device, one link. Use as a context manager; ``close()`` leaves it all-off."""

    def __init__(
        self,
        transport: Transport,
        spec: PianoSpec,
        *,
        now: Now = time.perf_counter,
        config: StreamConfig | None = None,
    ) -> None:
        self.tr = transport
        self.spec = spec
        self.now = now
        self.cfg = config or StreamConfig()
        self.link = Link(max_tries=self.cfg.max_tries, silence_s=1.0)
        self.info: DeviceInfo | None = None
        self.sync_: ClockSync | None = None
        self.timeline: PerfTimeline | None = None
        self._tag = 0
        self._replies: dict[str, list[tuple[Message, float]]] = {}
        self._clock_req: dict[int, tuple[int, float]] = {}  # tag -> (seq, when asked)
        self._clock_hi = 0  # last full-width clock seen (unwraps 32-bit values)
        self._clock_lo_seen = False
        self._last_tx = -1.0
        self._next_clock = 0.0
        self._next_status = 0.0
        self.events: list[Message] = []
        self.status: Message | None = None
        self.shutdown_notice: Message | None = None
        # a status said SHUTDOWN while streaming: the device's shutdown_notice (not
        # resent) was lost, and its reason with it
        self.shutdown_in_status = False
        self._streaming = False
        self.reset_seen: int | None = None  # the new boot id, once a reset was seen
        self._probing = False  # a resync + identify is out, after acks that made no sense
        self._last_poll = 0.0  # last empty frame sent to learn the device's credits
        self.time_shift = 0
        self._byte_s = 10.0 / transport.baud if transport.baud else 0.0
        self.link.byte_s = self._byte_s

    # ---- plumbing ------------------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        if data:
            self.tr.write(data)
            self._last_tx = self.now()

    def _send(self, msgs: list[Message], records: int = 0) -> int:
        seq = self.link.send(encode_messages(msgs), records)
        self._write(self.link.output(self.now()))
        return seq

    def _next_tag(self) -> int:
        self._tag = (self._tag + 1) & 0xFF
        return self._tag

    def unwrap(self, clock32: int) -> int:
        """Full-width clock of a 32-bit value near the last one seen."""
        if not self._clock_lo_seen:
            self._clock_lo_seen = True
            self._clock_hi = clock32
            return clock32
        d = (clock32 - self._clock_hi) & U32
        if d & 0x80000000:
            d -= 1 << 32
        full = self._clock_hi + d
        self._clock_hi = max(self._clock_hi, full)
        return full

    def pump(self, timeout: float) -> None:
        """Write what the link has to send, read for up to ``timeout`` s, handle it."""
        now = self.now()
        if (
            self.link.synced
            and self.link.idle
            and self.info is not None
            and self.link.quiet_for(now) > self.link.silence_s / 3
        ):
            self.heartbeat()  # the device answers it: proof of life while we only listen
        self.link.check(now)
        self._write(self.link.output(now))
        if (
            self.link.synced
            and self._last_tx >= 0
            and now - self._last_tx >= self.cfg.keepalive_s - 1e-6
        ):
            self._write(self.link.keepalive(now))
        dl = self.link.next_deadline()
        wait = timeout
        if dl is not None:
            wait = min(wait, max(0.0, dl - now))
        if self.link.synced:
            wait = min(wait, max(0.0, self._last_tx + self.cfg.keepalive_s - now))
        data = self.tr.read(max(wait, 0.0))
        t = self.now()
        for m in self.link.input(data, t):
            self._on_message(m, t)
        if self.link.bad_acks_in_row >= 3 and not self._probing and self.info is not None:
            # acknowledgements for frames we never sent: has the device reset? SYNC it
            # and ask who it is; a new boot id in the answer is a reset
            log.info("%s: the device's acks make no sense; re-syncing and identifying", self.tr.url)
            self._probing = True
            self.link.resync(t)
            self.link.send(encode_messages([Message.make("identify")]))

    def _on_message(self, m: Message, t: float) -> None:
        n = m.name
        if n == "clock":
            self._on_clock(m, t)
        elif n == "status":
            if self.info is not None and m["boot_id"] != self.info.boot_id:
                # another boot: its clock and counters start over. Keep the old boot's
                # last status, which tells what ran before the reset (_account)
                self.reset_seen = m["boot_id"]
            else:
                self.status = m
                self.unwrap(m["clock"])
                if self._streaming and m["state"] == State.SHUTDOWN:
                    self.shutdown_in_status = True
        elif n == "event":
            self.events.append(m)
        elif n == "shutdown_notice":
            self.shutdown_notice = m
        elif n == "identify_resp":
            self._probing = False
            if self.info is not None and m["boot_id"] != self.info.boot_id:
                self.reset_seen = m["boot_id"]
        self._replies.setdefault(n, []).append((m, t))

    def _on_clock(self, m: Message, t: float) -> None:
        req = self._clock_req.pop(m["tag"], None)
        full = self.unwrap(m["clock"])
        if req is None or self.sync_ is None:
            return
        seq, _asked = req
        info = self.link.sent_log.get(seq)
        if info is None or info.tries != 1:
            return  # sent more than once: which send did it answer? (Karn)
        # the device read its clock after the request's last byte, and the answer (about
        # 14 bytes with its ACK) took its own wire time back: shift the midpoint by half
        # the difference (the interval itself stays as measured)
        asym = 0.5 * (info.wire_len - 14) * self._byte_s
        self.sync_.add(info.first_sent, full, t, asym)

    def _request(self, msgs: list[Message], reply: str) -> Message:
        """Send ``msgs`` and wait for ``reply``, asking again when the answer was lost."""
        for attempt in range(self.cfg.max_tries):
            seq = self._send(msgs)
            try:
                return self._wait_reply(reply, self.cfg.reply_timeout_s / 2, seq)
            except DeviceTimeout:
                log.info("%s: no %s (try %d); asking again", self.tr.url, reply, attempt + 1)
        raise DeviceTimeout(
            f"{self.tr.url}: no {reply} from the device after {self.cfg.max_tries} tries"
        )

    def _wait_reply(self, name: str, timeout: float, seq: int) -> Message:
        """Wait for ``name``, answering the request in DATA frame ``seq``."""
        deadline = self.now() + timeout
        while True:
            got = self._replies.get(name)
            if got:
                return got.pop(0)[0]
            if self.link.in_flight(seq):
                # the request is still on its way (or being resent): the wait starts
                # once the device has it (not once the link is idle: heartbeats, which
                # keep coming while we wait, would put that off for ever)
                deadline = max(deadline, self.now() + timeout)
            elif self.now() >= deadline:
                raise DeviceTimeout(
                    f"{self.tr.url}: no {name} from the device within {timeout * 1e3:.0f} ms"
                )
            self.pump(min(0.05, max(0.0, deadline - self.now())))

    # ---- phases --------------------------------------------------------------------
    def open(self) -> DeviceInfo:
        """SYNC the link and identify the device; ProtocolError on a version mismatch."""
        self.link.start(self.now())
        deadline = self.now() + self.cfg.reply_timeout_s * 2
        while not self.link.synced:
            if self.now() > deadline:
                raise DeviceTimeout(f"{self.tr.url}: the device does not answer SYNC")
            self.pump(0.05)
        self._replies.clear()
        resp = self._request([Message.make("identify")], "identify_resp")
        info = DeviceInfo.from_message(resp)
        if info.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"{self.tr.url}: device speaks protocol version {info.protocol_version}, "
                f"this driver speaks {PROTOCOL_VERSION} (firmware {info.fw_version >> 8}."
                f"{info.fw_version & 0xFF}, board {info.board!r}): rebuild or reflash the firmware"
            )
        self.info = info
        self.link.rx_buffer = info.rx_buffer
        # the device answers every heartbeat: this much silence is a dead link (the
        # firmware's own watchdog went all-off long before)
        self.link.silence_s = max(0.3, 3 * self.cfg.watchdog_ms / 1000, 3 * self.cfg.status_s)
        self.time_shift = time_shift_for(info.clock_hz)
        self.sync_ = ClockSync(info.clock_hz * self.cfg.clock_scale)
        return info

    def configure(self) -> int:
        """Send the spec's configuration; returns the hash the device echoed."""
        info = self._need_info()
        outs = actuator_outputs(self.spec)
        count = max(outs) + 1
        if count > info.max_actuators:
            raise ProtocolError(
                f"{self.tr.url}: spec {self.spec.name!r} needs {count} actuators, "
                f"the firmware allows {info.max_actuators}"
            )
        msgs = configure_messages(
            self.spec,
            watchdog_ms=self.cfg.watchdog_ms,
            time_shift=self.time_shift,
            level_shift=self.cfg.level_shift,
        )
        h = config_hash(msgs)
        batches: list[list[Message]] = []
        batch: list[Message] = []
        size = 0
        for m in [*msgs, Message.make("configure_end", hash=h)]:
            n = len(m.encode())
            if batch and size + n > info.max_payload:
                batches.append(batch)
                batch, size = [], 0
            batch.append(m)
            size += n
        self._replies.pop("config_result", None)
        # the device does not resend answers: a lost config_result means configuring again
        # (configure_begin starts over, so that is safe)
        res: Message | None = None
        for attempt in range(self.cfg.max_tries):
            for b in batches:
                self._send(b)
            seq = self._send(batch)
            try:
                res = self._wait_reply("config_result", self.cfg.reply_timeout_s / 2, seq)
                break
            except DeviceTimeout:
                log.info(
                    "%s: no config_result (try %d); configuring again", self.tr.url, attempt + 1
                )
        if res is None:
            raise DeviceTimeout(f"{self.tr.url}: no config_result after {self.cfg.max_tries} tries")
        reason = ConfigReason(res["reason"])
        if reason is not ConfigReason.OK:
            raise ProtocolError(
                f"{self.tr.url}: the firmware refused spec {self.spec.name!r}: {reason.name} "
                f"(detail {res['detail']})"
            )
        if res["hash"] != h:
            raise ProtocolError(
                f"{self.tr.url}: config hash echoed {res['hash']:#010x}, sent {h:#010x}"
            )
        if attempt:
            # an earlier try's frames may still be arriving after this answer: make sure
            # the device has run them all (status comes after them) and is READY and fresh
            st = self.poll_status(self.cfg.reply_timeout_s)
            if st["state"] != State.READY or st["next_index"] != 0:
                raise ProtocolError(
                    f"{self.tr.url}: after configuring, the device is {State(st['state']).name} "
                    f"with {st['next_index']} commands queued (expected READY and 0)"
                )
        self._replies.pop("config_result", None)
        self.link.credits = info.queue_size
        return int(res["hash"])

    def _need_info(self) -> DeviceInfo:
        if self.info is None:
            raise TransportError(f"{self.tr.url}: not identified (call open() first)")
        return self.info

    def query_clock(self) -> None:
        tag = self._next_tag()
        seq = self._send([Message.make("get_clock", tag=tag)])
        self._clock_req[tag] = (seq, self.now())

    def sync(self, n: int | None = None) -> ClockSync:
        """A burst of clock queries, one after the other's answer."""
        assert self.sync_ is not None
        n = self.cfg.sync_burst if n is None else n
        deadline = self.now() + max(1.0, n * 0.1)
        while self.sync_.samples < n:
            if self.now() > deadline:
                if self.sync_.samples >= 2:
                    break
                raise DeviceTimeout(
                    f"{self.tr.url}: clock sync got {self.sync_.samples} answers of {n}"
                )
            if not self._clock_req:
                self.query_clock()
            self.pump(0.02)
            self._clock_req = {k: v for k, v in self._clock_req.items() if self.now() - v[1] < 0.2}
        self._next_clock = self.now() + self.sync_.next_query_in(self.cfg.clock_period_s)
        return self.sync_

    def heartbeat(self) -> None:
        self._send([Message.make("heartbeat", tag=self._next_tag())])

    def poll_status(self, timeout: float = 1.0) -> Message:
        """Ask for ``status`` (again, if the answer was lost) and return it."""
        self._replies.pop("status", None)
        return self._request([Message.make("heartbeat", tag=self._next_tag())], "status")

    def all_off(self) -> None:
        self._send([Message.make("all_off")])

    def _periodic(self) -> None:
        now = self.now()
        if self.sync_ is not None and now >= self._next_clock:
            self.query_clock()
            self._next_clock = now + self.sync_.next_query_in(self.cfg.clock_period_s)
        if now >= self._next_status:
            self.heartbeat()
            self._next_status = now + self.cfg.status_s

    def _check_device(self) -> None:
        if self.reset_seen is not None:
            raise DeviceReset(
                f"{self.tr.url}: the device reset (boot id {self._need_info().boot_id:#010x} -> "
                f"{self.reset_seen:#010x}); its queue and outputs were lost"
            )
        if self.shutdown_notice is not None:
            r = self.shutdown_notice["reason"]
            name = (
                ShutdownReason(r).name
                if r in ShutdownReason._value2member_map_
                else f"host code {r}"
            )
            raise DeviceShutdown(f"{self.tr.url}: the device shut down ({name})", reason=r)
        if self.shutdown_in_status:
            raise DeviceShutdown(
                f"{self.tr.url}: the device shut down (reason unknown: its status says "
                "SHUTDOWN, its shutdown_notice was lost)"
            )

    # ---- streaming ---------------------------------------------------------------------
    def stream(
        self,
        plan: Plan,
        start_index: int = 0,
        progress: Progress | None = None,
    ) -> StreamResult:
        """Stream ``plan.commands[start_index:]``; never raises for link/device faults:
        they end up in :attr:`StreamResult.error` with every command accounted for."""
        info = self._need_info()
        assert self.sync_ is not None
        cmds = plan.commands
        if not 0 <= start_index <= len(cmds):
            raise TransportError(
                f"stream: start_index {start_index} out of range (allowed 0..{len(cmds)})"
            )
        res = StreamResult(start_index=start_index, device=info)
        res.boot_ids.append(info.boot_id)
        outs = actuator_outputs(self.spec)
        count = max(outs) + 1
        enc = ScheduleEncoder(count, self.time_shift, self.cfg.level_shift)
        tl = PerfTimeline(self.sync_)
        self.timeline = tl
        t_first = cmds[start_index].t_us if start_index < len(cmds) else 0
        time0 = self.now() + self.cfg.start_delay_s - t_first * 1e-6
        tl.start(time0)
        sent: dict[int, _Sent] = {}  # device index -> what it was
        outcome: dict[int, str] = {}  # plan index -> status
        i = start_index
        packer = PayloadPacker(info.max_payload)
        pack_first_due = math.inf  # host time by which the packer's first record must leave
        pack_first_t = math.inf  # host time the packer's first record plays at
        pack_indices: list[int] = []
        last_clock = 0
        self._next_status = self.now()
        n_total = len(cmds) - start_index
        self._streaming = True
        try:
            while True:
                now = self.now()
                self._check_device()
                # 1. take commands into the packer while they are within the lead window
                starved = False
                while i < len(cmds) and time0 + cmds[i].t_us * 1e-6 - now <= self.cfg.lead_max_s:
                    c = cmds[i]
                    need = packer.n_records + 1
                    if self.link.free_credits() < need:
                        starved = True  # the device's queue is full: wait for credits
                        break
                    clock = tl.clock_for(c.t_us)
                    if (
                        packer.n_records >= self.cfg.batch_max_records
                        and time0 + c.t_us * 1e-6 - self.cfg.lead_min_s < now
                    ):
                        # short lead: a frame only acts once it is all in, so a long one
                        # makes its first records late; send what we have
                        self._flush_packer(packer, pack_indices)
                        packer = PayloadPacker(info.max_payload)
                        pack_indices = []
                        pack_first_due = math.inf
                        pack_first_t = math.inf
                    e = enc.add(to_timed(c, clock, outs[c.actuator][3]))
                    fits = all(packer.add(it) for it in e.items)
                    if not fits:
                        # the packer is full: send it, start a new one with this command
                        self._flush_packer(packer, pack_indices)
                        packer = PayloadPacker(info.max_payload)
                        pack_indices = []
                        pack_first_due = math.inf
                        pack_first_t = math.inf
                        for it in e.items:
                            if not packer.add(it):
                                raise ProtocolError(f"stream: command {i} does not fit a frame")
                    due = time0 + c.t_us * 1e-6 - self.cfg.lead_min_s
                    if due < now:
                        res.short_lead += 1
                    pack_first_due = min(pack_first_due, due)
                    pack_first_t = min(pack_first_t, time0 + c.t_us * 1e-6)
                    sent[e.index] = _Sent(i, e.clock, to_timed(c, clock, 1).op, c.actuator)
                    last_clock = max(last_clock, e.clock)
                    pack_indices.append(i)
                    i += 1
                # 2. send the packer when its first record is due (or everything is in);
                # past due, a few records wait for more while their time allows (batch)
                send_at = pack_first_due
                if starved and packer.n_records < self.cfg.batch_records:
                    send_at = max(send_at, pack_first_t - self.cfg.batch_urgent_s)
                if len(packer) and (now >= send_at or i >= len(cmds)):
                    self._flush_packer(packer, pack_indices)
                    packer = PayloadPacker(info.max_payload)
                    pack_indices = []
                    pack_first_due = math.inf
                    pack_first_t = math.inf
                    send_at = math.inf
                if starved and self.link.idle and self.now() - self._last_poll >= 0.01:
                    # the queue was full when the device last said: an empty DATA frame
                    # (6 bytes) brings an ACK with its credits now, not at the next status
                    self._last_poll = self.now()
                    self.link.send(b"", 0)
                    self._write(self.link.output(self.now()))
                self._periodic()
                if progress is not None and n_total:
                    progress(min(1.0, (i - start_index) / n_total))
                if i >= len(cmds) and not len(packer):
                    break
                nxt = send_at
                if i < len(cmds) and not starved:
                    nxt = min(nxt, time0 + cmds[i].t_us * 1e-6 - self.cfg.lead_max_s)
                self.pump(min(0.02, max(0.0005, nxt - self.now())))
            # 3. wait for the device to run everything sent
            self._drain(last_clock, len(sent), res)
        except (DeviceTimeout, DeviceReset, DeviceShutdown, TransportError) as err:
            res.error = f"{type(err).__name__}: {err}"
            res.exc = err
            log.warning("%s", res.error)
        finally:
            self._streaming = False
        self._account(cmds, start_index, sent, outcome, res)
        res.link = self.link_stats()
        if self.status is not None:
            res.status = {k: v for k, v in self.status.as_dict().items() if isinstance(v, int)}
        return res

    def _flush_packer(self, packer: PayloadPacker, indices: list[int]) -> None:
        payload = packer.payload()
        self.link.send(payload, packer.n_records)
        self._write(self.link.output(self.now()))

    def _drain(self, last_clock: int, n_sent: int, res: StreamResult) -> None:
        assert self.sync_ is not None
        end_time = self.sync_.time_at(last_clock)
        deadline = max(self.now(), end_time) + self.cfg.drain_timeout_s
        while True:
            self._check_device()
            st = self.status
            if st is not None and self.link.idle and self.now() > end_time:
                acc = st["played"] + st["late"] + st["refused"] + st["flushed"]
                if (
                    st["next_index"] >= n_sent
                    and acc >= st["next_index"]
                    and self.unwrap(st["clock"]) >= last_clock
                ):
                    return
            if self.now() > deadline:
                raise DeviceTimeout(
                    f"{self.tr.url}: the device did not finish within "
                    f"{self.cfg.drain_timeout_s:.1f} s of the last command"
                )
            if self.now() > end_time:
                self._next_status = min(self._next_status, self.now() + 0.05)
            self._periodic()
            self.pump(0.02)

    def _account(
        self,
        cmds: list[Command],
        start_index: int,
        sent: dict[int, _Sent],
        outcome: dict[int, str],
        res: StreamResult,
    ) -> None:
        reported: dict[int, str] = {}
        for ev in self.events:
            kind = ev["kind"]
            if kind == EventKind.FLUSHED:
                for k in range(ev["index"], ev["index"] + ev["clock"]):
                    reported.setdefault(k, "flushed")
            elif kind in (EventKind.BAD_MESSAGE,):
                continue
            elif kind in (EventKind.CUTOFF_MAX_ON, EventKind.CUTOFF_DUTY):
                reported[ev["index"]] = "played_cut_off"
            else:
                reported[ev["index"]] = EventKind(kind).name.lower()
            res.events.append({k: int(v) for k, v in ev.as_dict().items()})
        by_plan = {s.plan_index: (k, s) for k, s in sent.items()}
        st = self.status
        done_clock = self.unwrap(st["clock"]) if st is not None else -1
        if st is not None and res.error.startswith("DeviceReset"):
            # the reset may have cut off reports the status already counted: then what
            # was due by its clock cannot all be called played
            seen = sum(
                1 for ev in self.events if EventKind.LATE <= ev["kind"] <= EventKind.REFUSED_STATE
            )
            if seen < st["late"] + st["refused"]:
                done_clock = -1
        finished = not res.error
        last_done = start_index - 1
        for pi in range(start_index, len(cmds)):
            if pi not in by_plan:
                res.outcomes.append(CommandOutcome(pi, "not_sent"))
                continue
            k, s = by_plan[pi]
            status = reported.get(k)
            if status is None:
                # the device dispatched every command due by its last status's clock
                # (a reset's new boot never overwrites that status): played, or an
                # event said otherwise
                if finished or s.clock <= done_clock:
                    status = "played"
                else:
                    status = "unknown"
            res.outcomes.append(CommandOutcome(pi, status, k, s.clock))
            if status in ("played", "played_cut_off", "late_release") and last_done == pi - 1:
                last_done = pi
        res.last_done_index = last_done

    def link_stats(self) -> dict[str, Any]:
        st = self.link.stats
        return {
            "bytes_sent": st.bytes_sent,
            "bytes_received": st.bytes_received,
            "frames": st.frames,
            "retransmits": st.retransmits,
            "crc_errors": st.crc_errors,
            "framing_errors": st.framing_errors,
            "naks": st.naks,
            "device_frames_lost": st.device_frames_lost,
            "rtt_ms": round(st.srtt_s * 1e3, 3),
            "rtt_min_ms": round(st.rtt_min_s * 1e3, 3),
            "rtt_max_ms": round(st.rtt_max_s * 1e3, 3),
            "drift_ppm": round(self.sync_.drift_ppm, 2) if self.sync_ else 0.0,
            "clock_samples": self.sync_.samples if self.sync_ else 0,
            "clock_rejected": self.sync_.rejected if self.sync_ else 0,
            "clock_restarts": self.sync_.restarts if self.sync_ else 0,
            "records": st.records,
            "keepalives": st.keepalives,
            "sched_bytes": st.sched_bytes,
            "sched_ack_bytes": round(
                st.ack_bytes_received * st.sched_frames_all / max(1, st.data_frames_all)
            ),
            # the firmware's output-bus faults since boot (PCA9685 NACKs, bus errors,
            # stuck buses, write-queue overflows), from its last status
            "i2c_errors": int(self.status["i2c_errors"]) if self.status is not None else 0,
        }

    # ---- the end -------------------------------------------------------------------
    def close(self) -> None:
        """All off (best effort), then close the transport."""
        try:
            if self.tr.is_open and self.link.synced and self.info is not None:
                self._send([Message.make("all_off")])
                deadline = self.now() + 0.2
                while not self.link.idle and self.now() < deadline:
                    self.pump(0.02)
        except (TransportError, ProtocolError) as err:
            log.debug("%s: all_off on close: %s", self.tr.url, err)
        finally:
            self.tr.close()

    def shutdown_device(self, reason: int = HOST_SHUTDOWN_DONE) -> None:
        self._send([Message.make("shutdown", reason=reason)])


def state_of(st: Message) -> str:
    return State(st["state"]).name
