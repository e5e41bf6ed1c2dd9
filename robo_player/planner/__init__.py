"""Planners: Score + spec + calibration -> Plan + PlanReport, one module per instrument."""

from .constraints import Limits, PlanOptions, Playability
from .piano import plan_piano
from .report import Fate, NoteOutcome, PlanReport

__all__ = [
    "Fate",
    "Limits",
    "NoteOutcome",
    "PlanOptions",
    "PlanReport",
    "Playability",
    "plan_piano",
]
