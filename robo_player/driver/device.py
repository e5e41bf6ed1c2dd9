"""A device that runs firmware: the stream (:class:`~.ports.Device`) over a session.

:class:`FirmwareDevice` works the same for real firmware on a board (``serial://``,
``socket://``, ``rfc2217://``, ``loop://``) and for the simulated MCUs that
:mod:`robo_player.sim.ports` builds (``vmcu://``, ``fw-host://``, ``fw-avr://``): a
:class:`~.backends.Backend` starts the firmware and gives a transport, a reset hook and
a clock; an :class:`~.backends.Instrument`, if there is one, turns the firmware's
actuation trace into what was heard.

The first ``submit`` of a stream starts the backend and opens a
:class:`~.stream.Session` (identify, configure from the spec, clock sync); commands then
stream as they come (:mod:`.streaming`). ``drain`` waits for the device to run them,
closes the session (all off), stops the backend and builds the :class:`Performance`:
``link`` gets the link statistics; ``extra`` gets ``actuation_error_us`` {mean, p99,
max, matched} (trace time against planned time), ``wire_bytes_per_note``, the command
accounting (``commands``) and, for the AVR, its CPU load.

Options (query string or keyword arguments; the simulated MCUs add theirs):
``start_index`` (resume a plan from this command), ``state`` (file where the last
executed command is saved, for ``play --resume``), ``lead`` (s, buffered ahead, default
1.0), ``watchdog_ms`` (the spec's ``thermal.watchdog_ms``, else 300),
``watchdog_drain_ms`` (the spec's ``thermal.watchdog_drain_ms``, else 700; 0: all off
when the watchdog fires), ``level_shift`` (0), ``boot_wait_s`` (how long to wait for a
board that is booting when its port opens: 3.0 on ``serial://`` and the other real
ports, 0 on the simulated ones), and the fault options of :mod:`.faults`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult

import numpy as np

from ..actuation import (
    OutputColumns,
    actuator_pwm_max,
    check_order,
    check_stream_commands,
    positioner_max,
)
from ..errors import DeviceShutdown, ProtocolError, TransportError
from ..performance import HeardNote, Performance, Progress
from ..plan import Command, Op, Plan
from ..protocol.messages import OutKind
from ..spec.model import InstrumentSpec
from .accuracy import actuation_errors, error_summary
from .backends import Backend, Instrument, SerialBackend
from .config import actuator_outputs
from .faults import FAULT_OPTIONS, FaultSpec, FaultStats, FaultyTransport
from .keepalive import watchdog_drain_ms_for, watchdog_ms_for
from .options import Options, url_of, with_query
from .ports import StreamDevice
from .stream import ResumeState, Session, StreamConfig, StreamResult
from .streaming import StreamRun
from .trace import Trace, outputs_from_trace

log = logging.getLogger(__name__)

DEVICE_OPTIONS = (
    "start_index", "state", "lead", "watchdog_ms", "watchdog_drain_ms", "level_shift", "boot_wait_s",
    "keepalive_thread", *FAULT_OPTIONS,
)

BackendFactory = Callable[[Options], Backend]

def _by_clock(change: tuple[int, int, int]) -> int:
    """Order trace changes by time only: two changes of one output on the same tick (a
    strike the watchdog's all-off meets) keep the firmware's order, on then off."""
    return change[0]


class _LiveOutputs:
    """A stream's output changes in performance time as they are traced: columns that grow
    in place (capacity doubled when full), so that appending costs the new changes only,
    not the whole trace again (the live path asks every loop step). :meth:`columns` hands
    out views of the filled part: a later append writes past them (or into new arrays),
    never into them."""

    _FIELDS = ("t_us", "actuator", "level", "pwm_max")

    def __init__(self) -> None:
        self.n_changes = 0  # the trace's changes converted so far
        self.n = 0  # the output changes held (those of them with an actuator and t >= 0)
        self._cols = [np.zeros(0, dtype=np.int64) for _ in self._FIELDS]

    def append(self, part: OutputColumns) -> None:
        k = len(part)
        if self.n + k > len(self._cols[0]):
            cap = max(1024, 2 * (self.n + k))
            grown = [np.zeros(cap, dtype=np.int64) for _ in self._FIELDS]
            for g, c in zip(grown, self._cols, strict=True):
                g[: self.n] = c[: self.n]
            self._cols = grown
        for c, f in zip(self._cols, self._FIELDS, strict=True):
            c[self.n : self.n + k] = getattr(part, f)
        self.n += k

    def columns(self) -> OutputColumns:
        return OutputColumns(*(c[: self.n] for c in self._cols))


class PlayInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stream: everything was turned off and the resume point saved;
    ``performance`` is what played before the stop (for the partial report)."""

    def __init__(self, message: str, performance: Performance | None = None) -> None:
        super().__init__(message)
        self.performance = performance


@dataclass(slots=True)
class _Stream:
    """One stream: one firmware run, one session."""

    backend: Backend
    session: Session
    run: StreamRun
    prefix: list[Command] = field(default_factory=list)  # a resumed plan's commands before
    plan: Plan | None = None  # the whole plan, when play() streams one


class FirmwareDevice(StreamDevice):
    """A :class:`~robo_player.driver.ports.Device` running firmware (see the module doc)."""

    def __init__(
        self,
        url: str,
        spec: InstrumentSpec,
        kind: str,
        opts: dict[str, Any],
        *,
        backend: BackendFactory | None = None,
        instrument: Instrument | None = None,
        extra_options: Sequence[str] = (),
        live_trace: bool = False,
    ) -> None:
        self.options = Options(url, opts, (*DEVICE_OPTIONS, *extra_options))
        self.url = url
        self.spec = spec
        self.kind = kind
        self.opts = opts
        self.faults = FaultSpec.from_options(opts, url)
        self._backend_factory = backend or (lambda o: SerialBackend(url))
        self.instrument = instrument
        self._live_trace = live_trace  # the backend's trace can be read while it runs
        self._pwm_max = actuator_pwm_max(spec)
        self._travel = positioner_max(spec)  # positioners (a guitar's carriages): moves
        self.last_result: StreamResult | None = None
        self.last_backend: Backend | None = None  # the last stream's firmware (tests, bench)
        self.last_faults: FaultStats | None = None  # what the fault injection did
        self.last_session: Session | None = None
        self.last_trace: Trace | None = None  # the first firmware run's actuations
        self.last_performance: Performance | None = None
        self._stream: _Stream | None = None
        self._heard_live: list[HeardNote] = []  # this stream's, heard while it runs
        self._live = _LiveOutputs()  # ... from its trace's changes so far, in performance time
        self._out_map = {(k, a, ch): act for act, (k, a, ch, _pm) in actuator_outputs(spec).items()}
        self._pending_plan: tuple[Plan, int] | None = None
        self._open = True

    # ---- options -----------------------------------------------------------------------
    def _num(self, name: str, default: float, lo: float, hi: float) -> float:
        return self.options.num(name, default, lo, hi)

    def stream_config(self) -> StreamConfig:
        lead = self._num("lead", 1.0, 0.2, 10.0)
        wd = int(self._num("watchdog_ms", watchdog_ms_for(self.spec), 20, 10_000))
        drain = int(self._num("watchdog_drain_ms", watchdog_drain_ms_for(self.spec), 0, 10_000))
        # a board on a real serial port may be booting when it opens (docs/driver.md)
        boot = self._num("boot_wait_s", 3.0 if self.kind == "serial" else 0.0, 0.0, 30.0)
        return StreamConfig(
            boot_wait_s=boot,
            lead_max_s=lead,
            lead_min_s=min(0.25, lead / 2),
            watchdog_ms=wd,
            watchdog_drain_ms=drain,
            keepalive_s=wd / 3000,
            level_shift=int(self._num("level_shift", 0, 0, 4)),
        )

    # ---- the stream ------------------------------------------------------------------------
    def _plan_begin(self, plan: Plan) -> int:
        start = int(self._num("start_index", 0, 0, max(0, len(plan))))
        self._pending_plan = (plan, start)
        return start

    def _start(self) -> _Stream:
        plan_start = self._pending_plan
        self._pending_plan = None
        backend = self._backend_factory(self.options)
        self.last_backend = backend
        self.last_faults = None
        self.last_result = None
        session: Session | None = None
        try:
            transport, reset_hook, now = backend.start()
            faulty: FaultyTransport | None = None
            if self.faults.any:
                faulty = FaultyTransport(transport, self.faults, now=now, reset_hook=reset_hook)
                self.last_faults = faulty.stats
                transport = faulty
            session = Session(transport, self.spec, now=now, config=self.stream_config())
            self.last_session = session
            session.open()
            session.configure()
            session.sync()
            if now is time.perf_counter and self._num("keepalive_thread", 1, 0, 1):
                session.start_keepalive()  # real time: feed the watchdog from a thread too
            if faulty is not None:
                faulty.arm()
            start = plan_start[1] if plan_start else 0
            run = session.begin_stream(start)
        except BaseException:
            if session is not None:
                session.close()
            backend.stop()
            backend.cleanup()
            raise
        st = _Stream(backend, session, run)
        if plan_start is not None:
            st.plan, start = plan_start
            st.prefix = list(st.plan.commands[:start])
        return st

    def submit(self, commands: Sequence[Command]) -> None:
        """Check ``commands`` against the actuator map (PlanError: none is taken), then
        stream them; the first submit of a stream starts the firmware."""
        self._check_open("submit")
        cmds = list(commands)
        base = len(self._stream.prefix) + len(self._stream.run.cmds) if self._stream else 0
        check_stream_commands(cmds, self._pwm_max, self._travel, self.spec.name, base)
        run = self._stream.run if self._stream else None
        check_order(cmds, run.cmds[-1].t_us if run and run.cmds else -1, self.url, base)
        if not cmds:
            return
        if self._stream is None:
            self._stream = self._start()
        self._stream.run.submit(cmds)
        self._stream.run.step()

    def advance(self, until_t_us: int) -> None:
        """Let the stream run until performance time ``until_t_us``."""
        self._check_open("advance")
        if self._stream is not None:
            self._stream.run.advance(until_t_us)

    def now_us(self) -> float | None:
        """The stream's performance time now (None before its first command)."""
        if self._stream is None or self._stream.run.time0 is None:
            return None
        return self._stream.run.t_us_now()

    def heard_so_far(self) -> list[HeardNote] | None:
        """The notes heard in this stream up to now (see :class:`~.ports.Device`): where the
        backend's trace can be read while the firmware runs (``live_trace``: ``vmcu://``,
        ``fw-host://``, ``fw-avr://``) and the instrument hears live (the simulated piano),
        from what the outputs did up to the backend's ``live_margin_us`` ago; else None."""
        self._check_open("heard_so_far")
        listen = getattr(self.instrument, "hear_so_far", None)
        if listen is None or not self._live_trace:
            return None
        st = self._stream
        if st is None or st.run.time0 is None:
            return list(self._heard_live)
        live = self._live_outputs(st)
        if live is None:
            return None
        self._heard_live += listen(*live)
        return list(self._heard_live)

    @property
    def audio_rate(self) -> int | None:
        """The sample rate of :meth:`audio_so_far`'s blocks; None where it gives none."""
        if not self._live_trace or getattr(self.instrument, "audio_so_far", None) is None:
            return None
        rate = getattr(self.instrument, "audio_rate", None)
        return None if rate is None else int(rate)

    def audio_so_far(self) -> list[tuple[Any, float]] | None:
        """The instrument's microphone's new blocks of this stream since the last call, as a
        sound card hands them over (``(samples, the MCU time in µs its first sample was
        captured at)``: the simulated piano's room, rendered from what the outputs did,
        the trace read while the firmware runs); None where there are none (a real board:
        ``--mic``; ``sensor=notes``)."""
        self._check_open("audio_so_far")
        if self.audio_rate is None:
            return None
        st = self._stream
        if st is None or st.run.time0 is None:
            return []
        live = self._live_outputs(st)
        if live is None:
            return None
        blocks: list[tuple[Any, float]] | None = self.instrument.audio_so_far(*live)  # type: ignore[union-attr]
        return blocks

    def _live_outputs(self, st: _Stream) -> tuple[OutputColumns, int] | None:
        """This stream's output changes so far in performance time (the trace read while
        the firmware runs; it only grows) and the time up to which they are final (now
        less the backend's ``live_margin_us``: what the firmware was due to do by then
        has been done and traced); None where the trace cannot be read while it runs.
        Incremental: each call converts only the changes traced since the last one (the
        columns grow in place, amortised O(new changes): a 10-minute piece calls this
        12 000 times)."""
        trace = st.backend.live_trace(self._out_map)
        if trace is None or trace.soft_pwm & set(self._pwm_max):
            return None  # (software PWM: a level is measured over a whole pulse train)
        # the changes not converted yet, in performance time
        new = Trace(clock_hz=trace.clock_hz, changes=trace.changes[self._live.n_changes :])
        self._live.n_changes = len(trace.changes)
        if new.changes:
            self._live.append(outputs_from_trace(new, st.run.tl.t_us_for, {**self._pwm_max, **self._travel}, set()))
        return self._live.columns(), int(st.run.t_us_now()) - st.backend.live_margin_us

    def drain(self, progress: Progress | None = None) -> Performance:
        """Run out the stream, end it and return its performance (see the module doc)."""
        self._check_open("drain")
        if self._stream is None:
            return Performance(extra={"commands": {}})
        perf, result = self._end(progress)
        if result.error:
            raise self._error(result, perf)
        return perf

    def _end(
        self, progress: Progress | None = None, abort: str = ""
    ) -> tuple[Performance, StreamResult]:
        st = self._stream
        assert st is not None
        self._stream = None
        self._heard_live, self._live = [], _LiveOutputs()
        interrupted: KeyboardInterrupt | None = None
        try:
            if abort:
                st.run._fault(TransportError(f"{self.url}: {abort}"))
            try:
                result = st.run.finish(progress)
            except KeyboardInterrupt as err:
                # Ctrl-C: everything off, ask the firmware what it executed (the resume
                # point comes from its counters), account, save, then let it go on
                interrupted = err
                st.run._fault(TransportError(f"{self.url}: interrupted (Ctrl-C)"))
                self._settle_after_interrupt(st)
                result = st.run.finish(None)
            st.session.close()
        finally:
            st.backend.stop()
        self.last_result = result
        try:
            perf = self._performance(st, result)
            self._save_state(st, result)
        finally:
            st.backend.cleanup()
        self.last_performance = perf
        if interrupted is not None:
            raise PlayInterrupted(
                f"{self.url}: interrupted (Ctrl-C) after command {result.last_done_index}",
                perf,
            ) from interrupted
        return perf, result

    def _settle_after_interrupt(self, st: _Stream) -> None:
        """All off at once, then one fresh status: what ran before the stop."""
        try:
            st.session.all_off()
            st.session.poll_status(st.session.cfg.reply_timeout_s)
        except (TransportError, ProtocolError, DeviceShutdown) as err:
            log.info("%s: after the interrupt: %s", self.url, err)

    def _error(self, result: StreamResult, perf: Performance) -> Exception:
        """The exception that ended streaming, carrying the partial performance."""
        err: Exception = result.exc or TransportError(result.error)
        died = self._backend_failure()
        if died and isinstance(err, TransportError | DeviceShutdown | ProtocolError):
            err.args = (f"{err.args[0] if err.args else err}; {died}", *err.args[1:])
            perf.extra["error"] = f"{perf.extra.get('error', '')}; {died}"
        setattr(err, "performance", perf)  # noqa: B010 (exceptions take attributes)
        setattr(err, "stream_result", result)  # noqa: B010
        return err

    def _backend_failure(self) -> str:
        """What died, where the backend can tell (a firmware process that exited)."""
        be = self.last_backend
        fn = getattr(be, "failure", None)
        return str(fn() or "") if callable(fn) else ""

    def _save_state(self, st: _Stream, result: StreamResult) -> None:
        path = self.opts.get("state")
        if not path:
            return
        cmds = st.prefix + st.run.cmds
        total = len(st.plan) if st.plan is not None else len(cmds)
        last = cmds[result.last_done_index] if result.last_done_index >= 0 else None
        ResumeState(
            spec_hash=self.spec.spec_hash,
            plan_commands=total,
            next_index=max(result.resume_index, result.last_done_index + 1),
            note=last.note if last else -1,
            t_us=last.t_us if last else 0,
            reason=result.error,
        ).save(path)

    # ---- the performance -------------------------------------------------------------------
    def _performance(self, st: _Stream, result: StreamResult) -> Performance:
        backend = st.backend
        cmds = st.prefix + st.run.cmds
        tl = st.run.tl
        outs = actuator_outputs(self.spec)
        out_map = {(k, a, ch): act for act, (k, a, ch, _pm) in outs.items()}
        trace = backend.trace(out_map)
        self.last_trace = trace
        errs: list[float] = []
        sensed = trace is not None and self.instrument is not None
        if trace is None or self.instrument is None:
            # real hardware with no sensor: nothing heard, and the report must say so
            # (``heard: null``) rather than call every note unheard
            perf = Performance()
            perf.extra["heard"] = None
            perf.extra["heard_reason"] = (
                f"{self.url} has no sensor: nothing listened to the instrument, so "
                "timing, loudness and unheard notes are unknown (what the firmware "
                "executed is in `commands` and `firmware_counts`)"
            )
        else:
            errs = actuation_errors(cmds, result, trace, tl.t_us_for)
            # the trace has every level: the host build's outputs, and PCA9685 channels
            # (their duty in 1/4096) under simavr; direct AVR pins are on/off (software
            # PWM): their levels are measured from the pin's on-time per period
            binary = (
                {a for a, o in outs.items() if o[0] == OutKind.DIRECT}
                if backend.binary_direct_pins
                else set()
            )
            # (a carriage's changes are its positions: the instrument reads its steps; a
            # servo's are its pulses' widths, µs)
            servos = {a: 65535 for a, o in outs.items() if o[0] == OutKind.SERVO}
            outputs = outputs_from_trace(trace, tl.t_us_for, {**self._pwm_max, **self._travel, **servos},
                                         binary)  # fmt: skip
            perf = self.instrument.hear(outputs)
        perf.link = result.link
        notes = sum(1 for c in cmds[result.start_index :] if c.op is Op.STRIKE)
        link = result.link or {}
        if sensed:
            perf.extra["actuation_error_us"] = error_summary(errs)
        perf.extra.update(
            {
                # records with their framing, resends and the device's ACKs of them ...
                "wire_bytes_per_note": round(
                    (link.get("sched_bytes", 0) + link.get("sched_ack_bytes", 0)) / notes, 2
                )
                if notes
                else 0.0,
                # ... and every byte both ways (keep-alives, clock sync, status included)
                "wire_bytes_per_note_all": round(
                    (link.get("bytes_sent", 0) + link.get("bytes_received", 0)) / notes, 2
                )
                if notes
                else 0.0,
                "commands": result.counts(),
                "short_lead": result.short_lead,
                # underrun: a command that reached the device too late to be played
                "underruns": sum(
                    1 for o in result.outcomes if o.status in ("late", "late_release")
                ),
                "start_index": result.start_index,
                "last_done_index": result.last_done_index,
                "device": {"board": result.device.board, "fw_version": result.device.fw_version}
                if result.device
                else {},
                "firmware_runs": backend.runs,
            }
        )
        if trace is not None and trace.cycles:
            perf.extra["avr_cpu_load"] = round(trace.busy / trace.cycles, 4)
            if trace.wall_s > 0 and trace.clock_hz:
                # simulated s per wall s that simavr achieved (``speed`` only caps it)
                perf.extra["avr_sim_speed"] = round(trace.cycles / trace.clock_hz / trace.wall_s, 4)
        ka = st.session.keepalive
        if ka is not None:
            # the longest the line to the device was quiet: the host's pauses, measured
            perf.extra["keepalive"] = {"thread_sent": ka.sent, "max_quiet_ms": round(ka.max_gap_s * 1e3, 2)}
        if result.reconciliation:
            perf.extra["reconciliation"] = result.reconciliation
            perf.extra["counts_agree"] = bool(result.reconciliation["agree"])
        if result.status:
            perf.extra["firmware_counts"] = {
                k: result.status[k]
                for k in ("next_index", "played", "late", "refused", "flushed", "cutoffs")
                if k in result.status
            }
        if result.error:
            # a run that stopped early: notes none of whose strikes ran are not reached
            # (the report does not call them unheard)
            ran = {
                cmds[o.index].note
                for o in result.outcomes
                if o.status in ("played", "played_cut_off")
            }
            perf.extra["notes_not_reached"] = sorted(
                {c.note for c in cmds[result.start_index :] if c.note >= 0 and c.op is Op.STRIKE}
                - ran
            )
        if result.start_index > 0:
            # notes struck before the resume point: an earlier run played them (the report does not call them unheard)
            def struck(part: Sequence[Command]) -> set[int]:
                return {c.note for c in part if c.note >= 0 and c.op is Op.STRIKE}

            perf.extra["resume_notes_before"] = sorted(
                struck(cmds[: result.start_index]) - struck(cmds[result.start_index :])
            )
        perf.extra.update(backend.extra())
        if result.error:
            perf.extra["error"] = result.error
        return perf

    # ---- state -----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    @property
    def wall_clock(self) -> bool:
        """Whether the stream runs on the wall clock (a real board, the host build): the
        host's own pauses then cost the stream time (``vmcu://`` runs on virtual time,
        ``fw-avr://`` on simavr's)."""
        return self.kind in ("serial", "host")

    def energised(self) -> list[int]:
        """Actuators the last stream's trace leaves on (the firmware's own record)."""
        if self.last_trace is None:
            return []
        level: dict[int, int] = {}
        for _clock, a, lv in sorted(self.last_trace.changes, key=_by_clock):
            level[a] = lv
        # a carriage's changes are its positions or its pulses (driver/trace.py), never a
        # coil left on
        moving = {a for a, o in actuator_outputs(self.spec).items()
                  if o[0] in (OutKind.STEP_DIR, OutKind.SERVO)}  # fmt: skip
        return sorted(a for a, lv in level.items() if lv and a not in moving)

    def close(self) -> None:
        """End a stream that was not drained (everything off, its performance in
        :attr:`last_performance`), then close. Submitting after this is an error."""
        if not self._open:
            return
        self._open = False
        if self._stream is not None:
            self._end(abort="closed before the stream was drained")

    def __enter__(self) -> FirmwareDevice:
        return self

    def __repr__(self) -> str:
        return f"FirmwareDevice({self.url!r}, spec={self.spec.name!r}, open={self._open})"


def open_serial_device(
    url_parts: SplitResult | str, spec: InstrumentSpec, **opts: Any
) -> FirmwareDevice:
    """Real firmware behind ``serial://``, ``socket://``, ``rfc2217://`` or ``loop://``."""
    url = url_of(url_parts)
    return FirmwareDevice(url, spec, "serial", opts, extra_options=("baud",))


__all__ = [
    "DEVICE_OPTIONS",
    "FirmwareDevice",
    "PlayInterrupted",
    "open_serial_device",
    "with_query",
]
