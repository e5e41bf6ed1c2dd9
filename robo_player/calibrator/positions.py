"""The microphone's places: a calibration's takes heard from several places in the room.

A real room's response from the piano to a fixed microphone is the same on every take, so
its colour of each key's partials (~3 % of velocity a strike, nearly the same for every
strike of a key: docs/calibration.md, "Session 24, velocity") does not average over the
calibration's takes. Acousticians average a room's colour by measuring at several
microphone positions (spatial averaging); ``calibrate --mic-positions N`` asks for the
microphone to be moved N - 1 times. The takes are split into N groups, in order
(:func:`position_of_take`); before the first take of each group after the first the
session asks the device to move the microphone (``device.move_microphone(k, N)``: a
prompt on a real microphone, the room's other place in the simulator).

A move changes the microphone's distance to the strings: the take's level is unknown
again. :func:`refit_position_level` fits it on the first take at the new place against
what the curves already know (each strike's loudness against its key's current fit at
its drive, over every key struck: no extra strikes) and reads that take again with it.
``--mic-gain-db`` stays the gain at the first place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from ..hearing.align import ClockFit
from ..hearing.level import remove_level, take_level_db
from ..performance import Performance
from .fitting import KeyFit
from .listening import KeyReads, read_and_pool
from .strikes import StrikeResult

log = logging.getLogger(__name__)

# the level fit of a new place reads its take again at the level found, and fits what is
# left, until the step is under POSITION_LEVEL_TOL_DB or after POSITION_LEVEL_PASSES reads
# (the partials' read is not exactly linear in the level: which partials stand above the
# noise moves with it)
POSITION_LEVEL_PASSES = 3
POSITION_LEVEL_TOL_DB = 0.01
# At the end, each place's level is fitted again against the final curves (all of a key's
# strikes, every place's) over all that place's strikes, less place 0's, and the curves
# fitted again: a few passes of the joint fit (curves and places' levels). The first
# take's fit against the first round's three-strike curves alone was off by up to ~1 dB
# (truth seed 2, 11 keys: docs/calibration.md, "Session 25, positions").
POSITION_REFIT_PASSES = 3


def planned_takes(first_round: int, rounds: tuple[tuple[tuple[str, float], ...], ...], per_pass: bool) -> int:
    """How many takes a session plays if every key takes every strike of the round plan:
    with ``per_pass`` (a sync click: one take per pass of a round) the first round's
    ``first_round`` and each adaptive round's targets, else one take a round."""
    return first_round + sum(len(r) for r in rounds) if per_pass else 1 + len(rounds)


def max_positions(planned: int, first_round_takes: int) -> int:
    """The most places a session of ``planned`` takes can use: the first move comes after
    the first round (``first_round_takes`` takes), whose curves the next place's level is
    fitted against."""
    return max(n for n in range(1, planned + 1) if -(-planned // n) >= first_round_takes)


def position_of_take(take_no: int, positions: int, planned: int) -> int:
    """The place (0-based) of the session's take number ``take_no`` (0-based): the
    ``planned`` takes split into ``positions`` groups in order (a take past the plan
    stays at the last place)."""
    return min(positions - 1, take_no * positions // planned)


def refit_position_level(
    perf: Performance, strikes: list[StrikeResult], clock: ClockFit, reads: KeyReads | None,
    fits: dict[int, KeyFit | None], guess_db: float, where: str,
) -> float:
    """The level (dB against the detector's reference microphone) of the first take at a
    new place, whose ``strikes`` were read at ``guess_db`` (the last place's): each heard
    ordinary strike's loudness against its key's current fit at its drive (``fits``),
    their interquartile mean in dB (:func:`~robo_player.hearing.level.take_level_db`);
    the strikes' loudness read again at the level found (their reads replaced in
    ``reads``). Returns the level (``guess_db`` where no key told it)."""
    assert perf.audio is not None
    sr = perf.audio.sample_rate
    level = guess_db
    for n_pass in range(POSITION_LEVEL_PASSES):
        pairs = [(s.pitch, s.velocity, float(f.velocity(s.drive))) for s in strikes
                 if s.heard and s.probe_gap_us is None and (f := fits.get(s.pitch)) is not None]  # fmt: skip
        step, n = take_level_db(pairs, sr)
        if not n:
            log.warning("%s: no key's curve told the microphone's new level: kept the last place's %+.2f dB",
                        where, level)  # fmt: skip
            return level
        log.info("%s: the level at this place %+.2f dB (%+.2f dB from %d keys against their curves, pass %d)",
                 where, level + step, step, n, n_pass + 1)  # fmt: skip
        if abs(step) < POSITION_LEVEL_TOL_DB:
            break
        level += step
        mine = {id(s) for s in strikes}
        if reads is not None:
            for ks in reads.values():
                ks.reads = [(s, r) for s, r in ks.reads if id(s) not in mine]
        for s in strikes:
            if s.heard and math.isfinite(s.velocity):
                # the comb's loudness, where the partials do not read it again
                s.velocity = remove_level(s.pitch, s.velocity, step, sr)
        read_and_pool(perf, strikes, clock, level, reads)
    return level


def refine_position_levels(
    by_place: list[list[StrikeResult]], fits: dict[int, KeyFit | None], refit: Callable[[set[int]], None],
    levels_db: list[float], sample_rate: int,
) -> list[float]:
    """Each place's level fitted again at the end of the session (places 1..: their
    strikes ``by_place[k]``, their loudness with the place's level out already, against
    their keys' ``fits`` at their drives, less place 0's strikes' against theirs), the
    difference taken out of their loudness and the keys fitted again (``refit(keys)``);
    :data:`POSITION_REFIT_PASSES` times. Returns the places' levels as refined
    (``levels_db`` moved by what each pass took out)."""
    levels = list(levels_db)

    def offset(strikes: list[StrikeResult]) -> tuple[float, int]:
        pairs = [(s.pitch, s.velocity, float(f.velocity(s.drive))) for s in strikes
                 if s.heard and s.probe_gap_us is None and (f := fits.get(s.pitch)) is not None]  # fmt: skip
        return take_level_db(pairs, sample_rate)

    for _ in range(POSITION_REFIT_PASSES):
        base, n0 = offset(by_place[0])
        if not n0:
            return levels
        keys: set[int] = set()
        for k in range(1, len(by_place)):
            d, n = offset(by_place[k])
            if not n:
                continue
            step = d - base
            levels[k] += step
            for s in by_place[k]:
                if s.heard and math.isfinite(s.velocity):
                    s.velocity = remove_level(s.pitch, s.velocity, step, sample_rate)
                    keys.add(s.pitch)
        if not keys:
            break
        refit(keys)
    log.info("calibration: the microphone's places' levels against the final curves: %s dB",
             ", ".join(f"{x:+.2f}" for x in levels))  # fmt: skip
    return levels


__all__ = ["POSITION_LEVEL_PASSES", "POSITION_LEVEL_TOL_DB", "POSITION_REFIT_PASSES", "max_positions", "planned_takes", "position_of_take",
           "refine_position_levels", "refit_position_level"]
