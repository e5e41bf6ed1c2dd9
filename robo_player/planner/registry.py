"""One entry point for every family: :func:`plan` picks the planner from ``spec.family``.

    from robo_player.planner import plan
    the_plan, report = plan(score, spec, calibration, options)   # any family's spec

Each family registers its planner (``planner/<family>.py``) and, where it has one, its
playability oracle (what the performance model's constrained decoder asks). A spec of a
family without a planner is refused with a :class:`~robo_player.errors.PlanError` that
names the family and the ones that have a planner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import PlanError
from ..plan import Plan
from ..score import Score
from ..spec.model import InstrumentSpec
from .constraints import PlanOptions, Playability
from .guitar import plan_guitar
from .piano import plan_piano
from .report import PlanReport

__all__ = ["PLANNERS", "plan", "playability"]

Planner = Callable[[Score, Any, Any, Any], tuple[Plan, PlanReport]]

# family -> planner(score, spec, calibration | None, options | None)
PLANNERS: dict[str, Planner] = {
    "piano": plan_piano,
    "guitar": plan_guitar,
    "bass": plan_guitar,
}
# family -> playability oracle class (the performance model's constraint)
ORACLES: dict[str, Callable[..., Any]] = {"piano": Playability}


def _family(spec: InstrumentSpec, table: dict[str, Any], what: str) -> Any:
    family = getattr(spec, "family", None)
    fn = table.get(family) if isinstance(family, str) else None
    if fn is None:
        raise PlanError(
            f"spec {getattr(spec, 'name', '?')!r}: no {what} for instrument family {family!r} "
            f"(allowed: {' | '.join(table)})"
        )
    return fn


def plan(
    score: Score,
    spec: InstrumentSpec,
    calibration: Any = None,
    options: PlanOptions | None = None,
) -> tuple[Plan, PlanReport]:
    """Plan ``score`` for ``spec`` with its family's planner (every note ends in the
    report exactly once). ``calibration``: that family's calibration, None for nominal."""
    planner: Planner = _family(spec, PLANNERS, "planner")
    return planner(score, spec, calibration, options)


def playability(
    spec: InstrumentSpec, calibration: Any = None, options: PlanOptions | None = None
) -> Any:
    """The family's playability oracle (the piano's :class:`Playability`)."""
    return _family(spec, ORACLES, "playability oracle")(spec, calibration, options)
