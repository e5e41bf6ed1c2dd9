"""Simulated MCUs as processes: the host build and the simavr harness on a pty.

- ``fw-host://``: the host build (``firmware/build/host/robo_fw``; built with
  ``make -C firmware host`` when missing), a POSIX process on a pty with a monotonic
  1 MHz clock;
- ``fw-avr://``: the simavr harness (``firmware/build/sim/robo_sim``) on the AVR ELF
  (``make -C firmware avr sim``); the ATmega2560's UART0 is on a pty, its clock is
  read through :class:`~.simclock.SimClock`.

:class:`ProcessBackend` is the driver's :class:`~robo_player.driver.backends.Backend`
for both: it starts the process, hands out its pty as a transport (with a reset hook),
stops it so that its trace is complete, and reads that trace.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import serial

from ..driver.backends import Backend, StartResult
from ..driver.trace import Trace, TraceReader
from ..driver.transport import SerialTransport
from ..errors import TransportError
from .simclock import SimClock

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
HOST_BIN = FIRMWARE_DIR / "build" / "host" / "robo_fw"
SIM_BIN = FIRMWARE_DIR / "build" / "sim" / "robo_sim"
AVR_ELF = FIRMWARE_DIR / "build" / "avr" / "robo_fw.elf"
# simavr keeps about 1x real time at best on a small machine, and much less with its
# UART busy; paced slower, its clock stays steady (the driver runs on simulated time)
AVR_SPEED = 0.15


def ensure_built(kind: str) -> list[Path]:
    """Build the firmware pieces ``kind`` needs (host | avr) if they are missing or older
    than their sources (make's own dependency rules decide; a binary left from an
    earlier protocol version would otherwise speak the old wire format)."""
    need = [HOST_BIN] if kind == "host" else [SIM_BIN, AVR_ELF]
    targets = [str(p.relative_to(FIRMWARE_DIR)) for p in need]
    missing = [p for p in need if not p.exists()]
    if shutil.which("make") is None or not (FIRMWARE_DIR / "Makefile").is_file():
        if missing:
            raise TransportError(
                f"fw-{kind}://: {missing[0]} is missing and there is no make or firmware source"
            )
        return need
    up_to_date = subprocess.run(
        ["make", "-q", "-C", str(FIRMWARE_DIR), *targets], capture_output=True, check=False
    )
    if up_to_date.returncode == 0 and not missing:
        return need
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
        realtime: bool = False,
    ) -> None:
        self.kind = kind
        # the host build asks for the OS's real-time class (else a higher priority) so
        # that a busy machine delays its outputs less; its trace says what it got
        self.realtime = realtime
        self.workdir = workdir
        self.ppm = ppm
        self.speed = speed
        self.elf = elf
        # the PCA9685 boards the simavr harness puts on the I2C bus (--pca); None: its
        # default (0x40..0x47); () none at all
        self.pca = pca
        self.runs: list[Incarnation] = []

    def _argv(self, trace: Path, clock_file: Path | None) -> list[str]:
        # --parent: the process exits (every output off) once we are gone, even killed
        # by SIGKILL, when nothing of ours could stop it (firmware/README.md)
        parent = ["--parent", str(os.getpid())]
        if self.kind == "host":
            (binary,) = ensure_built("host")
            return [str(binary), "--trace", str(trace), "--clock-ppm", repr(self.ppm), *parent,
                    "--realtime", str(int(self.realtime))]  # fmt: skip
        sim, elf = ensure_built("avr")
        if self.elf is not None:
            elf = self.elf
        argv = [str(sim), "--elf", str(elf), "--trace", str(trace), "--speed", repr(self.speed),
                *parent]  # fmt: skip
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



class ProcessBackend(Backend):
    """The host build or the simavr harness, one process per stream (a reset may start
    another: the host build's reset restarts it)."""

    def __init__(
        self,
        kind: str,
        keep: str | None,
        *,
        ppm: float,
        speed: float,
        elf: Path | None = None,
        pca: tuple[int, ...] | None = None,
        realtime: bool = False,
    ) -> None:
        self.keep = keep
        self.workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=f"robo_fw_{kind}_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fw = FirmwareProcess(
            kind, self.workdir, ppm=ppm, speed=speed, elf=elf, pca=pca, realtime=realtime
        )
        self.clock: SimClock | None = None
        self._reader: TraceReader | None = None  # the first run's trace, read as it grows
        # the AVR build's direct pins are on/off (software PWM, firmware/boards/avr/out_pwm.c);
        # the host build traces every level
        self.binary_direct_pins = kind == "avr"

    @property
    def runs(self) -> int:
        return len(self.fw.runs)

    def start(self) -> StartResult:
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

    # a process's trace is read up to this long before now while it runs: the host
    # build flushes it on every pass of its loop (at least every 5 ms), which a busy
    # machine may delay; simavr writes line by line on its own (simulated) clock
    live_margin_us = 50_000

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        """The first run's trace: while the process runs, the lines it has written so far
        (the file only grows: each call reads on from where the last one stopped); once
        it has stopped, all of it."""
        if not self.fw.runs:
            return None
        if self._reader is None:
            self._reader = TraceReader(self.fw.runs[0].trace, out_map)
        first = self.fw.runs[0].proc
        tr = self._reader.read(final=first.poll() is not None)
        if self.binary_direct_pins:  # the AVR's direct pins: on/off under software PWM
            tr.soft_pwm = {a for (kind, _addr, _ch), a in out_map.items() if kind == 0}
        return tr

    def extra(self) -> dict[str, object]:
        if self.clock is None:
            return {}
        # times simavr stood still and the driver's clock went on without it: under a
        # loaded CPU, the cause of a DeviceTimeout on fw-avr:// that real time lacks
        return {"avr_clock_stalls": self.clock.stalls}

    def failure(self) -> str | None:
        """The firmware process that exited by itself (killed, crashed), by name."""
        for inc in self.fw.runs:
            rc = inc.proc.poll()
            if rc is not None and rc != 0 and rc != -signal.SIGTERM:
                how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
                return f"the {self.fw.kind} firmware process (pid {inc.proc.pid}) {how}"
        return None

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = [
    "AVR_ELF",
    "AVR_SPEED",
    "HOST_BIN",
    "SIM_BIN",
    "FirmwarePort",
    "FirmwareProcess",
    "Incarnation",
    "ProcessBackend",
    "ensure_built",
]
