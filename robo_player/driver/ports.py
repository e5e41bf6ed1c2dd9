"""Devices opened by URL through a small registry (like pyserial's ``serial_for_url``).

A :class:`Device` is a stream of timed commands (``submit``, ``advance``, ``drain``,
``close``) that ends in a :class:`Performance`: what a sensor heard (on the simulator,
or a real piano with a microphone), coil temperatures and failures, the accounting of
every command, and link statistics where there is a link. ``play(plan)`` is the thin
helper for a whole plan. The simulated piano registers itself as ``sim://`` like any
real backend; so do the simulated MCUs (``vmcu://``, ``fw-host://``, ``fw-avr://``),
whose factories live in :mod:`robo_player.sim.ports`.

Backends register a factory ``factory(url: urllib.parse.SplitResult, spec, **options)``.
Options come from the URL's query string (``sim://?truth_seed=3``) and from keyword
arguments to :func:`open_port`; keyword arguments win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from ..errors import PlanError, TransportError
from ..performance import HeardNote, Performance, Progress
from ..plan import Command, Plan
from ..spec.model import InstrumentSpec


class Device(Protocol):
    """A device is a stream: submit timed commands while it runs, drain, close.

    - ``submit(commands)``: commands (sorted by ``t_us``, none earlier than the last
      submitted) join the stream; the first one starts it (its ``t_us`` plays
      ``start_delay`` after that). Each is checked against the actuator map first: a
      bad one (unknown actuator, level out of range) raises PlanError and none of the
      chunk is taken. After ``close()``: TransportError.
    - ``advance(until_t_us)``: let the stream run until performance time
      ``until_t_us`` (a stream with no known end calls it while it waits for input;
      nothing runs between calls, and a real device's watchdog turns everything off
      after ``watchdog_ms`` of silence).
    - ``now_us()``: the stream's performance time now (µs; None before its first
      command): what a live input schedules against.
    - ``heard_so_far()``: the notes the device's sensor has heard in this stream up to
      now (performance time, in the order heard; ``end_us`` None while unknown), or
      None where the device cannot hear while it plays. A note is heard only some
      time after it sounds (a microphone's detector needs audio after the onset:
      ``sim://``'s ``heard_delay_ms``); a closed loop corrects the commands it has not
      submitted yet from them (robo_player/hearing/loop.py).
    - ``drain(progress)``: the end of the stream: every submitted command played, or is
      accounted for as late, refused, flushed, cut off or never sent
      (``Performance.extra["commands"]``: counts by status); everything is off. Returns
      the stream's :class:`Performance`; a fault raises with it as ``err.performance``.
      The next ``submit`` starts a new stream on the same device.
    - ``close()``: ends a stream that was not drained (everything off; its
      performance in ``last_performance``) and closes the device.
    - ``play(plan)``: a whole plan, the thin helper: submit it all, then drain (refused
      while a stream is running: ``streaming``).
    """

    url: str

    @property
    def is_open(self) -> bool: ...

    @property
    def streaming(self) -> bool: ...

    def submit(self, commands: Sequence[Command]) -> None: ...

    def advance(self, until_t_us: int) -> None: ...

    def now_us(self) -> float | None: ...

    def heard_so_far(self) -> list[HeardNote] | None: ...

    def drain(self, progress: Progress | None = None) -> Performance: ...

    def play(self, plan: Plan, progress: Progress | None = None) -> Performance: ...

    def energised(self) -> list[int]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Device: ...

    def __exit__(self, *exc: object) -> None: ...


class StreamDevice:
    """What every device shares: :meth:`play` over the stream, the closed check, ``with``."""

    url: str
    spec: Any
    last_performance: Performance | None = None

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    @property
    def streaming(self) -> bool:
        """A stream has commands submitted and is not drained yet."""
        raise NotImplementedError

    def submit(self, commands: Sequence[Command]) -> None:
        raise NotImplementedError

    def drain(self, progress: Progress | None = None) -> Performance:
        raise NotImplementedError

    def heard_so_far(self) -> list[HeardNote] | None:
        """None: this device hears nothing while it plays (a firmware port hears its
        trace at the drain; no live microphone is wired to it yet)."""
        return None

    def close(self) -> None:
        raise NotImplementedError

    def _check_open(self, what: str) -> None:
        if not self.is_open:
            raise TransportError(f"{self.url}: {what} on a closed device (open it again)")

    def _plan_begin(self, plan: Plan) -> int:
        """A whole plan is about to stream: the index of its first command to play."""
        return 0

    def play(self, plan: Plan, progress: Progress | None = None) -> Performance:
        """Play a whole plan: submit every command, then drain (see :class:`Device`)."""
        self._check_open("play")
        if self.streaming:
            raise TransportError(
                f"{self.url}: play while a stream is running (drain or close it first)"
            )
        spec_hash = self.spec.spec_hash
        if plan.spec_hash and plan.spec_hash != spec_hash:
            raise PlanError(
                f"{self.url}: plan was made for spec {plan.spec_name!r} (hash {plan.spec_hash}), "
                f"this device is {self.spec.name!r} (hash {spec_hash})"
            )
        first = self._plan_begin(plan)
        self.submit(plan.commands[first:])
        try:
            perf = self.drain(progress)
        except Exception as err:
            part = getattr(err, "performance", None)
            if isinstance(part, Performance):
                part.extra["pipeline_delay_us"] = plan.pipeline_delay_us
            raise
        perf.extra["pipeline_delay_us"] = plan.pipeline_delay_us
        return perf

    def __enter__(self) -> StreamDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Factory = Callable[..., Device]

_REGISTRY: dict[str, Factory | str] = {
    # scheme -> factory, or "module:attr" imported on first use (keeps start-up light)
    # the device side (robo_player.sim) is named here, never imported by the driver
    "sim": "robo_player.sim.device:open_sim",
    "fw-host": "robo_player.sim.ports:open_fw_host",
    "fw-avr": "robo_player.sim.ports:open_fw_avr",
    "vmcu": "robo_player.sim.ports:open_vmcu",  # the firmware's Python model, virtual time
    "serial": "robo_player.driver.device:open_serial_device",
    "socket": "robo_player.driver.device:open_serial_device",
    "rfc2217": "robo_player.driver.device:open_serial_device",
    "loop": "robo_player.driver.device:open_serial_device",
}


# Ports that reach real hardware: nothing listens to the instrument unless a sensor
# (a microphone) is given with it. The simulated ports all carry the simulated sensor.
SENSORLESS_SCHEMES = frozenset({"serial", "socket", "rfc2217", "loop"})


def has_sensor(url: str) -> bool:
    """Whether the port at ``url`` hears the instrument by itself."""
    return urlsplit(url).scheme not in SENSORLESS_SCHEMES


# Ports whose ``heard_so_far`` hears while the stream runs (a piano's): the simulated
# piano, and the simulated MCUs (the firmware's Python model, its host build and its AVR
# build: each trace grows as the firmware runs and is read as it does).
HEARS_LIVE_SCHEMES = frozenset({"sim", "vmcu", "fw-host", "fw-avr"})


def hears_live(url: str) -> bool:
    """Whether the port at ``url`` can hear a piano while it plays (``heard_so_far``)."""
    return urlsplit(url).scheme in HEARS_LIVE_SCHEMES


# Devices opened through open_port and not yet seen closed, so tests (and shutdown
# hooks) can check that none is left open or energised. Closed ones are pruned on
# every open, so the list stays as short as the number of devices really open.
OPEN_DEVICES: list[Any] = []


def register_port(scheme: str, factory: Factory | str) -> None:
    _REGISTRY[scheme] = factory


def schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_port(url: str, spec: InstrumentSpec, **options: Any) -> Device:
    """Open the device at ``url`` for ``spec``; TransportError if there is none."""
    parts = urlsplit(url)
    if not parts.scheme:
        raise TransportError(
            f"port {url!r}: not a URL (expected one of: {', '.join(s + '://' for s in schemes())})"
        )
    entry = _REGISTRY.get(parts.scheme)
    if entry is None:
        raise TransportError(
            f"port {url!r}: no such port type {parts.scheme!r} "
            f"(known: {', '.join(s + '://' for s in schemes())})"
        )
    if isinstance(entry, str):
        mod, attr = entry.split(":")
        entry = getattr(importlib.import_module(mod), attr)
        _REGISTRY[parts.scheme] = entry
    opts: dict[str, Any] = dict(parse_qsl(parts.query))
    opts.update({k: v for k, v in options.items() if v is not None})
    device = entry(parts, spec, **opts)
    OPEN_DEVICES[:] = [d for d in OPEN_DEVICES if getattr(d, "is_open", True)]
    OPEN_DEVICES.append(device)
    return device


__all__ = [
    "Device",
    "HEARS_LIVE_SCHEMES",
    "HeardNote",
    "Performance",
    "Progress",
    "SENSORLESS_SCHEMES",
    "StreamDevice",
    "has_sensor",
    "hears_live",
    "open_port",
    "register_port",
    "schemes",
]
