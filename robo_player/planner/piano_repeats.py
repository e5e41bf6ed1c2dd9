"""Stage 3 of the piano planner (:mod:`robo_player.planner.piano`): fast repetition.

On each key, in onset order, a repeat too fast for the key's full return is kept (as
written, louder, or re-struck on the partly returned key with its drive raised) or
merged into the note before it; the choices are searched as paths (:func:`_repeat_pass`).
Stage 5 (:mod:`~robo_player.planner.piano_keys`) redoes a re-strike's drive on the
planned strike times (:func:`_restrike_final`). See docs/hearing.md, "§3 Fast repetition".
"""

from __future__ import annotations

import functools
import math

from ..spec.calibration import KeyCurve
from .constraints import DriveChoice, Limits, restrike_drive
from .piano_notes import _I_SPAN, UNISON_US, _clone, _merge, _Rec

_FRONTIER_MAX = 64  # states kept per note in a key's run of fast repeats (a guard: ~2-6 live)


# a stage-3 decision on note j of a key: (keep: the note as it plays, None: as written)
# or (merge: why, the gap to the kept note before it and the need it missed)
_Decision = tuple[int, "_Rec | None", str, int, int]  # j, kept state, merge kind ("": kept), gap, need


class _Path:
    """One way through a key's notes in stage 3: the last kept note as it would be
    played (``last``: a clone once changed), the notes sounded (``score``: unison merges
    count), the keep (1) / merge (0) decisions as bits (``hist``: greedy, keeping
    whenever it can, is the largest among equal scores), and the decision that led here."""

    __slots__ = ("score", "hist", "last", "decision", "parent")

    def __init__(
        self, score: int, hist: int, last: _Rec, decision: _Decision, parent: _Path | None
    ) -> None:
        self.score = score
        self.hist = hist
        self.last = last
        self.decision = decision
        self.parent = parent


def _offer(nxt: dict[tuple[object, ...], _Path], p: _Path, key: tuple[object, ...]) -> None:
    """Keep ``p`` for state ``key`` unless a path there sounds more notes (or as many, greedier)."""
    q = nxt.get(key)
    if q is None or (p.score, p.hist) > (q.score, q.hist):
        nxt[key] = p


def _repeat_pass(lst: list[_Rec], klim: Limits, curve: KeyCurve, pwm_max: int) -> None:
    """Stage 3 on one key: keep or merge each repeat too fast for the full return.

    A repeat is kept (as written, louder, or re-struck on the partly returned key) or
    merged into the note before it. Keeping one can cost the next: a repeat 60 ms after
    a kept note may be playable only if the one between was merged (or a two-voice
    unison after it, one strike for two notes, is lost). So the choices are searched as
    paths (Viterbi: each state is the last kept note as it would play), most notes
    sounded first, then the greedy choice (keep whenever possible: the plan as before
    wherever keeping is best). A note that could play but is merged for the ones after
    it says so."""
    paths = [_Path(0, 0, lst[0], (0, None, "", 0, 0), None)] if lst else []
    for j in range(1, len(lst)):
        r = lst[j]
        if len(paths) == 1:
            p = paths[0]
            if r.s0 - p.last.s0 >= p.last.need:  # one way on: as written (most notes)
                paths = [_Path(p.score + 1, 0, r, (j, None, "", 0, 0), p)]
                continue
        nxt: dict[tuple[object, ...], _Path] = {}
        offer = functools.partial(_offer, nxt)
        for p in paths:
            prev = p.last
            gap = r.s0 - prev.s0
            if gap >= prev.need:  # as written after the full return
                offer(_Path(p.score + 1, p.hist * 2 + 1, r, (j, None, "", 0, 0), p), ("w", j))
                continue
            rc = _clone(r)
            ok = gap >= prev.fast and _restrike_plan(prev, rc, klim, curve, pwm_max)
            if not ok and _louder_for_repeat(prev, rc, klim, curve, pwm_max):
                ok = _restrike_plan(prev, rc, klim, curve, pwm_max)  # at full strength
            if ok:
                dc = rc.dc
                assert dc is not None
                offer(
                    _Path(p.score + 1, p.hist * 2 + 1, rc, (j, rc, "", 0, 0), p),
                    ("k", j, rc.s0, dc.counts, dc.latency_us, rc.absorbed_end),
                )
            # merged into prev (a unison sounds with it): prev is held to its end
            assert prev.dc is not None and r.dc is not None
            unison = abs(r.s0 + r.dc.latency_us - (prev.s0 + prev.dc.latency_us)) <= UNISON_US
            held = prev
            if r.end > prev.absorbed_end:
                held = _clone(prev)
                held.absorbed_end = r.end
            kind = "cost" if ok else ("weak" if gap >= prev.fast else "fast")
            pd = prev.dc
            offer(
                _Path(p.score + unison, p.hist * 2, held, (j, None, kind, gap, min(prev.need, prev.fast)), p),
                ("m", prev.i, held.s0, pd.counts, pd.latency_us, held.absorbed_end),
            )
        paths = sorted(nxt.values(), key=lambda p: (p.score, p.hist), reverse=True)[:_FRONTIER_MAX]
        if len(paths) == 1:
            paths[0].hist = 0  # one way left: earlier choices no longer compare
    if not paths:
        return
    chosen: list[_Decision] = []
    node: _Path | None = paths[0]
    while node is not None:
        chosen.append(node.decision)
        node = node.parent
    prev_real = lst[0]
    for j, c, kind, gap, need in reversed(chosen):
        r = lst[j]
        if not kind:  # kept
            if c is not None:
                for name in ("s0", "dc", "dc0", "need", "fast", "order", "notes"):
                    setattr(r, name, getattr(c, name))
            prev_real = r
            continue
        _merge(prev_real, r, gap, need)
        if r.drop is not None and not r.drop.startswith("merged: unison"):
            if kind == "weak":
                r.drop = "merged: partial return too weak (a softer strike must start earlier)"
            elif kind == "cost":
                r.drop = (
                    f"merged: repeat too fast for the ones after it ({gap / 1000:.1f} ms after note "
                    f"{prev_real.i}: playable, but struck it would leave fewer repeats sounding)"
                )


def _louder_for_repeat(prev: _Rec, r: _Rec, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 3: a repeat too soon after ``prev`` for ``r`` as written, but playable
    louder: a stronger strike starts later (shorter latency), which leaves the key more
    time to come back and needs less compensation. Picks the smallest drive with which
    ``r`` re-strikes at full strength (reported as a velocity change). False: none does
    (nothing changed)."""
    assert prev.dc is not None and r.dc0 is not None
    if math.isinf(klim.restrike_ratio):
        return False
    ret, margin = klim.key_return_us, klim.release_margin_us
    est = klim.return_est_us or ret
    floor = prev.s0 + klim.restrike_floor_us(prev.dc.latency_us)
    o_r = r.s0 + r.dc0.latency_us
    least = klim.restrike_least_us()
    lo = max(r.dc0.counts + 1, math.ceil(klim.min_drive * pwm_max - 1e-9))
    step = max(1, pwm_max // 256)

    def fits(c: int) -> int | None:
        """The latency of a repeat acting as ``c`` counts if it re-strikes so, else None."""
        d = c / pwm_max
        if d <= curve.threshold:
            return None
        lat = round(curve.latency_at(d))
        s0 = o_r - lat
        e = s0 - max(floor, min(prev.absorbed_end, s0 - ret - margin))
        return None if e < least or c > min(1.0, e / est) * pwm_max else lat

    def late_enough(c: int) -> bool:
        """Struck so, is the key at least ``least`` back? (non-decreasing in ``c``: a
        stronger strike starts later)"""
        d = c / pwm_max
        if d <= curve.threshold:
            return False
        s0 = o_r - round(curve.latency_at(d))
        return s0 - max(floor, min(prev.absorbed_end, s0 - ret - margin)) >= least

    grid = [*range(lo, pwm_max, step), pwm_max]
    a, b = -1, len(grid)  # the first grid drive late enough: in (a, b]
    while b - a > 1:
        m = (a + b) // 2
        if late_enough(grid[m]):
            b = m
        else:
            a = m
    got = next(((c, lat) for c in grid[b:] if (lat := fits(c)) is not None), None)
    if got is None and least < est:
        # none on that grid: the window between "late enough to be half up" and "drive to
        # spare" can be narrower than its step. Its edge is full drive acting as e / est:
        # the least e >= the least return with e + L(e / est) <= the time from the
        # earliest release to the written onset (a louder strike that still fits)
        e = _least_in_time(curve, least, est, o_r - floor)
        if e is not None:
            c = max(lo, math.floor(e / est * pwm_max))
            if (lat := fits(c)) is not None:
                got = (c, lat)
    if got is not None:
        c, lat = got
        d = c / pwm_max
        s0 = o_r - lat
        r.dc = r.dc0 = DriveChoice(
            c, lat, round(curve.velocity_at(d), 2), clamped=r.dc0.clamped, raised=True
        )
        r.s0 = s0
        r.order = (s0 * 128 + r.pitch) * _I_SPAN + r.i
        r.need = klim.repeat_need_us(lat, r.end - o_r)
        r.fast = klim.restrike_need_us(lat)
        r.notes.append("louder for a fast repeat: its slower strike would start before the key is back")
        return True
    return False


def _least_in_time(curve: KeyCurve, lo: int, est: int, avail: int) -> int | None:
    """The least ``e`` in ``[lo, est)`` (µs) with ``e + L(e / est) <= avail``, None if none:
    a strike at full drive ``e`` after the release, acting as ``e / est``, that sounds
    within ``avail`` of it. ``e + L(e / est)`` is convex (L falls ever less steeply), so:
    its minimum by ternary search, then the first crossing before it by bisection."""

    def g(e: float) -> float:
        return e + curve.latency_at(e / est)

    if lo >= est:
        return None
    if g(lo) <= avail:
        return lo
    a, b = float(lo), float(est)
    while b - a > 20.0:
        m1, m2 = a + (b - a) / 3, b - (b - a) / 3
        if g(m1) <= g(m2):
            b = m2
        else:
            a = m1
    e_min = math.ceil((a + b) / 2)
    if g(e_min) > avail:
        return None
    a_i, b_i = lo, e_min  # g(a_i) > avail >= g(b_i)
    while b_i - a_i > 1:
        m = (a_i + b_i) // 2
        if g(m) <= avail:
            b_i = m
        else:
            a_i = m
    return b_i


def _restrike_plan(prev: _Rec, r: _Rec, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 3: plan ``r`` as a re-strike of ``prev``'s partly returned key, from the
    wanted strike times (stage 5 redoes it on the planned ones). False: it cannot sound
    (nothing changed)."""
    assert prev.dc is not None and r.dc0 is not None
    floor = prev.s0 + klim.restrike_floor_us(prev.dc.latency_us)
    ret = klim.key_return_us
    est = klim.return_est_us or ret  # the unmargined estimate scales the drive
    s0 = r.s0
    dc = r.dc0
    for _ in range(3):  # a softer strike starts earlier, which leaves less return
        rel = max(floor, min(prev.absorbed_end, s0 - ret - klim.release_margin_us))
        e = s0 - rel
        if e < klim.restrike_least_us():
            return False
        if e >= est:
            dc = r.dc0
            break
        got = restrike_drive(curve, r.dc0, e / est, pwm_max)
        if got is None:
            return False
        dc = got[0]
        s1 = r.s0 + r.dc0.latency_us - dc.latency_us  # sounds at the written time
        if s1 == s0:
            break
        s0 = s1
    r.dc = dc
    if s0 != r.s0:
        r.s0 = s0
        r.order = (s0 * 128 + r.pitch) * _I_SPAN + r.i
    r.fast = klim.restrike_need_us(dc.latency_us)
    return True


def _restrike_final(r: _Rec, e: int, klim: Limits, curve: KeyCurve, pwm_max: int) -> bool:
    """Stage 5: the drive of ``r``, struck ``e`` µs after ``prev``'s planned release, no
    stronger than the power budget counted (stage 3's). False: it cannot sound."""
    assert r.dc is not None and r.dc0 is not None
    ret = klim.key_return_us
    est = klim.return_est_us or ret  # the unmargined estimate scales the drive
    if e < klim.restrike_least_us():
        return False
    if e >= est:
        r.dc = r.dc0
        return True
    scale = e / est
    got = restrike_drive(curve, r.dc0, scale, pwm_max, max(r.dc.counts, r.dc0.counts))
    if got is None:
        return False
    r.dc, softer = got
    if softer:
        r.notes.append(
            f"softer: partial return (struck {e / 1000:.1f} ms after the release, "
            f"e/R {scale:.2f}; full drive acts as {scale * r.dc.counts / pwm_max:.2f})"
        )
    else:
        r.notes.append(f"re-struck on the partly returned key (e/R {scale:.2f}, drive raised)")
    return True
