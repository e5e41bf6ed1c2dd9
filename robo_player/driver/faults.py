"""Fault injection on any transport: corruption, lost and duplicated frames, a stalled
line, a cut link, an MCU reset — seeded, so a failing run can be replayed.

:class:`FaultyTransport` wraps a :class:`~robo_player.driver.transport.Transport`.
Frame faults (drop, duplicate) work on ``0x00``-delimited chunks, the protocol's
frames; byte corruption flips bits in single bytes. Each fault applies to both
directions unless ``direction`` says ``h2d`` (host to device) or ``d2h``.
Times (``stall_at``, ``cut_at``, ``reset_at``) are seconds after :meth:`arm` (called
when streaming starts; at construction otherwise), on the clock given as ``now``.

From a port URL's query string (:func:`FaultSpec.from_options`)::

    fw-host://?corrupt=1e-3&drop=0.01&dup=0.01&stall=2.0:0.05&cut=3.5&reset=2.5&fault_seed=7
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TransportError
from .transport import Transport

log = logging.getLogger(__name__)

FAULT_OPTIONS = ("corrupt", "drop", "dup", "stall", "cut", "reset", "fault_seed", "fault_dir")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    corrupt: float = 0.0  # probability that a byte is corrupted
    drop: float = 0.0  # probability that a frame is lost
    dup: float = 0.0  # probability that a frame arrives twice
    stall_at: float | None = None  # s after arm(): the line stops ...
    stall_s: float = 0.0  # ... for this long (bytes wait, none are lost)
    cut_at: float | None = None  # s after arm(): the link is cut for good
    reset_at: float | None = None  # s after arm(): the MCU resets
    seed: int = 0
    direction: str = "both"  # both | h2d | d2h

    @property
    def any(self) -> bool:
        return bool(
            self.corrupt
            or self.drop
            or self.dup
            or self.stall_at is not None
            or self.cut_at is not None
            or self.reset_at is not None
        )

    @classmethod
    def from_options(cls, opts: Mapping[str, Any], where: str = "port") -> FaultSpec:
        """Parse the fault options of a port URL; TransportError names the bad one."""

        def num(name: str, lo: float, hi: float) -> float:
            raw = opts[name]
            try:
                v = float(raw)
            except (TypeError, ValueError) as err:
                raise TransportError(f"{where}: {name}={raw!r} is not a number") from err
            if not lo <= v <= hi:
                raise TransportError(f"{where}: {name}={v} out of range (allowed {lo}..{hi})")
            return v

        kw: dict[str, Any] = {}
        for name in ("corrupt", "drop", "dup"):
            if name in opts:
                kw[name] = num(name, 0.0, 1.0)
        if "stall" in opts:
            raw = str(opts["stall"])
            at, _, dur = raw.partition(":")
            try:
                kw["stall_at"], kw["stall_s"] = float(at), float(dur or "0.2")
            except ValueError as err:
                raise TransportError(f"{where}: stall={raw!r} must be AT:SECONDS") from err
            if kw["stall_at"] < 0 or not 0 < kw["stall_s"] <= 60:
                raise TransportError(
                    f"{where}: stall={raw!r} out of range (AT >= 0, 0 < SECONDS <= 60)"
                )
        for name, key in (("cut", "cut_at"), ("reset", "reset_at")):
            if name in opts:
                kw[key] = num(name, 0.0, 1e6)
        if "fault_seed" in opts:
            kw["seed"] = int(num("fault_seed", 0, 2**32 - 1))
        if "fault_dir" in opts:
            d = str(opts["fault_dir"])
            if d not in ("both", "h2d", "d2h"):
                raise TransportError(f"{where}: fault_dir={d!r} (allowed: both, h2d, d2h)")
            kw["direction"] = d
        return cls(**kw)


@dataclass(slots=True)
class FaultStats:
    bytes_corrupted: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    stalled: bool = False
    cut: bool = False
    resets: int = 0
    stall_time: float | None = None  # host time each fault struck (on the ``now`` clock)
    cut_time: float | None = None
    reset_time: float | None = None


class FaultyTransport:
    """A transport that breaks things on purpose (see the module doc)."""

    def __init__(
        self,
        inner: Transport,
        faults: FaultSpec,
        *,
        now: Callable[[], float] = time.perf_counter,
        reset_hook: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.faults = faults
        self.url = inner.url
        self.baud = inner.baud
        self.now = now
        self.reset_hook = reset_hook
        self.stats = FaultStats()
        self._rng = random.Random(faults.seed)
        self._t0 = now()
        self._rx_partial = bytearray()
        self._rx_ready = bytearray()  # d2h bytes that passed the faults, not yet returned
        self._tx_held = bytearray()  # h2d bytes held by a stall
        self._reset_done = False

    def arm(self, t0: float | None = None) -> None:
        """Start the fault clock (``stall_at``/``cut_at``/``reset_at`` count from here)."""
        self._t0 = self.now() if t0 is None else t0

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def close(self) -> None:
        self.inner.close()

    # ---- the clock of faults ---------------------------------------------------------
    def _elapsed(self) -> float:
        return self.now() - self._t0

    def _cut(self) -> bool:
        f = self.faults
        if f.cut_at is not None and self._elapsed() >= f.cut_at:
            if not self.stats.cut:
                log.info("%s: fault: link cut at %.3f s", self.url, self._elapsed())
                self.stats.cut_time = self._t0 + f.cut_at
            self.stats.cut = True
            return True
        return False

    def _stalled(self) -> bool:
        f = self.faults
        if f.stall_at is None:
            return False
        e = self._elapsed()
        on = f.stall_at <= e < f.stall_at + f.stall_s
        if on and not self.stats.stalled:
            log.info("%s: fault: line stalled at %.3f s for %.3f s", self.url, e, f.stall_s)
            self.stats.stalled = True
            self.stats.stall_time = self._t0 + f.stall_at
        return on

    def _maybe_reset(self) -> None:
        f = self.faults
        if f.reset_at is not None and not self._reset_done and self._elapsed() >= f.reset_at:
            self._reset_done = True
            self.stats.resets += 1
            self.stats.reset_time = self.now()
            log.info("%s: fault: MCU reset at %.3f s", self.url, self._elapsed())
            if self.reset_hook is None:
                raise TransportError(
                    f"{self.url}: reset fault asked for, but this port cannot reset"
                )
            self.reset_hook()

    # ---- byte and frame faults ---------------------------------------------------------
    def _applies(self, direction: str) -> bool:
        return self.faults.direction in ("both", direction)

    def _mangle(self, data: bytes, direction: str, complete_only: bool) -> tuple[bytes, bytes]:
        """Apply drop/dup per frame and corruption per byte; returns (out, leftover)."""
        if not self._applies(direction):
            return data, b""
        f = self.faults
        out = bytearray()
        chunks = data.split(b"\x00")
        rest = chunks.pop()  # bytes after the last delimiter: an incomplete frame
        if not complete_only:
            chunks.append(rest)
            rest = b""
        for i, ch in enumerate(chunks):
            delim = b"\x00" if complete_only or i < len(chunks) - 1 else b""
            frame = ch + delim
            if ch and f.drop and self._rng.random() < f.drop:
                self.stats.frames_dropped += 1
                out += delim  # the delimiter survives: the next frame still resyncs
                continue
            copies = 1
            if ch and f.dup and self._rng.random() < f.dup:
                self.stats.frames_duplicated += 1
                copies = 2
            for _ in range(copies):
                out += self._corrupt(frame)
        return bytes(out), rest

    def _corrupt(self, data: bytes) -> bytes:
        p = self.faults.corrupt
        if not p:
            return data
        b = bytearray(data)
        for i in range(len(b)):
            if self._rng.random() < p:
                b[i] ^= self._rng.randrange(1, 256)
                self.stats.bytes_corrupted += 1
        return bytes(b)

    # ---- the transport -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._maybe_reset()
        if self._cut():
            return
        if self._stalled():
            self._tx_held += data
            return
        if self._tx_held:
            data = bytes(self._tx_held) + data
            self._tx_held.clear()
        out, _ = self._mangle(data, "h2d", complete_only=False)
        if out:
            self.inner.write(out)

    def read(self, timeout: float) -> bytes:
        self._maybe_reset()
        if self._tx_held and not self._stalled() and not self._cut():
            held = bytes(self._tx_held)
            self._tx_held.clear()
            out, _ = self._mangle(held, "h2d", complete_only=False)
            self.inner.write(out)
        if not self._stalled() and not self._cut() and self._rx_ready:
            got = bytes(self._rx_ready)
            self._rx_ready.clear()
            return got
        data = self.inner.read(timeout)
        if self._cut():
            return b""
        if data:
            self._rx_partial += data
            out, rest = self._mangle(bytes(self._rx_partial), "d2h", complete_only=True)
            self._rx_partial = bytearray(rest)
            self._rx_ready += out
        if self._stalled() or not self._rx_ready:
            return b""
        got = bytes(self._rx_ready)
        self._rx_ready.clear()
        return got
