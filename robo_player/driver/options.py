"""A device's options (URL query string and keyword arguments), checked on use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from ..errors import TransportError


def url_of(parts: SplitResult | str) -> str:
    return parts if isinstance(parts, str) else parts.geturl()


def with_query(parts: SplitResult | str, opts: dict[str, Any]) -> dict[str, Any]:
    """The URL's query options, overridden by the keyword ones (``open_port`` passes both)."""
    query = urlsplit(parts).query if isinstance(parts, str) else parts.query
    merged: dict[str, Any] = dict(parse_qsl(query))
    merged.update({k: v for k, v in opts.items() if v is not None})
    return merged


class Options:
    """Options of the device at ``url``; unknown names are refused at once."""

    def __init__(self, url: str, opts: dict[str, Any], allowed: Iterable[str]) -> None:
        self.url = url
        self.opts = opts
        self.allowed = tuple(allowed)
        unknown = sorted(set(opts) - set(self.allowed))
        if unknown:
            raise TransportError(
                f"{url}: unknown option {unknown[0]!r} (allowed: {', '.join(self.allowed)})"
            )

    def get(self, name: str, default: Any = None) -> Any:
        return self.opts.get(name, default)

    def num(self, name: str, default: float, lo: float, hi: float) -> float:
        raw = self.opts.get(name, default)
        try:
            v = float(raw)
        except (TypeError, ValueError) as err:
            raise TransportError(f"{self.url}: option {name}={raw!r} is not a number") from err
        if not lo <= v <= hi:
            raise TransportError(f"{self.url}: option {name}={v} out of range (allowed {lo}..{hi})")
        return v

    def path(self, name: str) -> Path | None:
        raw = self.opts.get(name)
        if not raw:
            return None
        p = Path(str(raw))
        if not p.is_file():
            raise TransportError(f"{self.url}: option {name}={raw!s}: no such file")
        return p


__all__ = ["Options", "url_of", "with_query"]
