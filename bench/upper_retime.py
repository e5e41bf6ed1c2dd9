"""What the upper retime (``Detector._upper_retime``, UPPER_RETIME; session 22) changes on
the detector bench's cached takes, in one plan-known pass per take: every onset from
BASS_MAX_PITCH up that the pass checks, its step fit (:func:`.stepfit.step_check`) logged
once, then the rule's gates applied to the log (the rule off: the onsets as the pass gave
them; it never adds nor drops a note and its onset stays in the note's search window, so
the fakes heard are the same: ``timing_breakdown.py`` counts them). Prints each row's F1,
timed-off, unheard and false before -> after for each gate setting (``--x``, ``--rise``:
`lists of UPPER_RETIME_X and UPPER_RETIME_MAX_RISE_DB; the others by ``--set``; the pass checks every onset the largest ``--rise`` lets through), and with ``--list``
every move of the first setting (key, truth-relative ms, the fit's fractions; with another key's
planned strike near the best step, the fundamental band's gain there over our onset: the
neighbour gate, UPPER_RETIME_FUND_GAIN).

    A=/work/shared/data/asap; nice .venv/bin/python bench/upper_retime.py --voice rich --cache /tmp/takes18r \
        --random 1 2 3 [--midi ...] [--x 0.95 0.9] [--rise 25 15] [--list] [--dump F]
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector_takes import OFFSET_S, add_row_args, intended_onsets, score, set_constants, takes  # noqa: E402

from robo_player.hearing import detector as dm  # noqa: E402
from robo_player.hearing.detector import Detector, Onset  # noqa: E402
from robo_player.hearing.stepfit import step_check  # noqa: E402


@dataclass
class Checked:
    """One onset the pass checked: it, the fit's (step s, best, at), whether the search
    gave it (else the informed stage: checked whatever its rise), the window."""

    o: Onset
    fit: tuple[float, float, float] | None
    searched: bool
    lo: float
    hi: float
    step_db: float = float("inf")  # the key's salience's largest rise within UPPER_RETIME_STEP_REACH_S of the step
    # where another key's planned strike lies within UPPER_RETIME_NEIGHBOUR_S of the step: what a
    # step there removes of the fundamental band's residual minus what one at the onset removes
    fund_gain: float | None = None


def gated(c: Checked, x: float, rise: float, left_x: float = 0.0) -> Onset:
    """``c``'s onset after the rule with these gates (the detector's other constants;
    ``left_x``: a step at the onset must leave over this x the best's residual)."""
    o = c.o
    if c.fit is None or (c.searched and o.rise_db >= rise):
        return o
    t_step, best, at = c.fit
    if (best < dm.UPPER_RETIME_MIN_BEST or at >= x * best or 1.0 - at <= left_x * (1.0 - best)
            or abs(t_step - o.t_s) <= dm.UPPER_RETIME_MIN_S
            or not c.lo + dm.UPPER_RETIME_EDGE_S <= t_step <= c.hi - dm.UPPER_RETIME_EDGE_S):
        return o
    need_db = dm.UPPER_RETIME_SURE_STEP_DB if best >= dm.UPPER_RETIME_SURE_BEST else dm.UPPER_RETIME_STEP_DB
    if not c.searched and best >= dm.UPPER_RETIME_INFORMED_BEST:
        need_db = float("-inf")  # (the informed stage's onset, a sure enough best step)
    if c.step_db < need_db:
        return o
    if c.fund_gain is not None and c.fund_gain < dm.UPPER_RETIME_FUND_GAIN:
        return o  # (the neighbour gate: Detector._neighbours_step)
    return Onset(t_step, o.pitch, o.velocity, o.rise_db, o.risen, o.sure)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_row_args(ap, cache=True)
    ap.add_argument("--x", type=float, nargs="+", default=[dm.UPPER_RETIME_X])
    ap.add_argument("--rise", type=float, nargs="+", default=[dm.UPPER_RETIME_MAX_RISE_DB])
    ap.add_argument("--list", action="store_true", help="every move of the first setting")
    ap.add_argument("--dump", type=Path, help="pickle every take's checked onsets and truth here")
    args = ap.parse_args()
    set_constants(args.set)
    dm.UPPER_RETIME = True  # (the bench logs the rule's fits and gates them itself: on whatever --set says)
    dm.UPPER_RETIME_MAX_RISE_DB = max(args.rise)  # the pass checks all that any setting may
    log: list[Checked] = []
    by_informed: set[int] = set()  # the onsets the informed stage gave (checked whatever their rise)
    inform = Detector.informed

    def informed(self: Detector, *a: object, **k: object) -> Onset | None:
        o = inform(self, *a, **k)  # type: ignore[arg-type]
        if o is not None:
            by_informed.add(id(o))
        return o

    Detector.informed = informed  # type: ignore[method-assign]

    def logged(self: Detector, o: Onset, t_lo_s: float, t_hi_s: float, strikes: list[tuple[float, int]],
               informed: bool = False) -> Onset:
        fit = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s)
        step_db = float("-inf")
        if fit is not None:
            r, hop_s = self.rise_db(o.pitch), self.hop / self.sr
            i = int(round(fit[0] / hop_s))
            reach = int(round(dm.UPPER_RETIME_STEP_REACH_S / hop_s))
            step_db = float(r[max(0, i - reach) : i + reach + 1].max())
        fund_gain = None
        if fit is not None and any(q != o.pitch and abs(u - fit[0]) < dm.UPPER_RETIME_NEIGHBOUR_S for u, q in strikes):
            at_o = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, o.t_s, partials=(1,))
            at_step = step_check(self.y, self.sr, o.pitch, t_lo_s, t_hi_s, strikes, fit[0], partials=(1,))
            if at_o is not None and at_step is not None:
                fund_gain = at_step[2] - at_o[2]
        log.append(Checked(o, fit, id(o) not in by_informed, t_lo_s, t_hi_s, step_db, fund_gain))
        return o

    Detector._upper_retime = logged  # type: ignore[method-assign,assignment]
    settings = [(x, r) for x in args.x for r in args.rise]
    tot: dict[tuple[float, float], list[int]] = {s: [0, 0] for s in settings}
    dump: list[tuple[str, list[Checked], list[Onset]]] = []
    for take in takes(args, args.cache):
        log.clear()
        by_informed.clear()
        before = intended_onsets(take.detector(), take)
        sb = score(take, before)
        if args.dump is not None:
            dump.append((take.name, list(log), before))
            args.dump.write_bytes(pickle.dumps(dump))
        for s in settings:
            x, r = s
            new = {id(c.o): gated(c, x, r) for c in log}
            after = [new.get(id(o), o) for o in before]
            sa = score(take, after)
            moved = sum(1 for c in log if new[id(c.o)] is not c.o)
            tot[s][0] += len(sb.timed_off)
            tot[s][1] += len(sa.timed_off)
            print(f"{take.name:<36} x {x:.2f} rise {r:4.1f}: F1 {sb.f1:.3f} -> {sa.f1:.3f} "
                  f"off {len(sb.timed_off):>2} -> {len(sa.timed_off):<2} unheard {len(sb.unheard)} -> {len(sa.unheard)} "
                  f"false {sb.false} -> {sa.false} checked {len(log)} moved {moved}", flush=True)
            if args.list and s == settings[0]:
                truth = take.struck
                for c in log:
                    r_o = new[id(c.o)]
                    u = (c.o.t_s - OFFSET_S) * 1e6
                    near = [t for t, p in truth if p == c.o.pitch and abs(t - u) < 100_000]
                    t = min(near, key=lambda t: abs(t - u)) if near else None
                    err = "none within 100 ms" if t is None else f"{(u - t) / 1e3:+6.1f}"
                    stp = "-" if c.fit is None or t is None else f"{((c.fit[0] - OFFSET_S) * 1e6 - t) / 1e3:+6.1f}"
                    fr = "" if c.fit is None else f"best {c.fit[1]:.3f} at/best {c.fit[2] / max(c.fit[1], 1e-9):.3f}"
                    fr += "" if c.fund_gain is None else f" fundamental {c.fund_gain:+.3f}"
                    flag = "MOVED" if r_o is not c.o else "     "
                    if r_o is not c.o or (t is not None and abs(u - t) > 20_000):
                        print(f"    {flag} key {c.o.pitch} rise {c.o.rise_db:4.1f} {'search' if c.searched else 'informed'} "
                              f"err {err} step {stp} {fr}")
    for s, (b, a) in tot.items():
        print(f"total x {s[0]:.2f} rise {s[1]:4.1f}: timed off {b} -> {a}")


if __name__ == "__main__":
    main()
