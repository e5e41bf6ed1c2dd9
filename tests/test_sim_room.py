"""The simulated room's reverb tail: drawn per take, or once for the room (sim://?tail=room)."""

from __future__ import annotations

import numpy as np
import pytest

from robo_player.driver import open_port
from robo_player.errors import TransportError
from robo_player.sim.room import LiveTake, Room, room_tail
from robo_player.spec import load_spec


def test_a_fixed_tail_is_the_rooms_on_every_take() -> None:
    """With ``fixed_tail`` two takes' tails are one (drawn from the room's seed alone),
    another room's differs; without it each take draws its own; the live take draws
    the drain's."""
    fixed, per_take = Room(fixed_tail=True, seed=4), Room(seed=4)
    a, b = room_tail(fixed, np.random.default_rng(1)), room_tail(fixed, np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, room_tail(Room(fixed_tail=True, seed=5), np.random.default_rng(1)))
    assert not np.array_equal(room_tail(per_take, np.random.default_rng(1)), room_tail(per_take, np.random.default_rng(2)))
    # the live take draws the same tail as the drain's take of that number
    live = LiveTake(fixed, 3)
    assert live._tail is not None and np.array_equal(live._tail, a)


def test_the_sim_port_takes_the_tail_option() -> None:
    spec = load_spec("piano-88-grand")
    with open_port("sim://?tail=take", spec, truth_seed=1) as dev:
        assert dev.instrument.microphone.room.fixed_tail is False
    with open_port("sim://", spec, truth_seed=1) as dev:
        assert dev.instrument.microphone.room.fixed_tail is True
    with pytest.raises(TransportError, match=r"tail='hall' \(allowed: take, room\)"):
        open_port("sim://?tail=hall", spec, truth_seed=1)
