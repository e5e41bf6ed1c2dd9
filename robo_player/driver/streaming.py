"""One stream of timed commands through a :class:`~.stream.Session`, with no known end.

:class:`StreamRun` is what a device's ``submit`` / ``advance`` / ``drain`` drive:

- :meth:`StreamRun.submit` takes commands (in time order, later than those before);
  they wait in the run until they are within ``lead_max_s`` of their time;
- :meth:`StreamRun.step` does one round of the loop: take the commands that are due
  into a frame (within the link's window and the device's credits), send what is due,
  clock queries and heartbeats, then read for a short while. Nothing happens between
  calls: a caller that waits for more input calls :meth:`StreamRun.advance` (a real
  device's watchdog goes all-off after ``watchdog_ms`` of silence);
- :meth:`StreamRun.finish` sends the rest, waits until the device has run it all, and
  accounts for every command: played, or late, refused, flushed, cut off, never sent.

A link or device fault (a timeout, a reset, a shutdown) ends the run: it is kept in
:attr:`StreamRun.error`, later submits are refused with it, and :meth:`finish`
accounts for everything submitted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..actuation import check_order
from ..errors import DeviceShutdown, DeviceTimeout, ProtocolError, TransportError
from ..plan import Command, Op
from ..protocol.messages import EventKind
from ..protocol.messages import Op as WireOp
from ..protocol.schedule import PayloadPacker, ScheduleEncoder
from .clocksync import PerfTimeline

if TYPE_CHECKING:
    from .stream import Progress, Session, StreamResult, _Sent

log = logging.getLogger(__name__)

# the faults that end a stream (reported in the result, never raised by step/finish)
STREAM_FAULTS = (DeviceTimeout, DeviceShutdown, TransportError)
# filling a frame that goes out (StreamConfig.fill_ahead_s) stops with this much room
# left, so that it never spills into a frame of its own: a record takes at most 15
# bytes (most 2-4), with a sched_base and a new schedule message before it 23
FILL_RECORD_BYTES = 24


# a pulse that ended this long before a strike cannot tie with it (the MCU's clock and
# performance time differ by far less over so short a span): _tie_floor forgets it
_TIE_FORGET_US = 10_000

class StreamRun:
    """Commands streamed to one configured, clock-synced session.

    ``start_index``: the index the first submitted command has in the outcomes (a plan
    resumed part way keeps its own indices).
    """

    def __init__(self, session: Session, start_index: int = 0) -> None:
        from .config import actuator_outputs
        from .stream import StreamResult

        self.s = session
        info = session._need_info()
        assert session.sync_ is not None
        self.base = start_index
        self.cmds: list[Command] = []  # submitted; outcome index = base + position
        self.res: StreamResult = StreamResult(start_index=start_index, device=info)
        self.res.boot_ids.append(info.boot_id)
        self.outs = actuator_outputs(session.spec)
        count = max(self.outs) + 1
        self.enc = ScheduleEncoder(count, session.time_shift, session.cfg.level_shift)
        self.tl = PerfTimeline(session.sync_)
        session.timeline = self.tl
        self.time0: float | None = None  # host time of performance time 0
        self.sent: dict[int, _Sent] = {}  # device index -> what it was
        self.sent_late: set[int] = set()  # device indices sent after their time
        self.i = 0  # next position to take into a frame
        self.packer = PayloadPacker(info.max_payload)
        self.pack_first_due = math.inf  # host time by which its first record must leave
        self.pack_first_t = math.inf  # host time its first record plays at
        self.send_at = math.inf
        self.last_clock = 0
        self.starved = False
        self._room_key: tuple[float, int] = (math.nan, 0)  # _room_at()'s last answer
        self._room_t = -math.inf
        # each actuator's strike pulse sent last: (its end in performance time, its end on
        # the MCU's clock: the firmware times a pulse in its own ticks)
        self.pulse_end: dict[int, tuple[int, int]] = {}
        self.ticks_per_us = max(1, int(info.clock_hz) // 1_000_000)
        self.error: Exception | None = None
        # the longest the device was silent while the stream ran (s): how long after we
        # last heard from it a cut link may have come (see _may_have_run_until)
        self._rx_gap_max = 2 * session.cfg.keepalive_s
        self.finished = False
        self._finishing = False
        self._wake = False  # commands came since the last step: it does not wait
        session._next_status = session.now()
        session._streaming = True

    # ---- the caller's side ---------------------------------------------------------
    def submit(self, cmds: Sequence[Command]) -> None:
        """Queue ``cmds`` (sorted by time, none before the last one queued)."""
        if self.finished:
            raise TransportError(f"{self.s.tr.url}: the stream is finished")
        if self.error is not None:
            raise TransportError(
                f"{self.s.tr.url}: the stream ended with a fault; nothing more is taken "
                f"({type(self.error).__name__}: {self.error})"
            ) from self.error
        check_order(list(cmds), self.cmds[-1].t_us if self.cmds else -1, self.s.tr.url,
                    self.base + len(self.cmds))
        if not cmds:
            return
        if self.time0 is None:
            self.time0 = self.s.now() + self.s.cfg.start_delay_s - cmds[0].t_us * 1e-6
            self.tl.start(self.time0)
        self.cmds.extend(cmds)
        self._wake = True  # the next step sends them and returns at once (no idle wait)

    def t_us_now(self) -> float:
        """The device's performance time now (µs; -inf before the first command)."""
        if self.time0 is None:
            return -math.inf
        return (self.s.now() - self.time0) * 1e6

    def advance(self, until_t_us: int, progress: Progress | None = None) -> None:
        """Keep streaming until performance time ``until_t_us`` (or a fault); the loop's
        read waits no longer than the time left (and at most a step's 20 ms, so status
        polls and fault checks keep their pace), so it returns once that time is reached."""
        while self.error is None:
            left_s = (until_t_us - self.t_us_now()) * 1e-6
            if left_s <= 0:
                break
            self.step(progress, max_wait_s=min(left_s, 0.02))

    def step(self, progress: Progress | None = None, max_wait_s: float = 0.02) -> None:
        """One round of the loop (a fault is kept in :attr:`error`, not raised); its read
        waits at most ``max_wait_s``, and not at all right after a :meth:`submit` (the
        caller, a live loop, gets control back as soon as the commands are written)."""
        if self.error is not None:
            return
        before = self.s.link._last_rx
        if self._wake:
            self._wake = False
            max_wait_s = 0.0
        try:
            self._step(progress, max_wait_s)
        except (*STREAM_FAULTS,) as err:
            self._fault(err)
        after = self.s.link._last_rx
        if before >= 0 and after > before:
            self._rx_gap_max = max(self._rx_gap_max, after - before)

    def finish(self, progress: Progress | None = None) -> StreamResult:
        """Send the rest, wait for the device to run it, and account for every command."""
        if not self.finished:
            self._finishing = True
            try:
                while self.error is None and (self.i < len(self.cmds) or len(self.packer)):
                    self._step(progress)
                if self.error is None:
                    self._drain()
            except (*STREAM_FAULTS,) as err:
                self._fault(err)
            finally:
                self.s._streaming = False
            self._account()
            self.finished = True
        return self.res

    def _fault(self, err: Exception) -> None:
        self.error = err
        self.res.error = f"{type(err).__name__}: {err}"
        self.res.exc = err
        log.warning("%s", self.res.error)

    # ---- the loop ----------------------------------------------------------------------
    def _new_packer(self) -> None:
        self.packer = PayloadPacker(self.packer.max_payload)
        self.pack_first_due = math.inf
        self.pack_first_t = math.inf

    def _flush(self) -> None:
        s = self.s
        s.link.send(self.packer.payload(), self.packer.n_records)
        s._write_output(s.now())
        self._new_packer()

    def _take(self, now: float, horizon_s: float, fill: bool = False) -> None:
        """Take commands due within ``horizon_s`` into the packer (a full packer is sent
        and a new one begun), while the device has queue room for them. ``fill``: only
        into the packer that is about to go out (stop where it is full)."""
        from .config import to_timed
        from .stream import _Sent

        s, cfg, cmds = self.s, self.s.cfg, self.cmds
        time0 = self.time0 if self.time0 is not None else math.inf
        while self.i < len(cmds) and time0 + cmds[self.i].t_us * 1e-6 - now <= horizon_s:
            c = cmds[self.i]
            need = self.packer.n_records + 1
            if s.link.free_credits() < need:
                self.starved = not fill  # the device's queue is full: wait for credits
                break
            if fill and len(self.packer) + FILL_RECORD_BYTES > self.packer.max_payload:
                break  # (a record rarely takes more: the next frame starts with it)
            clock = self.tl.clock_for(c.t_us)
            if (
                self.packer.n_records >= cfg.batch_max_records
                and time0 + c.t_us * 1e-6 - cfg.lead_min_s < now
            ):
                # short lead: a frame only acts once it is all in, so a long one makes
                # its first records late; send what we have
                self._flush()
            e = self.enc.add(to_timed(c, clock, self.outs[c.actuator][3]), self._tie_floor(c))
            self.pulse_end.pop(c.actuator, None)
            if c.op is Op.PULSE_HOLD and c.pulse_us:
                self.pulse_end[c.actuator] = (
                    c.t_us + c.pulse_us, e.clock + c.pulse_us * self.ticks_per_us
                )
            if not all(self.packer.add(it) for it in e.items):
                # the packer is full: send it, start a new one with this command
                self._flush()
                for it in e.items:
                    if not self.packer.add(it):
                        raise ProtocolError(
                            f"stream: command {self.base + self.i} does not fit a frame"
                        )
            due = time0 + c.t_us * 1e-6 - cfg.lead_min_s
            if due < now:
                self.res.short_lead += 1
            if time0 + c.t_us * 1e-6 < now:
                self.sent_late.add(e.index)  # its time had passed: it can only be late
            self.pack_first_due = min(self.pack_first_due, due)
            self.pack_first_t = min(self.pack_first_t, time0 + c.t_us * 1e-6)
            self.sent[e.index] = _Sent(
                self.base + self.i, e.clock, to_timed(c, clock, 1).op, c.actuator
            )
            self.last_clock = max(self.last_clock, e.clock)
            self.i += 1

    def _room_at(self) -> float:
        """Host time before which a credit poll would only learn of a full queue: the
        device's slots free as the commands in it play, so that is the clock of the
        command whose play leaves room for a batch (``batch_records``) more than the
        packer holds, counted from the device's last credit report (any ACK: a
        ``get_clock`` brings one too), or the time the packed records become urgent
        (``batch_urgent_s``). Each poll is a frame in and an ACK out for the device's CPU
        (issue 8: its load at 100 notes/s): polling every 10 ms while the queue was full
        took 344 of the 530 frames of ``firmware/sim/driver_load.py``'s run."""
        s, cfg = self.s, self.s.cfg
        # the packer holds what the last report left room for; a poll pays once a
        # batch more fits
        n = self.packer.n_records
        short = n + min(cfg.batch_records, len(self.cmds) - self.i) - s.link.free_credits()
        urgent = self.pack_first_t - cfg.batch_urgent_s
        key = (s.link.credits_at, short)
        if key == self._room_key:
            return min(self._room_t, urgent)
        room_t = -math.inf
        sync = s.sync_
        if short > 0 and sync is not None and sync.ready:
            # the commands the device still held at its report, latest first (sent in
            # time order): the short-th earliest of them frees the last slot needed
            times: list[float] = []
            for x in reversed(self.sent.values()):
                t = sync.time_at(x.clock)
                if t <= s.link.credits_at:
                    break
                times.append(t)
            if len(times) >= short:
                room_t = times[-short]
        self._room_key, self._room_t = key, room_t
        return min(room_t, urgent)

    def _tie_floor(self, c: Command) -> int | None:
        """The clock a strike may not run before: the MCU's end of every other pulse that
        the plan ends at or before it. The plan may put a strike on the tick where other
        pulses end (they no longer count against the concurrency cap: rules.py), but the
        clock sync's rate and the time codes could bring it a tick or a unit earlier on
        the MCU, where those pulses still run: refused (docs/driver.md "Ties")."""
        if c.op is not Op.PULSE_HOLD or not c.pulse_us:
            return None
        floor = None
        stale = []
        for a, (t_end, clock_end) in self.pulse_end.items():
            if t_end < c.t_us - _TIE_FORGET_US:
                stale.append(a)  # long over: no later strike (time order) can tie with it
            elif a != c.actuator and t_end <= c.t_us and (floor is None or clock_end > floor):
                floor = clock_end
        for a in stale:
            del self.pulse_end[a]
        return floor

    def _step(self, progress: Progress | None, max_wait_s: float = 0.02) -> None:
        s, cfg, cmds = self.s, self.s.cfg, self.cmds
        now = s.now()
        s._check_device()
        time0 = self.time0 if self.time0 is not None else math.inf
        # 1. take commands into the packer while they are within the lead window
        self.starved = False
        self._take(now, cfg.lead_max_s)
        # 2. send the packer when its first record is due (or everything is in); past
        # due, a few records wait for more while their time allows (batch)
        send_at = self.pack_first_due
        if self.starved and self.packer.n_records < cfg.batch_records:
            send_at = max(send_at, self.pack_first_t - cfg.batch_urgent_s)
        if len(self.packer) and (now >= send_at or self.i >= len(cmds)):
            if not self.starved and cfg.fill_ahead_s > cfg.lead_max_s:
                # it goes out now: fill it with what comes within fill_ahead_s (the rest
                # of the payload, while the device's queue has room)
                self._take(now, cfg.fill_ahead_s, fill=True)
            self._flush()
            send_at = math.inf
        if (
            self.starved
            and s.link.idle
            and s.now() - s._last_poll >= 0.01
            and s.now() >= self._room_at()
        ):
            # the queue was full when the device last said: an empty DATA frame (6
            # bytes) brings an ACK with its credits now, not at the next status
            s._last_poll = s.now()
            s.link.send(b"", 0)
            s._write_output(s.now())
        s._periodic()
        if progress is not None and cmds:
            progress(min(1.0, self.i / len(cmds)))
        if self.i >= len(cmds) and not len(self.packer):
            if not self._finishing:
                s.pump(max_wait_s)  # all sent: wait for more (finish goes on to drain)
            return
        nxt = send_at
        if self.i < len(cmds) and not self.starved:
            nxt = min(nxt, time0 + cmds[self.i].t_us * 1e-6 - cfg.lead_max_s)
        s.pump(min(max_wait_s, max(0.0005, nxt - s.now())))

    def _drain(self) -> None:
        """Wait for the device to run everything sent."""
        s = self.s
        assert s.sync_ is not None
        n_sent = len(self.sent)
        if not n_sent:
            return
        end_time = s.sync_.time_at(self.last_clock)
        deadline = max(s.now(), end_time) + s.cfg.drain_timeout_s
        while True:
            s._check_device()
            st = s.status
            if st is not None and s.link.idle and s.now() > end_time:
                acc = st["played"] + st["late"] + st["refused"] + st["flushed"]
                if (
                    st["next_index"] >= n_sent
                    and acc >= st["next_index"]
                    and s.unwrap(st["clock"]) >= self.last_clock
                ):
                    return
            if s.now() > deadline:
                raise DeviceTimeout(
                    f"{s.tr.url}: the device did not finish within "
                    f"{s.cfg.drain_timeout_s:.1f} s of the last command"
                )
            if s.now() > end_time:
                s._next_status = min(s._next_status, s.now() + 0.05)
            s._periodic()
            s.pump(0.02)

    def _missing_late_reports(self, reported: dict[int, str], late_count: int) -> None:
        """The device's event ring may drop reports (the AVR keeps 8) while its status
        still counts them. When the late ones the status counts outnumber the late
        reports, the commands sent after their time with no report are the only ones
        that can be late: exactly as many as are missing are named late; if the numbers
        do not match, they are ``unknown`` (never silently played)."""
        seen = sum(1 for v in reported.values() if v in ("late", "late_release"))
        missing = late_count - seen
        if missing <= 0:
            return
        cands = sorted(k for k in self.sent_late if k not in reported)
        log.warning(
            "%s: %d late reports were lost (status counts %d, %d came); %d commands sent "
            "late have none",
            self.s.tr.url, missing, late_count, seen, len(cands),
        )
        for k in cands:
            op = self.sent[k].op
            if len(cands) == missing:
                reported[k] = "late_release" if op == WireOp.RELEASE else "late"
            else:
                reported[k] = "unknown"

    def _account(self) -> None:
        from .stream import CommandOutcome

        s, res = self.s, self.res
        reported: dict[int, str] = {}
        for ev in s.events:
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
        by_plan = {x.plan_index: (k, x) for k, x in self.sent.items()}
        st = s.status
        done_clock = s.unwrap(st["clock"]) if st is not None else -1
        if st is not None and res.error.startswith("DeviceReset"):
            # the reset may have cut off reports the status already counted: then what
            # was due by its clock cannot all be called played
            seen = sum(
                1 for ev in s.events if EventKind.LATE <= ev["kind"] <= EventKind.REFUSED_STATE
            )
            if seen < st["late"] + st["refused"]:
                done_clock = -1
        finished = not res.error
        if finished and st is not None:
            self._missing_late_reports(reported, st["late"])
        last_done = self.base - 1
        for pi in range(self.base, self.base + len(self.cmds)):
            if pi not in by_plan:
                res.outcomes.append(CommandOutcome(pi, "not_sent"))
                continue
            k, x = by_plan[pi]
            status = reported.get(k)
            if status is None:
                # the device dispatched every command due by its last status's clock (a
                # reset's new boot never overwrites that status): played, or an event
                # said otherwise
                if finished or x.clock <= done_clock:
                    status = "played"
                else:
                    status = "unknown"
            res.outcomes.append(CommandOutcome(pi, status, k, x.clock))
            if status in ("played", "played_cut_off", "late_release") and last_done == pi - 1:
                last_done = pi
        res.last_done_index = last_done
        horizon = self._may_have_run_until()
        maybe_ran = [
            o.index
            for o in res.outcomes
            if o.status in ("played", "played_cut_off", "late_release")
            or (o.status == "unknown" and o.clock <= horizon)
        ]
        res.resume_index = max(maybe_ran, default=self.base - 1) + 1
        res.link = s.link_stats()
        if s.status is not None:
            res.status = {k: v for k, v in s.status.as_dict().items() if isinstance(v, int)}
            self._reconcile()

    def _reconcile(self) -> None:
        """Every stream's accounting beside the firmware's counters. A report the device
        sent and the link lost (its event ring holds 8 on the AVR) shows up here as a
        difference: visible in the report, never a silent "played". Only a finished
        stream can agree: after a fault the device's last status predates the end."""
        res = self.res
        c = res.counts()
        drv = {
            "played": c.get("played", 0) + c.get("played_cut_off", 0),
            "late": c.get("late", 0) + c.get("late_release", 0),
            "refused": sum(v for k, v in c.items() if k.startswith("refused")),
            "flushed": c.get("flushed", 0),
        }
        fw = {k: int(res.status.get(k, 0)) for k in drv}
        # a resumed stream: the firmware counts from its configure, as we do (base)
        agree = drv == fw
        res.reconciliation = {
            "driver": drv,
            "firmware": fw,
            "agree": agree,
            "lost_reports": max(0, drv["played"] - fw["played"]),
            "final": not res.error,
        }
        if not agree and not res.error:
            log.warning(
                "%s: the driver's counts %s differ from the firmware's %s: reports were lost",
                self.s.tr.url, drv, fw,
            )

    def _may_have_run_until(self) -> float:
        """The latest MCU clock a command may have run at when the stream ended with no
        word from the device (a cut link): it was alive when we last heard from it; the
        link was cut before it would next have spoken (the longest silence seen while
        streaming), and its watchdog fired ``watchdog_ms`` after the last frame it got
        and played out the queue for at most ``watchdog_drain_ms`` more. Later commands
        were flushed, never played."""
        s = self.s
        if s.sync_ is None or s.link._last_rx < 0:
            return math.inf
        wd_s = (s.cfg.watchdog_ms + s.cfg.watchdog_drain_ms) / 1000
        t = s.link._last_rx + self._rx_gap_max + wd_s + 0.01
        return s.sync_.clock_at(t)


__all__ = ["STREAM_FAULTS", "StreamRun"]
