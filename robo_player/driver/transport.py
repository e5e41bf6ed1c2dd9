"""Byte-stream transports opened by URL, with read timeouts.

A :class:`Transport` moves bytes and nothing else: the link layer (:mod:`.link`) puts
frames on it. URLs:

- ``serial:///dev/ttyACM0?baud=115200`` — a serial port (a pty path works too);
- ``socket://HOST:PORT``, ``rfc2217://HOST:PORT``, ``loop://`` — pyserial's own URL
  handlers, passed to :func:`serial.serial_for_url` as they are (``baud`` is taken off
  the query string and given as ``baudrate``).

``baud`` (default 115200) is also what the link uses to estimate how long bytes take on
the wire. Every failure to open or use the port is a :class:`TransportError` naming
the URL.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit

import serial

from ..errors import TransportError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
PYSERIAL_SCHEMES = ("socket", "rfc2217", "loop")


@runtime_checkable
class Transport(Protocol):
    """A full-duplex byte stream."""

    url: str
    baud: int  # line rate in bit/s (10 bits a byte on a UART); 0 = unknown/unlimited

    @property
    def is_open(self) -> bool: ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending (does not wait for the wire)."""

    def read(self, timeout: float) -> bytes:
        """Whatever bytes arrive within ``timeout`` s (all that are waiting once one has),
        or ``b""`` when none did."""

    def close(self) -> None: ...


class SerialTransport:
    """A pyserial port (``serial.Serial`` or anything ``serial_for_url`` returns)."""

    def __init__(self, port: serial.SerialBase, url: str, baud: int) -> None:
        self._port = port
        self.url = url
        self.baud = baud

    @property
    def is_open(self) -> bool:
        return bool(self._port.is_open)

    def write(self, data: bytes) -> None:
        if not self._port.is_open:
            raise TransportError(f"{self.url}: write on a closed port")
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as err:
            raise TransportError(f"{self.url}: write failed: {_gone(err)}") from err

    def read(self, timeout: float) -> bytes:
        if not self._port.is_open:
            raise TransportError(f"{self.url}: read on a closed port")
        try:
            self._port.timeout = max(0.0, timeout)
            first = self._port.read(1)
            if not first:
                return b""
            waiting = self._port.in_waiting
            return first + (self._port.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError) as err:
            raise TransportError(f"{self.url}: read failed: {_gone(err)}") from err

    def close(self) -> None:
        if self._port.is_open:
            try:
                self._port.close()
            except (serial.SerialException, OSError) as err:  # closing a dead port
                log.debug("%s: close: %s", self.url, err)

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gone(err: Exception) -> str:
    """pyserial's words for a port that vanished ("device reports readiness to read but
    returned no data (device disconnected or multiple access on port?)", EIO) say
    what happened to the port, not what died: say it as a maker would check it."""
    text = str(err)
    if "returned no data" in text or getattr(err, "errno", None) in (5, 6, 19):
        return (
            "the device at the other end is gone (the board was unplugged, reset or lost "
            "power, or the program behind the port exited)"
        )
    return text


def _baud(url: str, value: str | int | None) -> int:
    if value is None:
        return DEFAULT_BAUD
    try:
        baud = int(value)
    except (TypeError, ValueError) as err:
        raise TransportError(f"{url}: baud={value!r} is not an integer (e.g. 115200)") from err
    if not 50 <= baud <= 20_000_000:
        raise TransportError(f"{url}: baud={baud} out of range (allowed 50..20000000)")
    return baud


def open_transport(url: str, *, baud: int | None = None, timeout_s: float = 2.0) -> SerialTransport:
    """Open the byte stream at ``url``; :class:`TransportError` if it cannot be opened."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    b = _baud(url, baud if baud is not None else query.pop("baud", None))
    query.pop("baud", None)
    if parts.scheme == "serial":
        path = parts.path or parts.netloc
        if not path:
            raise TransportError(f"{url}: no device path (e.g. serial:///dev/ttyACM0?baud=115200)")
        if query:
            raise TransportError(f"{url}: unknown option(s) {sorted(query)} (allowed: baud)")
        try:
            port = serial.Serial(path, baudrate=b, timeout=timeout_s, write_timeout=timeout_s)
        except (serial.SerialException, OSError, ValueError) as err:
            raise TransportError(f"{url}: cannot open {path}: {err}") from err
        return SerialTransport(port, url, b)
    if parts.scheme in PYSERIAL_SCHEMES:
        # (geturl() would drop the empty netloc: "loop://" -> "loop:")
        rest = f"{parts.scheme}://{parts.netloc}{parts.path}"
        if query:
            rest += "?" + urlencode(query)
        try:
            port = serial.serial_for_url(rest, baudrate=b, timeout=timeout_s)
        except (serial.SerialException, OSError, ValueError) as err:
            raise TransportError(f"{url}: cannot open: {err}") from err
        return SerialTransport(port, url, 0 if parts.scheme == "loop" else b)
    raise TransportError(
        f"{url}: no byte-stream transport {parts.scheme!r} "
        f"(known: serial://, {', '.join(s + '://' for s in PYSERIAL_SCHEMES)})"
    )
