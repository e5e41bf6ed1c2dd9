"""The shared rules (:mod:`robo_player.rules`) plus the planner's supply ledger.

The rules live in :mod:`robo_player.rules`, below the planner, so that the driver's
firmware configuration reads the same functions; this module re-exports them for the
planners and adds :func:`supply_ledger`, which only planning needs.
"""

from __future__ import annotations

from ..rules import *  # noqa: F403 (the shared rules, re-exported for the planners)
from ..rules import __all__ as _shared
from ..spec.actuators import ActuatorMap
from .power import INF_US, SupplyLedger

__all__ = [*_shared, "INF_US", "SupplyLedger", "supply_ledger"]


def supply_ledger(amap: ActuatorMap, pulse_us: int) -> SupplyLedger:
    """A :class:`SupplyLedger` (pulses of ``pulse_us``) for the map's supply and concurrency."""
    return SupplyLedger(pulse_us, amap.max_concurrent, amap.supply_a)
