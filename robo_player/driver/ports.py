"""Devices opened by URL through a small registry (like pyserial's ``serial_for_url``).

A :class:`Device` takes a :class:`~robo_player.plan.Plan` and plays it, returning a
:class:`Performance`: what a sensor heard (on the simulator, or a real piano with a
microphone), coil temperatures and failures, and link statistics where there is a link.
The simulated piano registers itself as ``sim://`` like any real backend.

Backends register a factory ``factory(url: urllib.parse.SplitResult, spec, **options)``.
Options come from the URL's query string (``sim://?truth_seed=3``) and from keyword
arguments to :func:`open_port`; keyword arguments win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from ..errors import TransportError
from ..performance import HeardNote, Performance, Progress
from ..plan import Plan
from ..spec.model import PianoSpec

class Device(Protocol):
    url: str

    def play(self, plan: Plan, progress: Progress | None = None) -> Performance: ...

    def close(self) -> None: ...

    def __enter__(self) -> Device: ...

    def __exit__(self, *exc: object) -> None: ...


Factory = Callable[..., Device]

_REGISTRY: dict[str, Factory | str] = {
    # scheme -> factory, or "module:attr" imported on first use (keeps start-up light)
    "sim": "robo_player.sim.device:open_sim",
    "fw-host": "robo_player.driver.fw:open_fw_host",
    "fw-avr": "robo_player.driver.fw:open_fw_avr",
    "serial": "robo_player.driver.fw:open_serial_device",
    "socket": "robo_player.driver.fw:open_serial_device",
    "rfc2217": "robo_player.driver.fw:open_serial_device",
    "loop": "robo_player.driver.fw:open_serial_device",
    "vmcu": "robo_player.driver.fw:open_vmcu",  # the firmware's Python model, virtual time
}


# Devices opened through open_port and not yet seen closed, so tests (and shutdown
# hooks) can check that none is left open or energised. Closed ones are pruned on
# every open, so the list stays as short as the number of devices really open.
OPEN_DEVICES: list[Any] = []


def register_port(scheme: str, factory: Factory | str) -> None:
    _REGISTRY[scheme] = factory


def schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_port(url: str, spec: PianoSpec, **options: Any) -> Device:
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
