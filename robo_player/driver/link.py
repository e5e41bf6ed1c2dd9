"""The host side of the reliable link (``docs/protocol.md``, "Delivery"), without I/O.

:class:`Link` is a state machine: the caller hands it DATA payloads (:meth:`Link.send`),
writes what :meth:`Link.output` returns, feeds what it reads to :meth:`Link.input` and
calls :meth:`Link.check` to learn about timeouts. Every method takes ``now`` (host
seconds), so the same code runs on the wall clock and on virtual time in tests.

- DATA frames carry sequence numbers (mod 64); the device's ``ACK(ack)`` acknowledges
  every frame before ``ack`` (cumulative); ``NAK(ack)`` asks for everything from
  ``ack`` again at once (at most once per round trip for the same ``ack``).
- A frame not acknowledged after ``RTO = srtt + 4·rttvar`` (RFC 6298 smoothing of the
  round trips of frames acknowledged on their first try; clamped to 25 ms … 5 s) is sent
  again with every later unacknowledged one, and its timeout doubles. After
  ``max_tries`` sends of one frame, or when nothing came from the device for
  ``silence_s``, :meth:`Link.check` raises :class:`DeviceTimeout`.
- Window: never more unacknowledged wire bytes than the device's receive buffer, nor
  more than ``max_frames`` frames.
- Credits: the device's ACK/NAK carry its free command-queue slots; a frame with
  records goes out only while ``credits − records in flight ≥ its records``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from ..errors import DeviceTimeout, ProtocolError
from ..protocol.framing import SEQ_MOD, Frame, FrameDecoder, FrameKind, seq_add, seq_diff
from ..protocol.messages import Message, decode_messages
from ..protocol.varint import get_vlq

log = logging.getLogger(__name__)

RTO_MIN_S = 0.025
RTO_MAX_S = 5.0
MAX_FRAMES = 16


@dataclass(slots=True)
class LinkStats:
    bytes_sent: int = 0  # every byte written, retransmissions included
    bytes_received: int = 0
    frames: int = 0  # DATA frames sent (first sends)
    frames_received: int = 0  # good frames from the device
    retransmits: int = 0  # DATA frames sent again
    naks: int = 0  # NAKs received
    crc_errors: int = 0  # frames from the device dropped for their CRC
    framing_errors: int = 0  # ... for bad COBS, length or reserved bits
    device_frames_lost: int = 0  # gaps in the device's DATA sequence
    bad_acks: int = 0  # ACK/NAKs for frames never sent (a device that reset, or noise)
    starved_naks: int = 0  # NAKs because the device's queue had no room
    rtt_samples: int = 0
    srtt_s: float = 0.0
    rttvar_s: float = 0.0
    rtt_min_s: float = 0.0
    rtt_max_s: float = 0.0
    data_bytes: int = 0  # payload bytes of DATA frames sent (first sends)
    records: int = 0  # queue slots sent (records + schedule_ext)
    sched_bytes: int = 0  # wire bytes of DATA frames that carry records (resends included)
    data_frames_all: int = 0  # every DATA frame sent, resends included
    sched_frames_all: int = 0  # ... of them with records
    ack_bytes_received: int = 0  # wire bytes of the device's ACK/NAK frames
    keepalives: int = 0  # empty host ACK frames sent to feed the watchdog
    empty_frames: int = 0  # DATA frames without messages (credit polls; first sends)


@dataclass(slots=True)
class _Pending:
    seq: int
    wire: bytes
    records: int
    first_sent: float = -1.0
    last_sent: float = -1.0
    tries: int = 0


@dataclass(slots=True)
class SentInfo:
    """When a DATA frame went out (for matching answers to requests, e.g. clock sync)."""

    first_sent: float
    last_sent: float
    tries: int
    acked: bool = False
    wire_len: int = 0


@dataclass(slots=True)
class _Sync:
    seq: int
    sent_at: float = -1.0
    tries: int = 0


@dataclass
class Link:
    """Host side of the link. ``rx_buffer``/``max_payload`` come from ``identify``."""

    rx_buffer: int = 64
    max_frames: int = MAX_FRAMES
    max_tries: int = 6
    silence_s: float = 1.0
    credits: int = 0
    credits_at: float = 0.0  # host time of the device's last credit report (an ACK/NAK)
    byte_s: float = 0.0  # wire time of one byte (10 / baud); 0 = unknown or instant
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder()
        self._next_seq = 0
        self._queue: deque[_Pending] = deque()  # not yet sent
        self._unacked: deque[_Pending] = deque()  # sent, not acknowledged, in seq order
        self._sync: _Sync | None = None
        self._synced = False
        self._rto = 0.2  # before any measurement (RFC 6298 says 1 s; serial links are quick)
        self._backoff = 1
        self._last_rx = -1.0
        self._last_nak: tuple[int, float] = (-1, -1.0)
        self._dev_expected: int | None = None  # next DATA seq we expect from the device
        self._need_delimiter = True
        self.sent_log: dict[int, SentInfo] = {}
        self._sent_order: deque[int] = deque()
        self._payloads: dict[int, bytes] = {}
        self.bad_acks_in_row = 0  # ACK/NAKs for frames never sent, since the last good one
        self._resend_due = False  # a NAK asked for everything from the first unacked
        self._last_tx = -1.0

    # ---- state ---------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced

    def quiet_for(self, now: float) -> float:
        """Seconds since the last good frame from the device."""
        return now - self._last_rx if self._last_rx >= 0 else 0.0

    def host_paused(self, now: float, paused_s: float) -> None:
        """The host did not listen for ``paused_s`` before ``now`` (its caller's own work
        between two reads): a device with nothing to answer is silent meanwhile, so its
        silence counts from at most a third of ``silence_s`` before now (the heartbeat
        then asks it, and it has the rest to answer)."""
        if self._last_rx >= 0 and paused_s > self.silence_s / 3:
            self._last_rx = max(self._last_rx, now - self.silence_s / 3)

    @property
    def rto_s(self) -> float:
        return min(RTO_MAX_S, self._rto * self._backoff)

    def _timeout(self) -> float:
        """The RTO plus the wire time of everything in flight: on a slow line a full window
        takes longer to go out than a small frame's round trip."""
        return self.rto_s + self.byte_s * (self.wire_in_flight + 16)

    @property
    def records_in_flight(self) -> int:
        return sum(p.records for p in self._unacked)

    @property
    def records_queued(self) -> int:
        return sum(p.records for p in self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing waiting for an acknowledgement."""
        return not self._queue and not self._unacked and self._sync is None

    @property
    def wire_in_flight(self) -> int:
        return sum(len(p.wire) for p in self._unacked)

    def in_flight(self, seq: int) -> bool:
        """The DATA frame ``seq`` is queued or not yet acknowledged."""
        return any(p.seq == seq for p in self._queue) or any(p.seq == seq for p in self._unacked)

    def free_credits(self) -> int:
        """Queue slots the device will still have once everything sent and queued runs in."""
        return self.credits - self.records_in_flight - self.records_queued

    # ---- sending -------------------------------------------------------------------
    def start(self, now: float, seq: int = 0) -> None:
        """(Re)start the link: forget everything in flight and send ``SYNC(seq)``."""
        self._queue.clear()
        self._unacked.clear()
        self._next_seq = seq % SEQ_MOD
        self._sync = _Sync(self._next_seq)
        self._synced = False
        self._backoff = 1
        self._dev_expected = None
        self._need_delimiter = True
        self._last_rx = now

    def resync(self, now: float) -> None:
        """SYNC the device to our first unacknowledged frame, keeping everything queued.

        For a device whose acknowledgements make no sense (it may have reset): the
        frames in flight go again after the SYNC is answered.
        """
        seq = self._unacked[0].seq if self._unacked else self._next_seq
        self._sync = _Sync(seq)
        self._synced = False
        self._need_delimiter = True
        self._last_rx = now

    def send(self, payload: bytes, records: int = 0) -> int:
        """Queue one DATA frame; returns its sequence number."""
        seq = self._next_seq
        self._next_seq = seq_add(seq, 1)
        if not payload:
            self.stats.empty_frames += 1
        p = _Pending(seq, b"", records)
        self._queue.append(p)
        self._payloads[seq] = payload
        return seq

    def _frame_wire(self, p: _Pending) -> bytes:
        ack = self._dev_expected if self._dev_expected is not None else 0
        return Frame(FrameKind.DATA, p.seq, ack, self._payloads[p.seq]).encode()

    def output(self, now: float) -> bytes:
        """Bytes to write now: a pending SYNC, retransmissions that are due, new frames."""
        out = bytearray()
        if self._sync is not None:
            s = self._sync
            if s.sent_at < 0 or now - s.sent_at >= self.rto_s:
                if s.tries:
                    self._backoff = min(self._backoff * 2, 64)
                s.tries += 1
                s.sent_at = now
                out += self._wire(Frame(FrameKind.SYNC, s.seq, 0).encode())
            return self._emit(out)
        if self._unacked:
            head = self._unacked[0]
            if self._resend_due:
                out += self._resend_all(now)
            elif now - head.last_sent >= self._timeout():
                self._backoff = min(self._backoff * 2, 64)
                log.debug("link: timeout, resending from seq %d (rto %.3f s)", head.seq, self.rto_s)
                out += self._resend_all(now)
        self._resend_due = False
        while self._queue:
            p = self._queue[0]
            if len(self._unacked) >= self.max_frames:
                break
            p.wire = self._frame_wire(p)
            if self._unacked and self.wire_in_flight + len(p.wire) + 1 > self.rx_buffer:
                break
            if p.records and self.credits - self.records_in_flight < p.records:
                break
            self._queue.popleft()
            self._unacked.append(p)
            p.tries = 1
            p.first_sent = p.last_sent = now
            self.stats.frames += 1
            self.stats.records += p.records
            self.stats.data_bytes += len(self._payloads[p.seq])
            self._log_sent(p)
            self._count_data(p)
            out += self._wire(p.wire)
        return self._emit(out)

    def keepalive(self, now: float) -> bytes:
        """An empty host ACK frame (6 bytes): feeds the device's watchdog, takes no seq."""
        ack = self._dev_expected if self._dev_expected is not None else 0
        self.stats.keepalives += 1
        return self._emit(bytearray(self._wire(Frame(FrameKind.ACK, 0, ack).encode())))

    def _wire(self, data: bytes) -> bytes:
        if self._need_delimiter:
            self._need_delimiter = False
            return b"\x00" + data
        return data

    def _emit(self, out: bytearray, now: float | None = None) -> bytes:
        self.stats.bytes_sent += len(out)
        return bytes(out)

    def _resend_all(self, now: float) -> bytes:
        out = bytearray()
        for q in self._unacked:
            q.tries += 1
            q.last_sent = now
            self.stats.retransmits += 1
            if q.seq in self.sent_log:
                self.sent_log[q.seq].last_sent = now
                self.sent_log[q.seq].tries = q.tries
            self._count_data(q)
            out += self._wire(q.wire)
        return bytes(out)

    def _count_data(self, p: _Pending) -> None:
        self.stats.data_frames_all += 1
        if p.records:
            self.stats.sched_frames_all += 1
            self.stats.sched_bytes += len(p.wire)

    def _log_sent(self, p: _Pending) -> None:
        self.sent_log[p.seq] = SentInfo(p.first_sent, p.last_sent, p.tries, wire_len=len(p.wire))
        self._sent_order.append(p.seq)
        while len(self._sent_order) > SEQ_MOD // 2:
            old = self._sent_order.popleft()
            if self._sent_order.count(old) == 0:
                self.sent_log.pop(old, None)

    # ---- receiving -----------------------------------------------------------------
    def input(self, data: bytes, now: float) -> list[Message]:
        """Feed bytes from the device; returns the messages of its good DATA frames."""
        if not data:
            return []
        self.stats.bytes_received += len(data)
        frames = self._decoder.feed(data)
        ds = self._decoder.stats
        self.stats.crc_errors = ds.crc_errors
        self.stats.framing_errors = ds.framing_errors
        msgs: list[Message] = []
        for f in frames:
            self._last_rx = now
            self.stats.frames_received += 1
            if f.kind is FrameKind.DATA:
                msgs.extend(self._on_data(f))
            elif f.kind in (FrameKind.ACK, FrameKind.NAK):
                self.stats.ack_bytes_received += len(f.payload) + 6  # + hdr, CRC, COBS, 0x00
                self._on_ack(f, now)
            else:
                log.debug("link: ignoring a %s frame from the device", f.kind.name)
        return msgs

    def _on_data(self, f: Frame) -> list[Message]:
        if self._dev_expected is not None:
            gap = seq_diff(f.seq, self._dev_expected)
            if gap < 0:
                return []  # a duplicate (the device does not resend, but a line may)
            self.stats.device_frames_lost += gap
        self._dev_expected = seq_add(f.seq, 1)
        try:
            return decode_messages(f.payload)
        except ProtocolError as err:
            log.warning("link: device frame %d does not parse: %s", f.seq, err)
            return []

    def _on_ack(self, f: Frame, now: float) -> None:
        credits: int | None = None
        if f.payload:
            try:
                credits, _ = get_vlq(f.payload, 0)
            except ProtocolError:
                credits = None
        if self._sync is not None:
            if f.ack != self._sync.seq:
                return  # an answer to something older than the SYNC
            self._sync = None
            self._synced = True
            self._backoff = 1
            self.bad_acks_in_row = 0
            if credits is not None:
                self.credits, self.credits_at = credits, now
            if self._unacked:
                self._resend_due = True  # a resync: what was in flight goes again
            return
        if not self._synced:
            return
        # cumulative: every unacked frame before f.ack is delivered
        n = 0
        if self._unacked:
            d = seq_diff(f.ack, self._unacked[0].seq)
            if d < 0 or d > len(self._unacked):
                log.debug(
                    "link: ack %d outside the window (first unacked %d)",
                    f.ack,
                    self._unacked[0].seq,
                )
                self.stats.bad_acks += 1
                self.bad_acks_in_row += 1
                if f.kind is FrameKind.NAK:
                    self.stats.naks += 1
                return
            n = d
        elif f.ack != self._next_seq and not self._queue:
            self.stats.bad_acks += 1
            self.bad_acks_in_row += 1
            return
        self.bad_acks_in_row = 0
        for _ in range(n):
            p = self._unacked.popleft()
            info = self.sent_log.get(p.seq)
            if info is not None:
                info.acked = True
            if p.tries == 1:
                self._rtt_sample(now - p.first_sent)
            self._payloads.pop(p.seq, None)
        if n:
            self._backoff = 1
        if credits is not None:
            self.credits, self.credits_at = credits, now
        if f.kind is FrameKind.NAK:
            self.stats.naks += 1
            if self._unacked and credits is not None and credits < self._unacked[0].records:
                # no room: not a loss; the head goes again when the RTO says (and that NAK
                # brings fresh credits), without using up its tries
                self.stats.starved_naks += 1
                self._unacked[0].tries = min(self._unacked[0].tries, 1)
                return
            last_a, last_t = self._last_nak
            srtt = self.stats.srtt_s or self._rto
            if self._unacked and (last_a != f.ack or now - last_t >= srtt):
                self._last_nak = (f.ack, now)
                self._resend_due = True

    def _rtt_sample(self, rtt: float) -> None:
        st = self.stats
        if st.rtt_samples == 0:
            st.srtt_s = rtt
            st.rttvar_s = rtt / 2
            st.rtt_min_s = st.rtt_max_s = rtt
        else:
            st.rttvar_s = 0.75 * st.rttvar_s + 0.25 * abs(st.srtt_s - rtt)
            st.srtt_s = 0.875 * st.srtt_s + 0.125 * rtt
            st.rtt_min_s = min(st.rtt_min_s, rtt)
            st.rtt_max_s = max(st.rtt_max_s, rtt)
        st.rtt_samples += 1
        self._rto = min(RTO_MAX_S, max(RTO_MIN_S, st.srtt_s + 4 * st.rttvar_s))

    # ---- timing --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """Host time at which :meth:`output` has a retransmission to make, if any."""
        if self._sync is not None:
            return self._sync.sent_at + self.rto_s if self._sync.sent_at >= 0 else 0.0
        if self._unacked:
            return self._unacked[0].last_sent + self._timeout()
        return None

    def check(self, now: float) -> None:
        """Raise :class:`DeviceTimeout` when a frame ran out of tries or the device went silent."""
        sync = self._sync
        if sync is not None and sync.tries >= self.max_tries and now - sync.sent_at >= self.rto_s:
            raise DeviceTimeout(
                f"link: no answer to SYNC after {sync.tries} tries "
                f"(last rto {self.rto_s * 1e3:.0f} ms)"
            )
        if self._unacked:
            head = self._unacked[0]
            if head.tries >= self.max_tries and now - head.last_sent >= self._timeout():
                raise DeviceTimeout(
                    f"link: frame seq {head.seq} unacknowledged after {head.tries} tries "
                    f"(allowed {self.max_tries}; last rto {self.rto_s * 1e3:.0f} ms)"
                )
        if self._last_rx >= 0 and now - self._last_rx > self.silence_s:
            raise DeviceTimeout(
                f"link: nothing from the device for {(now - self._last_rx) * 1e3:.0f} ms "
                f"(allowed {self.silence_s * 1e3:.0f} ms)"
            )
