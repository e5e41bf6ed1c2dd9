"""Devices that run the real firmware: ``fw-host://`` and ``fw-avr://``.

- ``fw-host://`` spawns the host build (``firmware/build/host/robo_fw``; built with
  ``make -C firmware host`` when missing), a POSIX process on a pty with a monotonic
  1 MHz clock, and talks to it over that pty with pyserial.
- ``fw-avr://`` spawns the simavr harness (``firmware/build/sim/robo_sim``) on the AVR
  ELF (``make -C firmware avr sim``); the ATmega2560's UART0 is on a pty.

``play(plan)`` opens a :class:`~robo_player.driver.stream.Session` (identify,
configure from the spec, clock sync), streams the plan, stops the firmware and reads
its actuation trace. Each actuation's MCU clock becomes performance time through the
session's timeline and goes to the piano physics as a
:class:`~robo_player.sim.physics.CoilEvent`, so the report still has heard notes.
``Performance.link`` gets the link statistics; ``Performance.extra`` gets
``actuation_error_us`` {mean, p99, max} (trace time against planned time),
``wire_bytes_per_note``, the command accounting and, for the AVR, its CPU load.

Options (query string or keyword arguments): ``truth_seed`` (0), ``sensor_seed`` (0),
``ppm`` (host build: clock error, default 0), ``speed`` (simavr: simulated s per wall s,
default 0.15: the driver then runs on simulated time), ``start_index`` (resume from this plan command), ``state`` (file where the
last executed command is saved, for ``play --resume``), ``trace_dir`` (keep the traces
there), ``lead`` (s, buffered ahead, default 1.0), ``watchdog_ms`` (90),
``level_shift`` (0), ``pca_bus`` (simavr: the PCA9685 addresses on the simulated
bus, comma-separated, or ``none``; default the spec's boards), and the fault options of
:mod:`.faults`.
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

import serial

from ..errors import PlanError, TransportError
from ..plan import Op as PlanOp
from ..plan import Plan
from ..protocol.messages import OutKind
from ..spec.model import DriverKind, PianoSpec
from .faults import FAULT_OPTIONS, FaultSpec, FaultStats, FaultyTransport
from .ports import Performance, Progress
from .stream import (
    ResumeState,
    Session,
    StreamConfig,
    StreamResult,
    actuator_outputs,
)
from .transport import SerialTransport, Transport

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
HOST_BIN = FIRMWARE_DIR / "build" / "host" / "robo_fw"
SIM_BIN = FIRMWARE_DIR / "build" / "sim" / "robo_sim"
AVR_ELF = FIRMWARE_DIR / "build" / "avr" / "robo_fw.elf"
# simavr keeps about 1x real time at best on a small machine, and much less with its
# UART busy; paced slower, its clock stays steady (the driver runs on simulated time)
AVR_SPEED = 0.15

_OPTIONS = (
    "truth_seed",
    "sensor_seed",
    "ppm",
    "speed",
    "start_index",
    "state",
    "trace_dir",
    "elf",
    "lead",
    "watchdog_ms",
    "level_shift",
    "seed",
    "baud",
    "queue",
    "pca_bus",
    *FAULT_OPTIONS,
)


def ensure_built(kind: str) -> list[Path]:
    """Build the firmware pieces ``kind`` needs (host | avr) if they are missing."""
    need = [HOST_BIN] if kind == "host" else [SIM_BIN, AVR_ELF]
    missing = [p for p in need if not p.exists()]
    if not missing:
        return need
    targets = ["host"] if kind == "host" else ["avr", "sim"]
    if shutil.which("make") is None:
        raise TransportError(f"fw-{kind}://: {missing[0]} is missing and there is no make")
    log.info("building firmware: make -C %s %s", FIRMWARE_DIR, " ".join(targets))
    r = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), *targets], capture_output=True, text=True, check=False
    )
    still = [p for p in need if not p.exists()]
    if r.returncode or still:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise TransportError(
            f"fw-{kind}://: cannot build the firmware (make -C firmware {' '.join(targets)} "
            f"exit {r.returncode}): {' | '.join(tail)}"
        )
    return need


@dataclass(slots=True)
class Incarnation:
    """One run of the firmware process (a reset starts a new one)."""

    proc: subprocess.Popen[bytes]
    pty: str
    trace: Path
    clock_file: Path | None = None  # simavr: the shared cycle count (``--clock-file``)


class SimClock:
    """Simulated seconds, read from the simavr harness's shared cycle count.

    The harness stores its cycle count after every instruction in ``--clock-file``
    (``RPCK``, clock Hz u32, cycles u64). The driver's clock is that count / Hz: exactly
    the MCU's clock, however fast simavr happens to run (``--speed`` only caps it). If
    the count stops moving for ``stall_s`` wall seconds (the process died, is being
    restarted, or is starved of CPU), time goes on at ``speed`` per wall second so that
    the driver's timeouts still expire; when the count moves again (or a new run starts
    from 0) the clock continues from where it was, never backwards.
    """

    MAGIC = b"RPCK"

    def __init__(
        self,
        fw: FirmwareProcess,
        speed: float,
        stall_s: float = 2.0,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fw = fw
        self.speed = speed
        self.stall_s = stall_s
        self.wall = wall
        self._inc: Incarnation | None = None
        self._mm: mmap.mmap | None = None
        self._hz = 16_000_000
        self._cycles = 0  # last count read (of the current run)
        self._moved_wall = wall()  # wall time it last moved
        self._offset = 0.0  # s added to cycles / Hz (earlier runs, stalls)
        self._last = 0.0  # last time handed out
        self._stalled = False
        self.stalls = 0  # times the count stood still for stall_s

    def _map(self) -> mmap.mmap | None:
        inc = self.fw.runs[-1] if self.fw.runs else None
        if inc is not self._inc:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            self._inc = inc
            self._cycles = 0
            self._stalled = True  # a new run: continue from the last time handed out
        if self._mm is None and inc is not None and inc.clock_file is not None:
            try:
                with open(inc.clock_file, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 16, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                return None  # not written yet
            if mm[:4] != self.MAGIC:
                mm.close()
                return None
            self._hz = struct.unpack_from("<I", mm, 4)[0] or self._hz
            self._mm = mm
        return self._mm

    def _read(self) -> int | None:
        mm = self._map()
        if mm is None:
            return None
        a = struct.unpack_from("<Q", mm, 8)[0]
        b = struct.unpack_from("<Q", mm, 8)[0]
        # the harness stores the count atomically; a second read guards a torn one
        return b if 0 <= b - a < 1 << 31 else struct.unpack_from("<Q", mm, 8)[0]

    def __call__(self) -> float:
        w = self.wall()
        c = self._read()
        if c is not None and c != self._cycles:
            if self._stalled or c < self._cycles:
                self._offset = self._last - c / self._hz  # go on from where we were
                self._stalled = False
            self._cycles = c
            self._moved_wall = w
            t = c / self._hz + self._offset
        else:
            t = self._cycles / self._hz + self._offset
            idle = w - self._moved_wall
            if idle > self.stall_s:
                if not self._stalled:
                    self.stalls += 1
                    log.info("simavr's clock stood still for %.2f s of wall time", idle)
                self._stalled = True
                t = max(t, self._last) + (idle - self.stall_s) * self.speed
                self._moved_wall = w - self.stall_s  # extrapolate from here next time
        self._last = max(self._last, t)
        return self._last

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None


class FirmwareProcess:
    """Spawns the firmware (host build or simavr harness) and hands out its pty."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        *,
        ppm: float = 0.0,
        speed: float = 1.0,
        elf: Path | None = None,
        pca: tuple[int, ...] | None = None,
    ) -> None:
        self.kind = kind
        self.workdir = workdir
        self.ppm = ppm
        self.speed = speed
        self.elf = elf
        # the PCA9685 boards the simavr harness puts on the I2C bus (--pca); None: its
        # default (0x40..0x47); () none at all
        self.pca = pca
        self.runs: list[Incarnation] = []

    def _argv(self, trace: Path, clock_file: Path | None) -> list[str]:
        if self.kind == "host":
            (binary,) = ensure_built("host")
            return [str(binary), "--trace", str(trace), "--clock-ppm", repr(self.ppm)]
        sim, elf = ensure_built("avr")
        if self.elf is not None:
            elf = self.elf
        argv = [str(sim), "--elf", str(elf), "--trace", str(trace), "--speed", repr(self.speed)]
        if self.pca is not None:
            argv += ["--pca", ",".join(f"{a:#04x}" for a in self.pca) or "none"]
        return [*argv, "--clock-file", str(clock_file)] if clock_file else argv

    def start(self, timeout_s: float = 10.0) -> Incarnation:
        trace = self.workdir / f"trace{len(self.runs)}.txt"
        clock_file = self.workdir / f"clock{len(self.runs)}.bin" if self.kind == "avr" else None
        argv = self._argv(trace, clock_file)
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        text = ""
        while not text.startswith("PTY "):  # simavr prints its loader's chatter first
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                r, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
                if not r:
                    proc.kill()
                    raise TransportError(
                        f"fw-{self.kind}://: {argv[0]} did not print 'PTY <path>' within "
                        f"{timeout_s:.0f} s (it printed: {' | '.join(seen[-3:])!r})"
                    )
                ch = os.read(proc.stdout.fileno(), 1)  # unbuffered: select sees what is left
                if not ch:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    raise TransportError(
                        f"fw-{self.kind}://: {argv[0]} exited ({proc.wait()}): {err}"
                    )
                line += ch
            text = line.decode(errors="replace").strip()
            seen.append(text)
        inc = Incarnation(proc, text[4:], trace, clock_file)
        self.runs.append(inc)
        log.debug("fw-%s: pid %d on %s, trace %s", self.kind, proc.pid, inc.pty, trace)
        return inc

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (the firmware turns everything off and closes its trace), then wait."""
        for inc in self.runs:
            p = inc.proc
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for s in (p.stdout, p.stderr):
                if s is not None:
                    s.close()

    @property
    def alive(self) -> bool:
        return bool(self.runs) and self.runs[-1].proc.poll() is None


class FirmwarePort:
    """The pty of the current firmware run as a transport; :meth:`reset` restarts it."""

    def __init__(self, fw: FirmwareProcess) -> None:
        self.fw = fw
        self.url = f"fw-{fw.kind}://"
        # the host build's pty has no line rate; simavr's UART runs at 115200 baud of
        # simulated time (the driver runs on simulated time too, see _ProcessBackend)
        self.baud = 115200 if fw.kind == "avr" else 0
        self.time_scale = fw.speed if fw.kind == "avr" and fw.speed > 0 else 1.0
        self._ser: SerialTransport | None = None
        self._open_current()

    def _open_current(self) -> None:
        inc = self.fw.runs[-1] if self.fw.runs else self.fw.start()
        try:
            port = serial.Serial(inc.pty, baudrate=115200, timeout=0.1, write_timeout=2.0)
        except (serial.SerialException, OSError) as err:
            raise TransportError(f"{self.url}: cannot open pty {inc.pty}: {err}") from err
        self._ser = SerialTransport(port, self.url, 0)

    def reset(self) -> None:
        """The MCU resets (new boot id, new clock, empty queue). simavr: the harness's
        RESET pin (SIGUSR1): the firmware boots again while the simulated PCA9685 boards
        keep their outputs and the pty stays open, as on a real board; one trace goes on.
        The host build: the process is killed and started again."""
        cur = self.fw.runs[-1]
        if self.fw.kind == "avr" and cur.proc.poll() is None:
            cur.proc.send_signal(signal.SIGUSR1)
            return
        if self._ser is not None:
            self._ser.close()
        if cur.proc.poll() is None:
            cur.proc.send_signal(signal.SIGTERM)
            try:
                cur.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                cur.proc.kill()
        self.fw.start()
        self._open_current()

    @property
    def is_open(self) -> bool:
        return self._ser is not None and self._ser.is_open

    def write(self, data: bytes) -> None:
        assert self._ser is not None
        self._ser.write(data)

    def read(self, timeout: float) -> bytes:
        """``timeout`` in the device's seconds (simavr: simulated, ``time_scale`` per wall s)."""
        assert self._ser is not None
        wall = max(0.0, timeout) / self.time_scale
        if not self.fw.alive:
            time.sleep(wall)
            return b""
        return self._ser.read(wall)

    def close(self) -> None:
        if self._ser is not None:
            self._ser.close()


# ---- traces ---------------------------------------------------------------------------
@dataclass(slots=True)
class Trace:
    """Output changes of one firmware run: ``(clock, actuator, level)``."""

    clock_hz: int = 0
    boot_id: int = 0
    changes: list[tuple[int, int, int]] = field(default_factory=list)
    cycles: int = 0  # simavr: total cycles
    busy: int = 0  # simavr: cycles awake
    wall_s: float = 0.0  # simavr: wall seconds it ran (cycles / clock_hz / wall_s = its speed)
    # simavr: (cycles, busy) at each simulated second
    samples: list[tuple[int, int]] = field(default_factory=list)
    # simavr: trace clocks of the MCU's resets (the harness's RESET pin; the boards stay)
    resets: list[int] = field(default_factory=list)
    exited: bool = False

    def busy_between(self, start: int, end: int) -> list[float]:
        """The CPU's awake share in each simulated second that lies wholly within
        cycles ``start..end`` (simavr traces only; empty when none does). The trace's
        clocks count from Timer1's start, a few hundred cycles after the CPU's."""
        return [
            (b1 - b0) / (c1 - c0)
            for (c0, b0), (c1, b1) in pairwise(self.samples)
            if c0 >= start and c1 <= end and c1 > c0
        ]


def read_trace(path: Path, out_map: dict[tuple[int, int, int], int] | None = None) -> Trace:
    """Parse a host (``clock actuator level``) or simavr (``clock kind addr channel level``)
    trace; ``out_map`` maps (kind, addr, channel) to the actuator for the latter."""
    t = Trace()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise TransportError(f"{path}: cannot read the firmware trace: {err.strerror}") from err
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            words = line[1:].split()
            for w in words:
                k, _, v = w.partition("=")
                if k == "clock_hz":
                    t.clock_hz = int(v)
                elif k == "boot_id":
                    t.boot_id = int(v, 0)
            if len(words) >= 4 and words[0] == "cycles" and words[2] == "busy":
                t.cycles, t.busy = int(words[1]), int(words[3])
                t.samples.append((t.cycles, t.busy))
                if len(words) >= 6 and words[4] == "wall":
                    t.wall_s = float(words[5])
            if words[:3] == ["mcu", "reset", "at"] and len(words) >= 7:
                t.resets.append(int(words[6]))
            if words[:1] == ["exit"]:
                t.exited = True
            continue
        f = line.split()
        try:
            if len(f) == 3:
                t.changes.append((int(f[0]), int(f[1]), int(f[2])))
            elif len(f) == 5:
                key = (int(f[1]), int(f[2]), int(f[3]))
                a = (out_map or {}).get(key)
                if a is not None:
                    t.changes.append((int(f[0]), a, int(f[4])))
            elif f:
                raise ValueError(f"{len(f)} fields")
        except ValueError as err:
            raise TransportError(f"{path}:{n}: bad trace line {line!r}: {err}") from err
    return t


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def actuation_errors(
    plan: Plan, result: StreamResult, trace: Trace, t_us_for: Any, binary_levels: bool
) -> tuple[list[float], list[tuple[int, int, float]]]:
    """Match each sent command to its output change in the trace.

    Returns the errors (µs: trace time in performance time minus planned time) and the
    coil events ``(t_us, actuator, duty)`` the trace implies. With ``binary_levels``
    (direct AVR pins: on/off only) the duty comes from the planned command.
    """
    by_act: dict[int, list[tuple[int, int]]] = {}
    for clock, a, level in trace.changes:
        by_act.setdefault(a, []).append((clock, level))
    pos: dict[int, int] = dict.fromkeys(by_act, 0)
    errs: list[float] = []
    # a command runs within the firmware's late slack of its clock, or is reported late
    slack_us = result.device.late_slack_us if result.device else 10_000
    window = (slack_us + 2000) * trace.clock_hz // 1_000_000
    cmds = plan.commands
    for o in result.outcomes:
        if o.status not in ("played", "played_cut_off") or o.device_index < 0:
            continue
        c = cmds[o.index]
        seq = by_act.get(c.actuator)
        if not seq:
            continue
        want_on = c.op is PlanOp.PULSE_HOLD or (c.op is PlanOp.SET and c.drive > 0)
        i = pos[c.actuator]
        # the next change of this actuator at (about) the scheduled clock, on or off as asked
        while i < len(seq) and seq[i][0] < o.clock - window:
            i += 1
        j = i
        while j < len(seq) and seq[j][0] <= o.clock + window:
            if (seq[j][1] > 0) == want_on:
                errs.append(t_us_for(seq[j][0]) - c.t_us)
                pos[c.actuator] = j + 1
                break
            j += 1
    return errs, []


class FirmwareDevice:
    """A :class:`~robo_player.driver.ports.Device` running the real firmware."""

    def __init__(self, url: str, spec: PianoSpec, kind: str, opts: dict[str, Any]) -> None:
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise TransportError(
                f"{url}: unknown option {unknown[0]!r} (allowed: {', '.join(_OPTIONS)})"
            )
        self.url = url
        self.spec = spec
        self.kind = kind
        self.opts = opts
        self.faults = FaultSpec.from_options(opts, url)
        self.last_result: StreamResult | None = None
        self.last_backend: _Backend | None = None  # the last play's firmware (tests, bench)
        self.last_faults: FaultStats | None = None  # what the fault injection did
        self.last_session: Session | None = None
        self.last_trace: Trace | None = None  # the first firmware run's actuations
        self._open = True

    def _num(self, name: str, default: float, lo: float, hi: float) -> float:
        raw = self.opts.get(name, default)
        try:
            v = float(raw)
        except (TypeError, ValueError) as err:
            raise TransportError(f"{self.url}: option {name}={raw!r} is not a number") from err
        if not lo <= v <= hi:
            raise TransportError(f"{self.url}: option {name}={v} out of range (allowed {lo}..{hi})")
        return v

    def _path(self, name: str) -> Path | None:
        raw = self.opts.get(name)
        if not raw:
            return None
        p = Path(str(raw))
        if not p.is_file():
            raise TransportError(f"{self.url}: option {name}={raw!s}: no such file")
        return p

    def stream_config(self) -> StreamConfig:
        lead = self._num("lead", 1.0, 0.2, 10.0)
        wd = int(self._num("watchdog_ms", 90, 20, 10_000))
        return StreamConfig(
            lead_max_s=lead,
            lead_min_s=min(0.25, lead / 2),
            watchdog_ms=wd,
            keepalive_s=wd / 3000,
            level_shift=int(self._num("level_shift", 0, 0, 4)),
        )

    def play(self, plan: Plan, progress: Progress | None = None) -> Performance:
        if not self._open:
            raise TransportError(f"{self.url}: device is closed")
        if plan.spec_hash and plan.spec_hash != self.spec.spec_hash:
            raise PlanError(
                f"{self.url}: plan was made for spec {plan.spec_name!r} (hash {plan.spec_hash}), "
                f"this device is {self.spec.name!r} (hash {self.spec.spec_hash})"
            )
        start_index = int(self._num("start_index", 0, 0, max(0, len(plan))))
        backend = self._backend()
        self.last_backend = backend
        self.last_faults = None
        result: StreamResult | None = None
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
            if faulty is not None:
                faulty.arm()
            result = session.stream(plan, start_index, progress)
            session.close()
        finally:
            if session is not None and result is None:
                session.close()
            backend.stop()
        self.last_result = result
        perf = self._performance(plan, result, session, backend)
        self._save_state(plan, result)
        backend.cleanup()
        if result.error:
            raise self._error(result, perf)
        return perf

    def _pca_addresses(self) -> tuple[int, ...]:
        """The spec's PCA9685 boards: the simavr harness models these and no others, so
        a write to any other address is NACKed (and counted), never silently taken.
        Option ``pca_bus`` puts other boards on the bus (a missing board, a test)."""
        raw = self.opts.get("pca_bus")
        if raw is not None:
            text = str(raw).strip().lower()
            if text == "none":
                return ()
            try:
                addrs = tuple(int(a, 0) for a in text.split(","))
            except ValueError as err:
                raise TransportError(
                    f"{self.url}: option pca_bus={raw!s}: not a comma-separated list of "
                    "I2C addresses (or none)"
                ) from err
            for a in addrs:
                if not 0x08 <= a <= 0x77:
                    raise TransportError(
                        f"{self.url}: option pca_bus: address {a:#04x} out of range "
                        "(allowed 0x08..0x77)"
                    )
            return addrs
        return tuple(
            sorted(
                b.i2c_address
                for b in self.spec.boards
                if b.kind is DriverKind.PCA9685 and b.i2c_address is not None
            )
        )

    def _backend(self) -> _Backend:
        if self.kind in ("host", "avr"):
            return _ProcessBackend(
                self.kind,
                self.opts.get("trace_dir"),
                ppm=self._num("ppm", 0.0, -1000, 1000),
                speed=self._num("speed", AVR_SPEED, 0.01, 100.0),
                elf=self._path("elf"),
                pca=self._pca_addresses() if self.kind == "avr" else None,
            )
        if self.kind == "vmcu":
            return _VirtualBackend(
                queue=int(self._num("queue", 64, 1, 65535)),
                seed=int(self._num("seed", 0, 0, 2**32 - 1)),
                baud=int(self._num("baud", 115200, 0, 20_000_000)),
                drift_ppm=self._num("ppm", 0.0, -1000, 1000),
            )
        return _SerialBackend(self.url)

    def _error(self, result: StreamResult, perf: Performance) -> Exception:
        """The exception that ended streaming, carrying the partial performance."""
        err: Exception = result.exc or TransportError(result.error)
        setattr(err, "performance", perf)  # noqa: B010 (exceptions take attributes)
        setattr(err, "stream_result", result)  # noqa: B010
        return err

    def _save_state(self, plan: Plan, result: StreamResult) -> None:
        path = self.opts.get("state")
        if not path:
            return
        nxt = result.last_done_index + 1
        last = plan.commands[result.last_done_index] if result.last_done_index >= 0 else None
        ResumeState(
            spec_hash=self.spec.spec_hash,
            plan_commands=len(plan),
            next_index=nxt,
            note=last.note if last else -1,
            t_us=last.t_us if last else 0,
            reason=result.error,
        ).save(path)

    def _performance(
        self, plan: Plan, result: StreamResult, session: Session | None, backend: _Backend
    ) -> Performance:
        from ..sim.physics import PianoPhysics
        from ..sim.sensor import Microphone
        from ..sim.truth import Truth

        assert session is not None and session.timeline is not None
        tl = session.timeline
        outs = actuator_outputs(self.spec)
        out_map = {(k, a, ch): act for act, (k, a, ch, _pm) in outs.items()}
        pwm = {act: pm for act, (_k, _a, _ch, pm) in outs.items()}
        first = backend.trace(out_map)
        self.last_trace = first
        if first is None:  # real hardware: no trace, nothing heard unless a sensor says so
            errs: list[float] = []
            perf = Performance()
        else:
            errs, _ = actuation_errors(plan, result, first, tl.t_us_for, self.kind == "avr")
            events = self._coil_events(plan, result, first, tl.t_us_for, pwm)
            truth = Truth.draw(self.spec, int(self._num("truth_seed", 0, 0, 2**32 - 1)))
            perf = PianoPhysics(self.spec, truth).run(events)
            mic = Microphone(int(self._num("sensor_seed", 0, 0, 2**32 - 1)))
            perf.heard = mic.hear(perf.heard)
        perf.link = result.link
        notes = sum(1 for c in plan.commands[result.start_index :] if c.op is PlanOp.STRIKE)
        abs_err = [abs(e) for e in errs]
        perf.extra.update(
            {
                "pipeline_delay_us": plan.pipeline_delay_us,
                "actuation_error_us": {
                    "mean": round(sum(abs_err) / len(abs_err), 2) if abs_err else 0.0,
                    "p99": round(_percentile(abs_err, 0.99), 2),
                    "max": round(max(abs_err), 2) if abs_err else 0.0,
                    "matched": len(errs),
                },
                # records with their framing, resends and the device's ACKs of them ...
                "wire_bytes_per_note": round(
                    (result.link["sched_bytes"] + result.link["sched_ack_bytes"]) / notes, 2
                )
                if notes
                else 0.0,
                # ... and every byte both ways (keep-alives, clock sync, status included)
                "wire_bytes_per_note_all": round(
                    (result.link["bytes_sent"] + result.link["bytes_received"]) / notes, 2
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
        if first is not None and first.cycles:
            perf.extra["avr_cpu_load"] = round(first.busy / first.cycles, 4)
            if first.wall_s > 0 and first.clock_hz:
                # simulated s per wall s that simavr achieved (``speed`` only caps it)
                perf.extra["avr_sim_speed"] = round(first.cycles / first.clock_hz / first.wall_s, 4)
        clock = getattr(backend, "clock", None)
        if isinstance(clock, SimClock):
            # times simavr stood still and the driver's clock went on without it: under a
            # loaded CPU, the cause of a DeviceTimeout on fw-avr:// that real time lacks
            perf.extra["avr_clock_stalls"] = clock.stalls
        if result.error:
            perf.extra["error"] = result.error
        return perf

    def _coil_events(
        self, plan: Plan, result: StreamResult, trace: Trace, t_us_for: Any, pwm: dict[int, int]
    ) -> list[Any]:
        from ..sim.physics import CoilEvent

        out: list[CoilEvent] = []
        # the trace has every level: the host build's outputs, and PCA9685 channels (their
        # duty in 1/4096) under simavr; direct AVR pins are on/off only
        if self.kind != "avr":
            leveled = set(pwm)
        else:
            leveled = {a for a, o in actuator_outputs(self.spec).items() if o[0] == OutKind.PCA9685}
        for clock, a, level in trace.changes:
            t = round(t_us_for(clock))
            if t >= 0 and a in pwm and a in leveled:
                out.append(CoilEvent(t, a, min(1.0, level / pwm[a])))
        # direct AVR pins: take the drive and the pulse from the plan
        cmds = plan.commands
        planned: dict[int, list[int]] = {}
        for o in result.outcomes:
            if o.status in ("played", "played_cut_off") and cmds[o.index].actuator not in leveled:
                planned.setdefault(cmds[o.index].actuator, []).append(o.index)
        for a, idxs in planned.items():
            ons = [(c, lv) for c, act, lv in trace.changes if act == a]
            k = 0
            for clock, lv in ons:
                t = round(t_us_for(clock))
                if lv == 0:
                    out.append(CoilEvent(t, a, 0.0))
                    continue
                while k < len(idxs) and cmds[idxs[k]].op is PlanOp.RELEASE:
                    k += 1
                if k >= len(idxs):
                    break
                c = cmds[idxs[k]]
                k += 1
                pm = pwm.get(a, 1)
                if c.op is PlanOp.SET:
                    out.append(CoilEvent(t, a, c.drive / pm))
                else:
                    out.append(CoilEvent(t, a, c.drive / pm))
                    out.append(CoilEvent(t + c.pulse_us, a, c.hold / pm))
        out = [e for e in out if e.t_us >= 0]
        out.sort(key=lambda e: (e.t_us, e.actuator))
        return out

    @property
    def is_open(self) -> bool:
        return self._open

    def energised(self) -> list[int]:
        """Actuators the last play's trace leaves on (the firmware's own record)."""
        if self.last_trace is None:
            return []
        level: dict[int, int] = {}
        for _clock, a, lv in sorted(self.last_trace.changes):
            level[a] = lv
        return sorted(a for a, lv in level.items() if lv)

    def close(self) -> None:
        self._open = False

    def __enter__(self) -> FirmwareDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Backend:
    """Where the firmware runs: starts it, gives its transport, collects its trace."""

    @property
    def runs(self) -> int:
        """Firmware runs so far (a reset starts another)."""
        return 1

    def start(self) -> tuple[Transport, Callable[[], None] | None, Callable[[], float]]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the firmware (its outputs go off) so that the trace is complete."""

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        return None

    def cleanup(self) -> None:
        """Remove what start() made."""


class _ProcessBackend(_Backend):
    def __init__(
        self,
        kind: str,
        keep: str | None,
        *,
        ppm: float,
        speed: float,
        elf: Path | None = None,
        pca: tuple[int, ...] | None = None,
    ) -> None:
        self.keep = keep
        self.workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=f"robo_fw_{kind}_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fw = FirmwareProcess(kind, self.workdir, ppm=ppm, speed=speed, elf=elf, pca=pca)
        self.clock: SimClock | None = None

    @property
    def runs(self) -> int:
        return len(self.fw.runs)

    def start(self) -> tuple[Transport, Callable[[], None] | None, Callable[[], float]]:
        self.fw.start()
        port = FirmwarePort(self.fw)
        if self.fw.kind != "avr":
            return port, port.reset, time.perf_counter
        # the driver works in simulated seconds, read from simavr's own cycle count, so
        # performance time, lead, watchdog, baud and clock sync all agree with the MCU
        self.clock = SimClock(self.fw, port.time_scale)
        return port, port.reset, self.clock

    # simulated time the harness runs on after the last status before it is stopped: a
    # PCA9685 change shows at the end of the chip's PWM period (up to 41 ms at the
    # slowest prescale), after the driver's drain has seen the command's clock pass
    settle_s = 0.05

    def stop(self) -> None:
        if self.clock is not None and self.fw.alive:
            end = self.clock() + self.settle_s
            deadline = time.monotonic() + 5.0  # wall: a stuck harness is stopped anyway
            while self.clock() < end and self.fw.alive and time.monotonic() < deadline:
                time.sleep(0.01)
        self.fw.stop()
        if self.clock is not None:
            self.clock.close()

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        return read_trace(self.fw.runs[0].trace, out_map) if self.fw.runs else None

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _VirtualBackend(_Backend):
    """The virtual MCU (:mod:`.vmcu`) on virtual time: the sim's physics behind a link."""

    def __init__(self, *, queue: int, seed: int, baud: int, drift_ppm: float) -> None:
        from .vmcu import MCUConfig, VirtualWorld

        cfg = MCUConfig(drift_ppm=drift_ppm, queue_size=queue)
        self.world = VirtualWorld(cfg, baud=baud, seed=seed)

    def start(self) -> tuple[Transport, Callable[[], None] | None, Callable[[], float]]:
        from .vmcu import VirtualPort

        port = VirtualPort(self.world)
        return port, self.world.reset_mcu, port.now

    def stop(self) -> None:
        # let the device run out its queue and its watchdog, as a real one would
        self.world.advance(self.world.t + 1.0, stop_on_rx=False)

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        t = Trace(clock_hz=self.world.mcu.cfg.clock_hz)
        for clock, a, level in self.world.mcu.trace:
            if clock < 0:  # a reset: later clocks belong to another boot
                break
            t.changes.append((clock, a, level))
        return t


class _SerialBackend(_Backend):
    def __init__(self, url: str) -> None:
        self.url = url

    def start(self) -> tuple[Transport, Callable[[], None] | None, Callable[[], float]]:
        from .transport import open_transport

        parts = urlsplit(self.url)
        keep = {k: v for k, v in parse_qsl(parts.query) if k == "baud"}
        url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if keep:
            url += "?" + urlencode(keep)
        return open_transport(url), None, time.perf_counter


def _url(parts: SplitResult | str) -> str:
    return parts if isinstance(parts, str) else parts.geturl()


def _with_query(parts: SplitResult | str, opts: dict[str, Any]) -> dict[str, Any]:
    """The URL's query options, overridden by the keyword ones (``open_port`` passes both)."""
    query = urlsplit(parts).query if isinstance(parts, str) else parts.query
    merged: dict[str, Any] = dict(parse_qsl(query))
    merged.update({k: v for k, v in opts.items() if v is not None})
    return merged


def open_fw_host(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    return FirmwareDevice(_url(url_parts), spec, "host", _with_query(url_parts, opts))


def open_fw_avr(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    return FirmwareDevice(_url(url_parts), spec, "avr", _with_query(url_parts, opts))


def open_vmcu(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    """The virtual MCU with the simulator's physics (``seed``, ``baud``, ``ppm``, ``queue``)."""
    return FirmwareDevice(_url(url_parts), spec, "vmcu", _with_query(url_parts, opts))


def open_serial_device(
    url_parts: SplitResult | str, spec: PianoSpec, **opts: Any
) -> FirmwareDevice:
    """Real firmware behind ``serial://``, ``socket://``, ``rfc2217://`` or ``loop://``."""
    return FirmwareDevice(_url(url_parts), spec, "serial", opts)


__all__ = [
    "FirmwareDevice",
    "open_fw_avr",
    "open_fw_host",
    "open_serial_device",
    "open_vmcu",
    "read_trace",
]
