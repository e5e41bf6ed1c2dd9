"""The simulated MCUs as devices: ``vmcu://``, ``fw-host://`` and ``fw-avr://``.

The port registry (:mod:`robo_player.driver.ports`) names these factories; each builds
the driver's :class:`~robo_player.driver.device.FirmwareDevice` with a backend that
runs the firmware (its Python model on virtual time, the host build, or the AVR build
under simavr) and the :class:`~.instrument.SimulatedInstrument` attached, the same
instrument ``sim://`` plays. The driver sees both only through its interfaces.

Each one hears while it plays (``heard_so_far``, and the room's blocks through
``audio_so_far``): its firmware's trace grows as it runs and the driver reads it as it
does (``vmcu://``: the model's, in memory; ``fw-host://`` and ``fw-avr://``: the trace
file, tailed), but not the AVR's direct pins under software PWM (a level there is
measured over a whole pulse train; None).

Options, besides the driver's (:mod:`robo_player.driver.device`) and the instrument's
(``truth_seed``, ``truth``, ``sensor_seed``, ``timing_sd_us``, ``loudness_sd``):

- ``vmcu://``: ``seed`` (0: boot ids, clock start), ``baud`` (115200; 0 = instant),
  ``ppm`` (its clock's error, 0), ``queue`` (its queue size, 64);
- ``fw-host://``: ``ppm`` (clock error, 0), ``trace_dir`` (keep the traces there),
  ``realtime`` (1: ask the OS to run the firmware before other work, 0: do not);
- ``fw-avr://``: ``speed`` (simulated s per wall s, default 0.15: the driver then runs
  on simulated time), ``elf`` (another AVR build), ``pca_bus`` (the PCA9685 addresses
  on the simulated bus, comma-separated, or ``none``; default the spec's boards),
  ``trace_dir``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

from ..driver.backends import Backend, StartResult
from ..driver.config import actuator_outputs
from ..driver.device import FirmwareDevice
from ..driver.options import Options, url_of, with_query
from ..driver.trace import Trace
from ..errors import TransportError
from ..protocol.messages import OutKind
from ..spec.model import DriverKind, PianoSpec
from .instrument import INSTRUMENT_OPTIONS, instrument_from_options
from .mcu_process import AVR_ELF, AVR_SPEED, HOST_BIN, SIM_BIN, ProcessBackend
from .vmcu import MCUConfig, VirtualPort, VirtualWorld


class VirtualBackend(Backend):
    """The firmware's Python model (:mod:`.vmcu`) on virtual time."""

    def __init__(self, *, queue: int, seed: int, baud: int, drift_ppm: float) -> None:
        cfg = MCUConfig(drift_ppm=drift_ppm, queue_size=queue)
        self.world = VirtualWorld(cfg, baud=baud, seed=seed)
        # live_trace: (the model's trace list, how much of it was read, the trace so far, a reset seen)
        self._live: tuple[list[tuple[int, int, int]], int, Trace, bool] | None = None

    def start(self) -> StartResult:
        port = VirtualPort(self.world)
        return port, self.world.reset_mcu, port.now

    def stop(self) -> None:
        # let the device run out its queue and its watchdog (and the drain), as a real one
        # would
        m = self.world.mcu
        wd_s = (m.watchdog_ms + m.watchdog_drain_ms) / 1000
        self.world.advance(self.world.t + max(1.0, wd_s + 0.1), stop_on_rx=False)

    def trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        t = Trace(clock_hz=self.world.mcu.cfg.clock_hz)
        for clock, a, level in self.world.mcu.trace:
            if clock < 0:  # a reset: later clocks belong to another boot
                break
            t.changes.append((clock, a, level))
        return t

    def live_trace(self, out_map: dict[tuple[int, int, int], int]) -> Trace | None:
        """:meth:`trace` while the model runs, extended by the changes since the last call
        (the live path asks every loop step: copying the whole trace each time was
        quadratic over a long piece). The model's trace only grows while a piano plays."""
        src = self.world.mcu.trace
        live = self._live
        if live is None or live[0] is not src or live[1] > len(src):
            live = self._live = (src, 0, Trace(clock_hz=self.world.mcu.cfg.clock_hz), False)
        _, i, t, ended = live
        if not ended:
            for clock, a, level in src[i:]:
                if clock < 0:  # a reset: later clocks belong to another boot
                    ended = True
                    break
                t.changes.append((clock, a, level))
            self._live = (src, len(src), t, ended)
        return t


def pca_addresses(o: Options, spec: PianoSpec) -> tuple[int, ...]:
    """The spec's PCA9685 boards: the simavr harness models these and no others, so a
    write to any other address is NACKed (and counted), never silently taken. Option
    ``pca_bus`` puts other boards on the bus (a missing board, a test)."""
    raw = o.get("pca_bus")
    if raw is not None:
        text = str(raw).strip().lower()
        if text == "none":
            return ()
        try:
            addrs = tuple(int(a, 0) for a in text.split(","))
        except ValueError as err:
            raise TransportError(
                f"{o.url}: option pca_bus={raw!s}: not a comma-separated list of "
                "I2C addresses (or none)"
            ) from err
        for a in addrs:
            if not 0x08 <= a <= 0x77:
                raise TransportError(
                    f"{o.url}: option pca_bus: address {a:#04x} out of range "
                    "(allowed 0x08..0x77)"
                )
        return addrs
    return tuple(
        sorted(
            b.i2c_address
            for b in spec.boards
            if b.kind is DriverKind.PCA9685 and b.i2c_address is not None
        )
    )


_VMCU_OPTIONS = ("seed", "baud", "ppm", "queue")
_HOST_OPTIONS = ("ppm", "trace_dir", "realtime")
_AVR_OPTIONS = ("speed", "elf", "pca_bus", "trace_dir", "ppm")


def _device(
    url_parts: SplitResult | str, spec: PianoSpec, kind: str, opts: dict[str, Any], own: tuple[str, ...]
) -> FirmwareDevice:
    url = url_of(url_parts)
    merged = with_query(url_parts, opts)
    allowed = (*own, *INSTRUMENT_OPTIONS)
    mine = {k: v for k, v in merged.items() if k in allowed}
    rest = {k: v for k, v in merged.items() if k not in allowed}
    instrument: Any
    if spec.family != "piano":  # the guitar and the bass: carriages read from the step pins
        from .guitar.device import guitar_instrument

        instrument = guitar_instrument(url, spec, mine)  # type: ignore[arg-type]
    else:
        instrument = instrument_from_options(url, spec, mine)  # takes its own options out

    def backend(o: Options) -> Backend:
        if kind == "vmcu":
            return VirtualBackend(
                queue=int(o.num("queue", 64, 1, 65535)),
                seed=int(o.num("seed", 0, 0, 2**32 - 1)),
                baud=int(o.num("baud", 115200, 0, 20_000_000)),
                drift_ppm=o.num("ppm", 0.0, -1000, 1000),
            )
        return ProcessBackend(
            kind,
            o.get("trace_dir"),
            ppm=o.num("ppm", 0.0, -1000, 1000),
            speed=o.num("speed", AVR_SPEED, 0.01, 100.0),
            elf=o.path("elf"),
            pca=pca_addresses(o, spec) if kind == "avr" else None,
            realtime=kind == "host" and bool(o.num("realtime", 1, 0, 1)),
        )

    # each trace grows as the firmware runs and is read as it does; but not the AVR's
    # direct pins under software PWM: a level there is measured over a whole pulse train
    soft_pwm = kind == "avr" and any(o[0] == OutKind.DIRECT for o in actuator_outputs(spec).values())
    dev = FirmwareDevice(
        url, spec, kind, {**rest, **mine}, backend=backend, instrument=instrument,
        extra_options=own, live_trace=not soft_pwm,
    )
    if kind == "avr":
        pca_addresses(dev.options, spec)  # a bad pca_bus is refused at open
    return dev


def open_vmcu(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    """The firmware's Python model with the simulated piano (see the module doc)."""
    return _device(url_parts, spec, "vmcu", opts, _VMCU_OPTIONS)


def open_fw_host(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    """The firmware's host build with the simulated piano (see the module doc)."""
    return _device(url_parts, spec, "host", opts, _HOST_OPTIONS)


def open_fw_avr(url_parts: SplitResult | str, spec: PianoSpec, **opts: Any) -> FirmwareDevice:
    """The firmware's AVR build under simavr with the simulated piano."""
    return _device(url_parts, spec, "avr", opts, _AVR_OPTIONS)


__all__ = [
    "AVR_ELF",
    "AVR_SPEED",
    "HOST_BIN",
    "SIM_BIN",
    "VirtualBackend",
    "open_fw_avr",
    "open_fw_host",
    "open_vmcu",
    "pca_addresses",
]
