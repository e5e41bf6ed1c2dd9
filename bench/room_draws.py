"""Run tests over room draws: how many draws of the simulated room a test holds on.

A test that renders its take through ``sim.room.RoomTake`` hears one room: its seed's
(the reverb tail drawn per take, or the room's own with ``Room.fixed_tail``) and the
noise. This pytest plugin moves every take's room to another draw: ``DRAW=d`` adds
1000·d to the room's seed, ``FIXED=1`` / ``FIXED=0`` sets ``fixed_tail`` (unset: the
test's own). ``DRAW=0`` without ``FIXED`` is the suite as it is. Session 26
(docs/hearing.md, "Session 26, fixedroom")::

    for f in 0 1; do for d in 0 1 2 3 4 5; do
      FIXED=$f DRAW=$d PYTHONPATH=.:bench nice .venv/bin/python -m pytest -q -rf -p room_draws TESTS
    done; done

A test that sets ``fixed_tail`` itself is overridden by ``FIXED`` (read its rows so).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import robo_player.sim.room as room_mod

DRAW_SEED_STEP = 1000  # a draw's seed offset: clear of the seeds tests use (0..~40)

_FIXED = os.environ.get("FIXED")
_DRAW = int(os.environ.get("DRAW", "0"))
_init = room_mod.RoomTake.__init__


def _drawn_init(self: room_mod.RoomTake, room: room_mod.Room, *args: Any, **kwargs: Any) -> None:
    changes: dict[str, Any] = {"seed": room.seed + DRAW_SEED_STEP * _DRAW}
    if _FIXED is not None:
        changes["fixed_tail"] = _FIXED == "1"
    _init(self, replace(room, **changes), *args, **kwargs)


room_mod.RoomTake.__init__ = _drawn_init  # type: ignore[method-assign]
