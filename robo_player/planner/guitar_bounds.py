"""Bounds on what any guitar plan can do, by counting strings (bench/bench_guitar.py
prints them beside the planner's figures; tests/test_guitar_planner.py holds the planner
within them)."""

from __future__ import annotations

from ..score import Score
from ..spec.guitar import GuitarSpec
from .fingering import Layout
from .guitar import _string_curves, prepare

__all__ = ["must_alter"]


def must_alter(spec: GuitarSpec, score: Score, calibration: object = None) -> tuple[int, int]:
    """Notes that a plan must alter (cut, drop or transpose), by counting strings under
    the planner's changeover: (a lower bound for plans that drop no note, and one for
    any plan).

    At an onset ``o``, a note that started before and still sounds within the shortest
    changeover ``w_o`` before it (damper then release, or damper then fret settle, each
    at least the damper's lift, plus the time from the note's ready time to its sound:
    the pick latency without a calibration, the margin with one; see
    :class:`~.fingering.Layout`) holds
    its string unless it is cut or dropped; every new note needs a string of its own,
    except one that repeats the pitch of a note ending in that window (it takes that
    string over). With ``x_i = 1`` for an altered note, at every onset ``sum of x_i over
    the notes active there >= need_o = active - repeats - strings`` (repeats counted with
    every note present: altering a note never adds one, so this only relaxes). A note is
    active at its own onset and the onsets after it while it holds its string; keeping
    only the first consecutive run of them relaxes again (a constraint less one ``x_i``
    on its left and one on its right is implied by the original). The notes are then
    intervals over the onsets, and the fewest meeting every onset's demand is found
    exactly by the sweep that, at each onset short of its demand, alters the notes that
    stay active longest (interval multicover: an optimum that differs at the first
    onset can swap its choices there for these without uncovering a later onset).

    Which notes may meet a demand: for any plan, every active note (a dropped note frees
    its string at its own onset too); for a plan that drops nothing, only the held notes
    (a cut note still sounds at its onset, and a transposed one needs a string too).
    """
    t = spec.timing
    lay = Layout(spec, calibration)
    curve, _ = _string_curves(spec, calibration)
    onsets, _ = prepare(spec, score, "drop", curve)
    lift = lay.lift_us
    settle = min(min(row[1:]) for row in lay.settle_at)  # the quickest contact's
    changeover = t.damp_us + min(max(settle, lift), max(t.release_us, lift))
    notes = score.notes
    by_on: dict[int, list[int]] = {}
    for i, n in enumerate(notes):
        by_on.setdefault(n.onset_us, []).append(i)
    lat = {notes[o.slots[0].note].onset_us: min(min(sl.sound_us - sl.pick_us, lay.margin_us) for sl in o.slots)
           for o in onsets}  # fmt: skip
    strings = len(spec.strings)
    starts = sorted(by_on)
    index = {on: k for k, on in enumerate(starts)}
    # each note's first and last onset of its first consecutive run of active onsets
    first = [index[n.onset_us] for n in notes]
    last = first[:]
    active: list[list[int]] = [[] for _ in starts]
    for i, n in enumerate(notes):
        k = first[i]
        active[k].append(i)
        while k + 1 < len(starts) and n.end_us > starts[k + 1] - (changeover + lat.get(starts[k + 1], 0)):
            k += 1
            active[k].append(i)
        last[i] = k
    needs: list[int] = []
    for k, on in enumerate(starts):
        ending: dict[int, int] = {}
        for i in active[k]:
            if first[i] < k and notes[i].end_us <= on:
                ending[notes[i].pitch] = ending.get(notes[i].pitch, 0) + 1
        repeats = 0
        for i in by_on[on]:
            if ending.get(notes[i].pitch, 0) > 0:
                ending[notes[i].pitch] -= 1
                repeats += 1
        needs.append(len(active[k]) - repeats - strings)

    def cover(own: bool) -> int:
        """The fewest notes to alter (``own``: a note may meet its own onset's demand)."""
        altered: set[int] = set()
        for k, need in enumerate(needs):
            able = [i for i in active[k] if own or first[i] < k]
            short = need - sum(i in altered for i in able)
            if short > 0:
                free = sorted((i for i in able if i not in altered), key=lambda i: -last[i])
                altered.update(free[:short])  # a demand held notes cannot meet: relaxed
        return len(altered)

    return cover(False), cover(True)
