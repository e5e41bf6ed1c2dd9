"""A live session: timed MIDI messages in, the live planner, a streaming device out.

:class:`LiveSession` owns the loop's one rule: before the device's performance time
passes ``t``, every command due by then has been submitted (``LivePlanner.due``), so the
device always receives commands in time order and ahead of their time. It is driven by
message times, so the same code runs

- in **virtual time** (:func:`run_virtual`: messages with their time stamps, the device
  advanced from one to the next; tests and benches, deterministic), and
- in **real time** (:func:`run_realtime`: a MIDI input polled, each message stamped
  with the performance time it arrived at, the device advanced as the clock goes).

Performance time 0 is the start of the stream (an all-off at t = 0 starts it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..driver.ports import Device
from ..performance import Performance
from ..plan import Command, Op
from .family import AnyLivePlanner

__all__ = [
    "Arrival", "LiveSession", "MidiSource", "default_ahead_us", "run_realtime", "run_virtual",
]  # fmt: skip

log = logging.getLogger(__name__)


class MidiSource(Protocol):
    """An input polled in real time (a mido input port, or a file replayed)."""

    def poll(self) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Arrival:
    """A note-on as it arrived (performance µs) and what the planner made of it."""

    t_us: int
    pitch: int
    velocity: int
    outcome: str
    answer: bool = False  # the robot's own answer (call and response), not the player's
    note: int = -1  # the planner's id of the note (``LivePlanner.last_note``)


@dataclass(slots=True)
class LiveSession:
    device: Device
    planner: AnyLivePlanner
    # hand commands to the device this much earlier than ``lead_us`` asks (the loop may
    # wake this late; see default_ahead_us)
    ahead_us: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    host_us: list[float] = field(default_factory=list)  # per message that sent commands
    record: bool = False  # keep ``inbox`` and ``sent`` (``--record``)
    inbox: list[tuple[int, Any]] = field(default_factory=list)  # (t_us, message)
    sent: list[Command] = field(default_factory=list)
    stop_reason: str = ""  # why a real-time run stopped early (Ctrl-C, input lost)
    submitted: int = 0
    messages: int = 0
    _started: bool = False
    _now: int = 0

    def start(self) -> None:
        """Start the stream at performance time 0."""
        if self._started:
            return
        self._started = True
        # one command starts the stream (a device starts all off; a burst of 88
        # releases would only fill the link ahead of the first notes)
        first = next(iter(self.planner.spec.actuators)).index
        self._submit([Command(0, Op.RELEASE, first)])

    def advance_to(self, t_us: int) -> None:
        """Run the device up to ``t_us``, handing it each command ``lead_us`` (plus
        ``ahead_us``) before its time."""
        self.start()
        p, ahead = self.planner, self.ahead_us
        while True:
            nxt = p.next_due_us()
            if nxt is None or nxt - ahead > t_us:
                break
            x = max(nxt - ahead, self._now)
            self._advance(x)
            self._submit(p.due(max(x, self._device_now()) + ahead))
        self._advance(t_us)

    def _device_now(self) -> int:
        dn = self.device.now_us()
        return self._now if dn is None else max(self._now, int(dn))

    def feed(
        self, msg: Any, t_us: int, t_in: float | None = None, delay_us: int | None = None
    ) -> None:
        """One MIDI message (a ``mido.Message``) that arrived at ``t_us``; ``t_in``: the
        ``time.perf_counter()`` it came in at (default now), for the host latency.
        ``delay_us``: an answer's note (call and response), sounding this long after
        ``t_us`` (not the player's: not in ``inbox``, ``host_us``, ``messages``)."""
        t_host = time.perf_counter() if t_in is None else t_in
        self.advance_to(t_us)
        answer = delay_us is not None
        self.messages += not answer
        if self.record and not answer:
            self.inbox.append((t_us, msg))
        p = self.planner
        dev_now = self._device_now()
        if dev_now > t_us:
            # the device ran past the message's time (a firmware device advances in
            # steps of its link loop): nothing can go before its clock plus the lead
            p.not_before(dev_now + 1 + p.options.lead_us)
        kind = getattr(msg, "type", "?")
        if kind == "note_on" and msg.velocity > 0:
            out = p.note_on(t_us, msg.note, msg.velocity, delay_us)
            self.arrivals.append(Arrival(t_us, msg.note, msg.velocity, out, answer, p.last_note))
        elif kind in ("note_on", "note_off"):
            p.note_off(t_us, msg.note)
        elif kind == "control_change":
            p.control(t_us, msg.control, msg.value)
        else:
            p.stats.ignored[kind] += 1
        # what must go now (a panic's all-off, a lowest strike)
        n = self.submitted
        self._submit(p.due(max(t_us, dev_now) + self.ahead_us))
        if not answer and (self.submitted > n or kind == "note_on"):
            # host latency: message in -> its commands written to the device (a firmware
            # device's submit writes the frame and returns at once); a fixed-mode
            # note-on's strike waits for its time by design: message in -> planned
            self.host_us.append((time.perf_counter() - t_host) * 1e6)

    def stop(self, t_us: int | None = None) -> Performance:
        """Let go of every key, send the rest, drain: the stream's performance."""
        t = self._now if t_us is None else t_us
        self.advance_to(t)
        self._submit(self.planner.finish(t))
        return self.device.drain()

    def _advance(self, t_us: int) -> None:
        if t_us > self._now:
            self._now = t_us
            self.device.advance(t_us)

    def _submit(self, cmds: list[Command]) -> None:
        if cmds:
            self.device.submit(cmds)
            self.submitted += len(cmds)
            if self.record:
                self.sent.extend(cmds)


VIRTUAL_TIME_SCHEMES = ("sim:", "vmcu:")


FIRMWARE_AHEAD_US = 1_000


def default_ahead_us(device: Device) -> int:
    """``ahead_us`` for a device: 0 on ``sim://`` (it stops where it is asked to),
    1 ms on firmware devices (the loop's wake-up may be that late). It must stay under
    the planner's ``margin_us``: a command handed over ``ahead_us`` early sets the floor
    (nothing goes before it), and the slowest strike in fixed mode comes only
    ``lead_us + margin_us`` after its message."""
    return 0 if str(getattr(device, "url", "")).startswith("sim:") else FIRMWARE_AHEAD_US


def run_virtual(
    device: Device, planner: AnyLivePlanner, events: Iterable[tuple[float, Any]],
    tail_s: float = 1.0, ahead_us: int | None = None, record: bool = False,
    responder: Any = None,
) -> tuple[Performance, LiveSession]:  # fmt: skip
    """Feed ``(t_s, message)`` events (seconds of performance time, in order) in virtual
    time; stop ``tail_s`` after the last (after the answer, with a ``responder``).
    Returns the performance and the session."""
    ahead = default_ahead_us(device) if ahead_us is None else ahead_us
    s = LiveSession(device, planner, ahead_us=ahead, record=record)
    s.start()
    last = 0
    for t_s, msg in events:
        last = max(last, round(t_s * 1e6))
        if responder is not None:
            _tick_until(s, responder, last)
            # what was due by now has gone to the device before the responder hears the
            # message (a strike already sent cannot be called back when the player plays)
            s.advance_to(last)
            responder.heard(s, msg, last)
        s.feed(msg, last)
        if responder is not None:
            responder.tick(s, last)
    if responder is not None:
        _tick_until(s, responder, last + 60_000_000)
        last = max(last, s._now)
        responder.close()
    return s.stop(last + round(tail_s * 1e6)), s


def _tick_until(s: LiveSession, responder: Any, t_end: int) -> None:
    """Virtual time: let the responder act at each time it asks for, up to ``t_end``."""
    while True:
        w = responder.wait_s(s._now)
        if w == float("inf"):
            return
        t = s._now + max(1, round(w * 1e6))
        if t > t_end:
            return
        s.advance_to(t)
        responder.tick(s, t)


LINK_STEP_US = 100  # the link's step between waits for input reads this long at most
SLICE_S = 0.002  # the longest the real-time loop waits for input before the link's step


def run_realtime(
    device: Device,
    planner: AnyLivePlanner,
    source: MidiSource,
    *,
    clock: Callable[[], float] = time.perf_counter,
    until: Callable[[LiveSession], bool] | None = None,
    idle_s: float = SLICE_S,
    on_tick: Callable[[LiveSession], None] | None = None,
    record: bool = False,
    responder: Any = None,
) -> tuple[Performance, LiveSession]:
    """Poll ``source`` until ``until(session)``, Ctrl-C or a lost input (then
    ``session.stop_reason`` says which); each message is stamped with the performance
    time at which it was polled. Every key is let go and the device drained: all off.

    Between messages the loop waits on the input itself when it can (``source.wait``:
    a port's callback wakes it at once), at most ``idle_s`` and never past the next
    command due; then one step of the device's link (send, read what came) and the
    input again. So a message is handled and its frame written within a fraction of a
    millisecond, not at the end of a link step.

    ``responder`` (:class:`~robo_player.live.respond.Responder`): call and response;
    it sees every message first and feeds its answers through the same path."""
    s = LiveSession(device, planner, ahead_us=default_ahead_us(device), record=record)
    s.start()
    dn = device.now_us()
    if dn is not None and dn < 0:
        # a firmware device plays its first command start_delay after the stream starts:
        # wait for performance time 0, so the wall clock and the device's time agree
        device.advance(0)
    base = device.now_us() or 0.0
    # a device on the wall clock (the firmware's link) moves by itself; sim:// and
    # vmcu:// are on virtual time and only move when advanced
    wall_device = not str(getattr(device, "url", "")).startswith(VIRTUAL_TIME_SCHEMES)
    s._now = max(0, int(base))
    t0 = clock() - max(0.0, base) * 1e-6
    wait = getattr(source, "wait", None)
    try:
        while until is None or not until(s):
            now = round((clock() - t0) * 1e6)
            while True:
                try:
                    msg = source.poll()
                except (OSError, RuntimeError, EOFError) as err:  # the port went away
                    s.stop_reason = f"MIDI input lost ({type(err).__name__}: {err})"
                    break
                if msg is None:
                    break
                # a replayed file knows when its message was due, a port's callback
                # when it came (the host latency counts from then); else: polled now
                t_in = getattr(source, "arrived_at", None)
                if responder is not None:
                    s.advance_to(now)  # (as in run_virtual)
                    responder.heard(s, msg, now)
                s.feed(msg, now, t_in)
            if s.stop_reason:
                break
            if responder is not None:
                responder.tick(s, now)
            s.advance_to(now)
            if on_tick is not None:
                on_tick(s)
            if wall_device:
                # a step of the link (write what is due, read what came), its read
                # waiting no more than LINK_STEP_US
                s.advance_to(s._device_now() + LINK_STEP_US)
            # wait for input, at most a slice, never past the next command due
            left = idle_s
            nxt = planner.next_due_us()
            if nxt is not None:
                left = min(left, (nxt - s.ahead_us - now) * 1e-6)
            if responder is not None:
                left = min(left, responder.wait_s(now))
            if left > 0:
                if wait is not None:
                    wait(left)
                else:
                    time.sleep(left)
    except KeyboardInterrupt:
        s.stop_reason = "interrupted (Ctrl-C)"
    finally:
        source.close()
    if s.stop_reason:
        log.warning("live: %s; letting every key go", s.stop_reason)
    if responder is not None:
        responder.close()
    return s.stop(round((clock() - t0) * 1e6) + 500_000), s
