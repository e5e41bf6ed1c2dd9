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

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    DeviceShutdown,
    DeviceTimeout,
    ProtocolError,
    TransportError,
)
from ..plan import Plan
from ..protocol.messages import (
    PROTOCOL_VERSION,
    ConfigReason,
    Message,
    Op,
    ShutdownReason,
    State,
    config_hash,
    encode_messages,
)
from ..protocol.varint import U32
from ..spec.model import InstrumentSpec
from .clocksync import ClockSync, PerfTimeline
from .config import actuator_duty_permille as actuator_duty_permille  # re-exported
from .config import actuator_outputs, configure_messages, time_shift_for
from .config import duty_permille as duty_permille  # re-exported
from .config import pca_prescale as pca_prescale  # re-exported
from .config import to_timed as to_timed  # re-exported
from .keepalive import KeepAlive
from .link import Link
from .results import CommandOutcome as CommandOutcome  # re-exported
from .results import DeviceInfo as DeviceInfo  # re-exported
from .results import ResumeState as ResumeState  # re-exported
from .results import StreamConfig as StreamConfig  # re-exported
from .results import StreamResult as StreamResult  # re-exported
from .streaming import StreamRun
from .transport import Transport

log = logging.getLogger(__name__)

Now = Callable[[], float]
Progress = Callable[[float], None]

HOST_SHUTDOWN_DONE = 16  # our shutdown reason code: the piece is over


class DeviceReset(TransportError):  # noqa: N818 (named like DeviceTimeout)
    """The device restarted (its boot id changed) while we were using it."""


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
        spec: InstrumentSpec,
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
        self._read_at = -1.0  # when pump last read (host time)
        self._next_clock = 0.0
        self._next_status = 0.0
        self.events: list[Message] = []
        self.status: Message | None = None
        self.shutdown_notice: Message | None = None
        # a status said SHUTDOWN while streaming: the device's shutdown_notice (not
        # resent) was lost, and its reason with it
        self.shutdown_in_status = False
        self.draining_in_status = False  # its watchdog fired: playing out its queue
        self._streaming = False
        self.reset_seen: int | None = None  # the new boot id, once a reset was seen
        self._probing = False  # a resync + identify is out, after acks that made no sense
        self._last_poll = 0.0  # last empty frame sent to learn the device's credits
        self.time_shift = 0
        # one writer at a time: the stream loop and the keep-alive thread (.keepalive)
        self.tx_lock = threading.RLock()
        self.keepalive: KeepAlive | None = None
        self._byte_s = 10.0 / transport.baud if transport.baud else 0.0
        self.link.byte_s = self._byte_s

    # ---- plumbing ------------------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        if data:
            with self.tx_lock:
                self.tr.write(data)
                self._last_tx = self.now()

    def _write_output(self, now: float) -> None:
        """Write what the link has to send now (under the transmit lock: the keep-alive
        thread's frames go between whole frames, never inside one)."""
        with self.tx_lock:
            self._write(self.link.output(now))

    def start_keepalive(self) -> None:
        """Feed the watchdog from a thread too (:mod:`.keepalive`); real time only."""
        from .keepalive import KeepAlive

        if self.keepalive is None:
            self.keepalive = KeepAlive(self).start()

    def _send(self, msgs: list[Message], records: int = 0) -> int:
        seq = self.link.send(encode_messages(msgs), records)
        self._write_output(self.now())
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
        if self._read_at >= 0:
            # time the host spent elsewhere since its last read is not the device's silence
            self.link.host_paused(now, now - self._read_at)
        if (
            self.link.synced
            and self.link.idle
            and self.info is not None
            and self.link.quiet_for(now) > self.link.silence_s / 3
        ):
            self.heartbeat()  # the device answers it: proof of life while we only listen
        self.link.check(now)
        self._write_output(now)
        with self.tx_lock:
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
        t = self._read_at = self.now()
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
                # DRAINING: the watchdog fired; the queue plays out, then SHUTDOWN
                if self._streaming and m["state"] in (State.SHUTDOWN, State.DRAINING):
                    self.shutdown_in_status = True
                    self.draining_in_status = m["state"] == State.DRAINING
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
        """SYNC the link and identify the device; ProtocolError on a version mismatch.

        Waits up to ``boot_wait_s`` for a board that is still booting (saying so once it
        has been silent a while); a frame lost on the way (the link's silence limit hit
        while asking) is retried: the whole opening goes again, ``open_tries`` times."""
        boot_deadline = self.now() + self.cfg.boot_wait_s
        err: DeviceTimeout | None = None
        for attempt in range(self.cfg.open_tries):
            try:
                self._sync_link(boot_deadline if attempt == 0 else 0.0)
                return self._identify()
            except DeviceTimeout as e:
                err = e
                log.info("%s: opening failed (try %d): %s", self.tr.url, attempt + 1, e)
        assert err is not None
        raise err

    def _sync_link(self, boot_deadline: float) -> None:
        self.link.start(self.now())
        deadline = max(self.now() + self.cfg.reply_timeout_s * 2, boot_deadline)
        said = False
        while not self.link.synced:
            now = self.now()
            if now > deadline:
                waited = (
                    f" (waited {self.cfg.boot_wait_s:.1f} s for it to boot)"
                    if self.cfg.boot_wait_s > 0
                    else ""
                )
                raise DeviceTimeout(f"{self.tr.url}: the device does not answer SYNC{waited}")
            if not said and boot_deadline - now > 0 and now - self.link._last_rx > 0.5:
                said = True
                log.warning(
                    "%s: waiting up to %.1f s for the board to boot (an Arduino Mega resets "
                    "into its bootloader when its port opens)",
                    self.tr.url, self.cfg.boot_wait_s,
                )
            try:
                self.pump(0.05)
            except DeviceTimeout:
                if self.now() >= deadline:
                    raise
                self.link.start(self.now())  # still booting: SYNC again, fresh tries

    def _identify(self) -> DeviceInfo:
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
            watchdog_drain_ms=self.cfg.watchdog_drain_ms,
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
        if self.shutdown_in_status and self.draining_in_status:
            raise DeviceShutdown(
                f"{self.tr.url}: the device's watchdog fired (WATCHDOG): it plays out its "
                "queue, takes nothing new, then shuts down",
                reason=int(ShutdownReason.WATCHDOG),
            )
        if self.shutdown_in_status:
            raise DeviceShutdown(
                f"{self.tr.url}: the device shut down (reason unknown: its status says "
                "SHUTDOWN, its shutdown_notice was lost)"
            )

    # ---- streaming ---------------------------------------------------------------------
    def begin_stream(self, start_index: int = 0) -> StreamRun:
        """A stream of commands with no known end (see :mod:`.streaming`)."""
        return StreamRun(self, start_index)

    def stream(
        self,
        plan: Plan,
        start_index: int = 0,
        progress: Progress | None = None,
    ) -> StreamResult:
        """Stream ``plan.commands[start_index:]``; never raises for link/device faults:
        they end up in :attr:`StreamResult.error` with every command accounted for."""
        cmds = plan.commands
        if not 0 <= start_index <= len(cmds):
            raise TransportError(
                f"stream: start_index {start_index} out of range (allowed 0..{len(cmds)})"
            )
        run = self.begin_stream(start_index)
        run.submit(cmds[start_index:])
        return run.finish(progress)

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
            "credit_polls": st.empty_frames,  # empty DATA frames: ACKs that bring credits
            "sched_bytes": st.sched_bytes,
            "sched_frames": st.sched_frames_all,  # DATA frames with records, resends too
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
        if self.keepalive is not None:
            self.keepalive.stop()
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
