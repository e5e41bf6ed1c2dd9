"""The live planner for a spec's family: the piano's or the guitar's (and the bass's)."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from .guitar import GuitarLivePlanner
from .options import LiveOptions
from .planner import LivePlanner

__all__ = ["AnyLivePlanner", "live_planner"]

AnyLivePlanner = LivePlanner | GuitarLivePlanner


def live_planner(spec: Any, calibration: Any = None, options: LiveOptions | None = None
                 ) -> AnyLivePlanner:  # fmt: skip
    """The live planner of ``spec``'s family; UsageError naming the family otherwise."""
    family = getattr(spec, "family", "piano")
    if family == "piano":
        return LivePlanner(spec, calibration, options)
    if family in ("guitar", "bass"):
        return GuitarLivePlanner(spec, calibration, options)
    raise UsageError(
        f"live: spec {spec.name!r} is of family {family!r} (allowed: piano, guitar, bass)"
    )
