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


def test_the_first_reflections_delay_is_an_option() -> None:
    """``predelay_ms`` (session 25): the tail is silent for that long after the direct
    sound, then the room's; the default (4 ms) draws the tail it drew before (the same
    generator, its first 4 ms zeroed); out of range is refused."""
    spec = load_spec("piano-88-grand")
    with open_port("sim://?predelay_ms=1.5", spec, truth_seed=1) as dev:
        room = dev.instrument.microphone.room
    assert room.predelay_s == pytest.approx(0.0015)
    sr = room.sample_rate
    tail = room_tail(room, np.random.default_rng(1))
    assert not tail[: int(0.0015 * sr)].any() and tail[int(0.0015 * sr)] != 0.0
    default = room_tail(Room(fixed_tail=True), np.random.default_rng(1))
    assert not default[: int(0.004 * sr)].any() and default[int(0.004 * sr)] != 0.0
    # the same draw: past 4 ms the two tails differ only by their scale (one wet_db)
    ratio = tail[int(0.004 * sr) :] / default[int(0.004 * sr) :]
    assert np.allclose(ratio, ratio[0]) and ratio[0] < 1.0
    with pytest.raises(TransportError, match=r"predelay_ms='0.2' out of range \(allowed: 0.5..20\)"):
        open_port("sim://?predelay_ms=0.2", spec, truth_seed=1)


def test_the_microphones_places_hear_the_bass_alike() -> None:
    """Places a metre apart hear a diffuse room alike below ~c / 2r (172 Hz) and nearly
    independently above (sin(kr)/kr): the bass's colour averages less over places than
    the treble's, as in a real room."""
    room = Room(seed=0, fixed_tail=True)
    first = np.fft.rfft(room_tail(room, np.random.default_rng(1)))
    f = np.fft.rfftfreq(2 * (len(first) - 1), 1.0 / room.sample_rate)

    def coherence(lo: float, hi: float, k: int) -> float:
        other = np.fft.rfft(room_tail(room.at_position(k), np.random.default_rng(1)))
        m = (f >= lo) & (f < hi)
        a, b = first[m], other[m]
        return float(abs(np.sum(a * np.conj(b))) / np.sqrt(np.sum(abs(a) ** 2) * np.sum(abs(b) ** 2)))

    for k in (1, 2, 3):
        assert coherence(20.0, 100.0, k) > 0.7
        assert coherence(2000.0, 8000.0, k) < 0.15
