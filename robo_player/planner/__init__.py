"""Planners: Score + spec + calibration -> Plan + PlanReport, one module per instrument.

:func:`plan` is the one entry point: it picks the planner from ``spec.family``. The rules
every family shares (supply budget, coil heat, on-time, concurrency) are in
:mod:`robo_player.planner.rules`, as functions of the spec's actuator map.
"""

from .constraints import Limits, PlanOptions, Playability
from .guitar import GuitarPlanReport, plan_guitar
from .piano import plan_piano
from .registry import PLANNERS, plan, playability
from .report import Fate, NoteOutcome, PlanReport

__all__ = [
    "PLANNERS",
    "Fate",
    "GuitarPlanReport",
    "Limits",
    "NoteOutcome",
    "PlanOptions",
    "PlanReport",
    "Playability",
    "plan",
    "plan_guitar",
    "plan_piano",
    "playability",
]
