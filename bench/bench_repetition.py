"""Fast repetition (issue 11 §3) on the hidden-truth simulator, printed as a table.

    .venv/bin/python bench/bench_repetition.py [--seeds 1 2] [--pieces Liszt/... ...]

Per truth seed: calibrate on ``sim://`` (the product's calibration, within its strike
budget), then plan each piece twice, with the old repeat rule (``PlanOptions(restrike=
False)``: a repeat faster than the key's full return is merged) and with re-strikes on
the partly returned key (the default), play both plans on ``sim://`` with the same
truth, and print: notes sounded (planned as written or altered, unison merges counted
as sounded, and heard), drops by reason, and onset / velocity error (|heard - planned|,
p99 and mean) of the re-struck notes against the rest, and how many re-struck notes were
heard more than 5 ms late. Merged repeats are judged against the truth one at a time
(:func:`merged_repeats`, "truth allows") and, since session 15, jointly per key
(:func:`truth_best_run`: the most notes the truth lets sound, choosing which to keep,
against what the plan sounds): playing one repeat can cost the next. Each seed's
calibrated key return is printed against the truth (``--calibration-only``: only that).

The pieces are ASAP score MIDI files (``/work/shared/data/asap``, read only) with many
repeats on one key 55-190 ms apart: the issue's C. P. E. Bach sonata and Clara Schumann
polonaise are not in ASAP.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

import numpy as np

from robo_player.calibrator import RETURN_MARGIN_SD, RETURN_MARGIN_US, calibrate
from robo_player.driver import open_port
from robo_player.midi import read_midi
from robo_player.planner import plan_piano
from robo_player.planner.constraints import PlanOptions
from robo_player.planner.piano_notes import UNISON_US
from robo_player.report import match_heard
from robo_player.sim.physics import MAX_LATENCY_US
from robo_player.sim.truth import Truth
from robo_player.spec import load_spec

ASAP = Path("/work/shared/data/asap")
PIECES = (
    "Liszt/Gran_Etudes_de_Paganini/2_La_campanella",
    "Schumann/Toccata",
    "Mozart/Fantasie_475",
)
RESTRUCK = ("re-struck on the partly returned key", "softer: partial return")
LATE_US = 5_000  # a re-struck note heard later than this after its planned onset is "late"


def truth_allows(kt, gap_us: float, late_us: float = 0.0) -> bool:  # noqa: ANN001
    """Whether the hidden truth lets a key (``kt``) repeat ``gap_us`` after a note, at best
    with the options the planner has: the earlier note released at its hammer's contact or,
    ``late_us`` after it, at the end of the shortest pulse the spec says is of full effect
    (``strike.pulse_full_max_us``; the planner never relies on the simulator's 30 ms least
    sound, nor on a key's own ``P_full``, which no calibration measures), the repeat at
    full drive acting as ``e / R`` of it (``e``: release to re-strike, any louder than
    written), silent below ``e / R = 0.5``; no supply sag, a cold coil. The repeat sounds
    ``e + L(e / R)`` after that release."""
    r = kt.return_us
    for e in np.linspace(0.5 * r, r, 501):
        u = (e / r - kt.threshold) / (1.0 - kt.threshold)
        if u > 0 and e + kt.latency_full_us * u ** (-kt.alpha) <= gap_us - late_us:
            return True
    return False


def merged_repeats(outcomes, truth: Truth, full_pulse_us: int) -> tuple[int, int, int, list[float]]:  # noqa: ANN001
    """Repeats merged as too fast (not unisons): how many, how many of them the truth
    allows (:func:`truth_allows`: the earlier note, as planned, released at its contact or
    ``full_pulse_us`` after its strike, whichever is later), how many of those the planner
    merged although it could play them, because striking one would cost more of the
    repeats after it (one at a time the truth allows it; with the next, not), and the
    gaps of the allowed ones (ms)."""
    last: dict[int, tuple[int, int]] = {}  # pitch -> the last note that sounds: onset, release floor
    n = ok = cost = 0
    gaps: list[float] = []
    for o in sorted(outcomes, key=lambda o: (o.intended_t_us, o.index)):
        why = o.reason or ""
        if o.fate.name != "DROPPED":
            late = 0 if o.strike_t_us is None else max(0, o.strike_t_us + full_pulse_us - o.target_t_us)
            last[o.pitch_out] = (o.intended_t_us, late)
        elif why.startswith("merged:") and not why.startswith("merged: unison") and o.pitch_out in last:
            n += 1
            onset, late = last[o.pitch_out]
            gap = o.intended_t_us - onset
            if truth_allows(truth.key(o.pitch_out), gap, late):
                ok += 1
                cost += "for the ones after it" in why
                gaps.append(gap / 1000)
    return n, ok, cost, gaps


def return_errors(cal, truth: Truth) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Each key's calibrated return minus the truth's R (ms): ``return_us`` (with its
    margin: a full-return wait) and ``return_est_us`` (a re-strike's drive scales by it)."""
    return {
        name: np.array([(getattr(c, name) - truth.key(p).return_us) / 1000 for p, c in cal.keys.items()
                        if getattr(c, name) is not None])
        for name in ("return_us", "return_est_us")
    }


def margin_shorts(cal, truth: Truth) -> dict[float, tuple[int, float]]:  # noqa: ANN001
    """The calibration's margin (``return_us = estimate + RETURN_MARGIN_US + k s.d.``) at
    other k, the s.d. read back from each measured key's ``return_us - return_est_us``:
    k -> (keys short of R, the worst shortfall, ms)."""
    out = {}
    for k in (2.0, 2.5, 3.0):
        short = []
        for p, c in cal.keys.items():
            if c.return_us is None or c.return_est_us is None or c.return_us - c.return_est_us <= RETURN_MARGIN_US + 1:
                continue  # unmeasured, or an upper bound (no s.d.)
            sd = (c.return_us - c.return_est_us - RETURN_MARGIN_US) / RETURN_MARGIN_SD
            e = c.return_est_us + RETURN_MARGIN_US + k * sd - truth.key(p).return_us
            if e < 0:
                short.append(e / 1000)
        out[k] = (len(short), min(short, default=0.0))
    return out


def error_line(name: str, e: np.ndarray) -> str:
    """mean, p5, p95, worst of a key-return error (ms) and the keys short of R."""
    if e.size == 0:
        return f"{name}: no key measured"
    return (f"{name} - R, {e.size} keys: mean {e.mean():+.2f} ms, p5 {np.percentile(e, 5):+.2f}, "
            f"p95 {np.percentile(e, 95):+.2f}, min {e.min():+.2f}, max {e.max():+.2f}, s.d. {e.std():.2f}; "
            f"{(e < 0).sum()} short of R")


def _truth_latency(kt, u: float) -> float:  # noqa: ANN001
    return kt.latency_full_us * u ** (-kt.alpha) if u > 0 else math.inf


def _written_latency(kt, velocity: float) -> float:  # noqa: ANN001
    """The truth's latency of a fully returned key struck to sound ``velocity`` (full
    drive where the key cannot play it that loud)."""
    y = (velocity / kt.gain - kt.v0) / (1.0 - kt.v0) * (1.0 - math.exp(-kt.k))
    u = 1.0 if y >= 1.0 else min(1.0, max(1e-6, -math.log(1.0 - y) / kt.k))
    return _truth_latency(kt, u)


def truth_best_run(kt, notes: list[tuple[int, int]], full_pulse_us: int, unison_us: int) -> int:  # noqa: ANN001
    """The most of one key's notes (``(sound time, velocity)``, time order) the hidden
    truth lets sound, choosing jointly which to keep (as :func:`truth_allows` judges one
    repeat: a kept note released at its contact or ``full_pulse_us`` after its strike,
    whichever is later; a repeat at full drive acting as ``e / R``, e / R >= 0.5, any
    louder than written, on time exactly; a fully returned key at its written
    velocity; a softer strike's latency at most the simulator's ``MAX_LATENCY_US``), a
    merged note sounding only as a unison (within ``unison_us`` of the last
    kept one). Each kept note is struck as early as it can (the earliest release after
    it): a Pareto front of (notes sounded, that release, the last kept onset)."""
    r = kt.return_us
    es = np.linspace(0.5 * r, r, 501)
    us = (es / r - kt.threshold) / (1.0 - kt.threshold)
    reach = es + np.array([_truth_latency(kt, u) for u in us])  # e + L(e / R), µs
    front: list[tuple[int, float, float]] = [(0, -math.inf, -math.inf)]  # (sounded, release floor, onset)
    for o, vel in notes:
        lw = _written_latency(kt, vel)
        nxt: list[tuple[int, float, float]] = []
        for n, floor, last in front:
            nxt.append((n + (o - last <= unison_us), floor, last))  # merged
            strikes = []
            if o - lw - floor >= r:  # the key fully up at its written strike
                strikes.append(o - lw)
            # a partial return, struck as early as it may: e + L(e / R) <= the time to
            # the onset, and a softer drive's latency no longer than any that sounds
            ok = np.flatnonzero((reach <= o - floor) & (o - floor - es <= MAX_LATENCY_US)) if math.isfinite(floor) else []
            if len(ok):
                strikes.append(floor + float(es[ok[0]]))
            if strikes:
                st = min(strikes)
                nxt.append((n + 1, max(o, st + full_pulse_us), o))
        # keep the non-dominated states (more notes, or an earlier release)
        nxt.sort(key=lambda x: (-x[0], x[1]))
        front = []
        best_floor = math.inf
        for st in nxt:
            if st[1] < best_floor:
                front.append(st)
                best_floor = st[1]
    return max(n for n, _, _ in front)


def joint_shortfall(outcomes, truth: Truth, full_pulse_us: int, unison_us: int) -> dict[int, int]:  # noqa: ANN001
    """Per key: how many more of its notes the truth could sound, choosing jointly
    (:func:`truth_best_run`), than the plan sounds (played, altered or unison-merged)."""
    by_key: dict[int, list] = collections.defaultdict(list)
    for o in outcomes:
        if o.pitch_out is not None and not (o.reason or "").startswith("out of range"):
            by_key[o.pitch_out].append(o)
    out = {}
    for pitch, os_ in by_key.items():
        if not any((o.reason or "").startswith("merged:") for o in os_):
            continue
        os_.sort(key=lambda o: (o.intended_t_us, o.index))
        planned = sum(o.fate.name != "DROPPED" or (o.reason or "").startswith("merged: unison") for o in os_)
        best = truth_best_run(truth.key(pitch), [(o.intended_t_us, o.velocity_in) for o in os_],
                              full_pulse_us, unison_us)
        if best > planned:
            out[pitch] = best - planned
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pieces", nargs="+", default=list(PIECES))
    ap.add_argument("--spec", default="piano-88-grand")
    ap.add_argument("--strikes", type=int, default=14, help="calibration strikes per key")
    ap.add_argument("--spread", type=int, choices=[0, 1], default=None,
                    help="the strikes' own spread, in the calibration and the play (default: the simulator's, on)")
    ap.add_argument("--margin", type=float, default=None,
                    help="PlanOptions.restrike_margin: least e/R of a re-strike is 0.5 + this "
                         "(default: the calibrated return's uncertainty)")
    ap.add_argument("--calibration-only", action="store_true",
                    help="only calibrate each seed and print its key-return errors against the truth")
    ap.add_argument("--full-pulse-us", type=int, default=None,
                    help="the truth-allows grid's shortest pulse of full effect (default: the spec's "
                         "strike.pulse_full_max_us, else default_pulse_us)")
    args = ap.parse_args()
    spread = "" if args.spread is None else f"&spread={args.spread}"
    spec = load_spec(args.spec)
    full_pulse = args.full_pulse_us or getattr(spec.strike, "full_pulse_us", spec.strike.default_pulse_us)
    print(f"truth allows: the earlier note released at its contact or {full_pulse / 1000:g} ms after its strike")
    scores = {}
    for p in args.pieces:
        path = ASAP / p / "midi_score.mid"
        if not path.exists():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
        scores[p] = read_midi(path)
    modes = {"old rule": PlanOptions(restrike=False), "re-strike": PlanOptions(restrike_margin=args.margin)}
    print(
        f"{'piece':<46} {'seed':>4} {'mode':<9} {'notes':>6} {'sounded %':>9} {'heard %':>8} "
        f"{'restruck':>8} {'softer':>6} {'on p99 ms (rs/rest)':>20} {'vel err mean (rs/rest)':>23}"
    )
    worst = {m: 100.0 for m in modes}
    ret_err: dict[str, list[np.ndarray]] = {"return_us": [], "return_est_us": []}
    margins: dict[float, list[tuple[int, float]]] = collections.defaultdict(list)
    for seed in args.seeds:
        truth = Truth.draw(spec, seed)  # the bench may look: which merged repeats could play
        with open_port(f"sim://?sensor=notes{spread}", spec, truth_seed=seed) as dev:  # note-level sensor: the figures documented with this bench (audio: bench_hearing.py)
            cal = calibrate(dev, spec, max_strikes_per_key=args.strikes)
        for name, e in return_errors(cal, truth).items():
            print(f"seed {seed}: {error_line(name, e)}")
            ret_err[name].append(e)
        for k, (n, short_ms) in margin_shorts(cal, truth).items():
            margins[k].append((n, short_ms))
        if args.calibration_only:
            continue
        for name, score in scores.items():
            for mode, opts in modes.items():
                plan, rep = plan_piano(score, spec, cal, opts)
                with open_port(f"sim://?{spread[1:]}", spec, truth_seed=seed) as dev:
                    heard = dev.play(plan).heard
                matched = match_heard(rep.outcomes, heard)
                n = len(score.notes)
                drops: collections.Counter[str] = collections.Counter()
                on: dict[bool, list[float]] = {True: [], False: []}
                vel: dict[bool, list[float]] = {True: [], False: []}
                sounded = heard_n = restruck = softer = 0
                late: list[float] = []  # re-struck notes heard more than LATE_US late (ms)
                for o in rep.outcomes:
                    if o.fate.name == "DROPPED":
                        why = (o.reason or "").split(" (")[0]
                        drops[why] += 1
                        if why.startswith("merged: unison"):
                            sounded += 1  # one key plays both voices
                            heard_n += 1
                        continue
                    sounded += 1
                    rs = any(k in (o.reason or "") for k in RESTRUCK)
                    restruck += rs
                    softer += "softer: partial return" in (o.reason or "")
                    h = matched.get(o.index)
                    if h is None:
                        continue
                    heard_n += 1
                    on[rs].append(abs(h.t_us - o.target_t_us) / 1000)
                    if rs and h.t_us - o.target_t_us > LATE_US:
                        late.append((h.t_us - o.target_t_us) / 1000)
                    vel[rs].append(abs(h.velocity - (o.velocity_target or 0.0)))
                s_pct, h_pct = 100 * sounded / n, 100 * heard_n / n
                worst[mode] = min(worst[mode], h_pct)
                print(
                    f"{name[-46:]:<46} {seed:>4} {mode:<9} {n:>6} {s_pct:9.2f} {h_pct:8.2f} "
                    f"{restruck:>8} {softer:>6} "
                    f"{pct(on[True], 99):>9.2f}/{pct(on[False], 99):<10.2f} "
                    f"{np.mean(vel[True]) if vel[True] else float('nan'):>11.2f}/"
                    f"{np.mean(vel[False]) if vel[False] else float('nan'):<11.2f}"
                )
                if restruck:
                    print(f"{'':<66} re-struck heard > {LATE_US / 1000:g} ms late: {len(late)}"
                          + (f" (max {max(late):.1f} ms)" if late else ""))
                for why, k in sorted(drops.items(), key=lambda kv: -kv[1]):
                    if not why.startswith("merged: unison"):
                        print(f"{'':<66} dropped {k:>5}: {why}")
                more = joint_shortfall(rep.outcomes, truth, full_pulse, UNISON_US)
                print(f"{'':<66} jointly the truth could sound {sum(more.values())} more"
                      + (f" (keys {dict(sorted(more.items()))})" if more else ""))
                nm, allowed, cost, gaps = merged_repeats(rep.outcomes, truth, full_pulse)
                print(f"{'':<66} merged repeats {nm}, of which the truth allows at best {allowed}"
                      + (f" (gaps {min(gaps):.1f}..{max(gaps):.1f} ms)" if gaps else "")
                      + (f"; {cost} of them merged as playable, for more repeats after them" if cost else ""))
    if len(args.seeds) > 1:
        for name, es in ret_err.items():
            print(f"seeds {' '.join(map(str, args.seeds))}: {error_line(name, np.concatenate(es))}")
    print("return_us at other margins (estimate + {:g} ms + k s.d.): {}".format(
        RETURN_MARGIN_US / 1000,
        "; ".join(f"k {k:g}: {sum(n for n, _ in v)} keys short, worst {min(w for _, w in v):+.2f} ms"
                  for k, v in margins.items())))
    if args.calibration_only:
        return 0
    print("\ntarget: >= 99.5 % of notes sounded (heard) on every piece")
    for mode, w in worst.items():
        print(f"  {mode:<9} worst piece {w:.2f} %  {'met' if w >= 99.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
