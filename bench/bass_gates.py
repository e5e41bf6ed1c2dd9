"""The bass gates' features (issue 11, session 22): per cached take, every decision of the
bass veto (``Detector._vetoed`` below BASS_MAX_PITCH) and the bass rescue
(``Detector._bass_rescue``) in the plan-known pass and in the fakes' pass, with the
features they test and the step fit's figures in the key's own bands (hearing/stepfit.py),
so that a gate is moved only where the sounded notes it refuses and the fakes it exists to
stop are seen to separate. Per sounded bass note missed ("UNHEARD", "OFF"; the bench's
scoring) and per fake heard or refused by these gates: the path (veto / rescue / search),
the cause (a note neither gate saw: the 4096-sample informed stage's), and:

- veto: the 8192-sample informed stage's loose ratio, with the key's fundamental free
  (``bass_tests``) its loose ratio and explained fraction, the 4096-sample informed rise,
  and the step fit at the search's onset (``step_check``: the fraction the best step
  removes, the fraction a step at the onset removes, the best's distance from it, ms);
- rescue: the 8192-sample stage's rise / loose ratio / explained fraction, the free
  fundamental's loose ratio and explained fraction, the salience's largest rise (dB), and
  the step fit over the window (``step_onset``: its onset from the planned time, ms, and
  the fraction it removes).

    A=/work/shared/data/asap; nice .venv/bin/python bench/bass_gates.py --voice rich --cache /tmp/takes18r \
        --random 1 2 3 [--midi ...] [--all]

``--all``: every bass veto and rescue decision, not only the misses, the fakes heard and
the fakes the veto dropped. ``--dump FILE``: every decision's arguments, outcome and
label (a pickle, for :mod:`bass_features`). Reads the truth only to say which note was
sounded.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detector_takes as dt  # noqa: E402

from robo_player.hearing import detector as dm  # noqa: E402
from robo_player.hearing.detector import Detector, Onset  # noqa: E402
from robo_player.hearing.stepfit import step_check, step_onset  # noqa: E402

Key = tuple[float, int]  # (planned audio s, rounded; key)


def _key(t_lo_s: float, pitch: int) -> Key:
    return round(t_lo_s + dt.BEFORE_S, 4), pitch


class Log:
    """The bass gates' decisions of one plan-known pass, by planned note."""

    def __init__(self) -> None:
        self.found: dict[Key, float | None] = {}
        self.plan: list[tuple[float, int]] = []
        self.rows: dict[Key, str] = {}
        self.cause: dict[Key, str] = {}
        # each decision's arguments (kind, pitch, t_lo_s, t_hi_s, sounding, own, strikes, the
        # search's onset or None, whether the note was kept / rescued), by planned note
        self.args: dict[Key, tuple[object, ...]] = {}

    def strikes(self, t: float, pitch: int) -> list[tuple[float, int]]:
        """The plan's other strikes that may sound in ``pitch``'s bands (as detect_intended gives them)."""
        hi = t + dt.AFTER_S + dm.STEP_POST_S
        # (``t`` is the planned time rounded to 0.1 ms: the note's own strike is the one of
        # its key within 1 ms; session 22's 1e-9 kept it, a column at our planned time in
        # the veto's step fit, which then removed little near it)
        return [x for x in self.plan if t - dm.INFORMED_RING_S <= x[0] <= hi and not (x[1] == pitch and abs(x[0] - t) < 1e-3)]


def _first(tests: list[tuple[bool, str]], otherwise: str) -> str:
    """The name of the first test that holds (a gate's cause), else ``otherwise``."""
    return next((name for held, name in tests if held), otherwise)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def install(log: Log) -> None:
    """Wrap the detector's bass gates to record their features in ``log`` (decisions unchanged)."""
    find, intended, vetoed, rescue = Detector.find, Detector.detect_intended, Detector._vetoed, Detector._bass_rescue

    def found(self: Detector, pitch: int, t_lo_s: float, t_hi_s: float, *a: object, **k: object) -> Onset | None:
        o = find(self, pitch, t_lo_s, t_hi_s, *a, **k)  # type: ignore[arg-type]
        if k.get("planned"):
            log.found[_key(t_lo_s, pitch)] = None if o is None else o.t_s
        return o

    def planned(self: Detector, plan: Sequence[tuple[float, int]], *a: object, **k: object) -> list[Onset]:
        log.plan = sorted(plan)
        return intended(self, plan, *a, **k)  # type: ignore[arg-type]

    def veto(self: Detector, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
             *a: object) -> bool:
        r = vetoed(self, pitch, t_lo_s, t_hi_s, sounding, *a)  # type: ignore[arg-type]
        if pitch >= dm.BASS_MAX_PITCH:
            return r
        k = _key(t_lo_s, pitch)
        _, loose, _ = self.bass.informed_tests(pitch, t_lo_s, t_hi_s, sounding)
        _, floose, fexpl = self.bass.bass_tests(pitch, t_lo_s, t_hi_s, sounding)
        irise = self.informed_rise(pitch, t_lo_s, t_hi_s, sounding)
        t_f = log.found.get(k)
        step = "-"
        if t_f is not None:
            got = step_check(self.y, self.sr, pitch, t_lo_s, t_hi_s, log.strikes(k[0], pitch), t_f)
            if got is not None:
                step = f"best {got[1]:.2f} at-onset {got[2]:.2f} best-from-onset {(got[0] - t_f) * 1e3:+.0f} ms"
        used = floose if loose < dm.BASS_VETO_LOOSE_X and dm.BASS_FREE_FUNDAMENTAL and fexpl >= dm.BASS_FREE_EXPLAINED else loose
        log.args[k] = ("veto", pitch, t_lo_s, t_hi_s, tuple(sounding), (), tuple(log.strikes(k[0], pitch)), t_f, not r)
        log.cause[k] = "veto: " + _first([(not r, "kept"), (used < dm.BASS_VETO_LOOSE_X, "loose ratio")], "informed rise")
        log.rows[k] = (f"{'dropped' if r else 'kept'} loose {_fmt(loose)} free {_fmt(floose)} explained {fexpl:.2f} "
                       f"rise4096 {irise:.0f} | step {step}")
        return r

    def rescued(self: Detector, pitch: int, t_lo_s: float, t_hi_s: float, sounding: Sequence[int],
                own: Sequence[int], strikes: Sequence[tuple[float, int]]) -> Onset | None:
        r = rescue(self, pitch, t_lo_s, t_hi_s, sounding, own, strikes)
        k = _key(t_lo_s, pitch)
        b = self.bass
        rise, loose, expl = b.informed_tests(pitch, t_lo_s, t_hi_s, sounding)
        _, floose, fexpl = b.bass_tests(pitch, t_lo_s, t_hi_s, sounding)
        got = b._informed_onset(pitch, t_lo_s, t_hi_s, own, 0.0)
        fit = step_onset(self.y, self.sr, pitch, t_lo_s, t_hi_s, strikes)
        step = "-" if fit is None else f"{(fit[0] - k[0]) * 1e3:+.0f} ms {fit[1]:.2f}"
        log.args[k] = ("rescue", pitch, t_lo_s, t_hi_s, tuple(sounding), tuple(own), tuple(strikes), None,
                       r is not None)
        log.cause[k] = "rescue: " + _first([(r is not None, "rescued"), (rise < dm.INFORMED_MIN_RISE, "rise"),
                                            (loose < dm.INFORMED_LOOSE_X, "loose ratio"),
                                            (expl < dm.INFORMED_EXPLAINED, "explained")], "heard, not timed")
        log.rows[k] = (f"{'rescued' if r is not None else 'refused'} rise {rise:.0f} loose {_fmt(loose)} "
                       f"explained {expl:.2f} free {_fmt(floose)}/{fexpl:.2f} "
                       f"salience {'-' if got is None else f'{got[1]:.1f} dB'} | step {step}")
        return r

    Detector.find = found  # type: ignore[method-assign]
    Detector.detect_intended = planned  # type: ignore[method-assign]
    Detector._vetoed = veto  # type: ignore[method-assign]
    Detector._bass_rescue = rescued  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dt.add_row_args(ap, cache=True)
    ap.add_argument("--all", action="store_true", help="every bass veto and rescue decision")
    ap.add_argument("--dump", type=Path, help="write every decision's arguments and label here (a pickle)")
    args = ap.parse_args()
    dt.set_constants(args.set)
    log = Log()
    install(log)
    causes: Counter[str] = Counter()
    dump: list[dict[str, object]] = []
    for take in dt.takes(args, args.cache):
        det = take.detector()
        log.rows.clear()
        log.cause.clear()
        log.args.clear()
        ons = dt.intended_onsets(det, take)
        res = dt.score(take, ons)
        rows, cause, dargs = dict(log.rows), dict(log.cause), dict(log.args)
        print(f"{take.name}: F1 {res.f1:.3f}", flush=True)
        missed = {i: "UNHEARD" for i in res.unheard} | {i: "OFF" for i in res.timed_off}
        for i, (t_us, p) in enumerate(take.struck):
            t = t_us * 1e-6 + dt.OFFSET_S
            if p >= dm.BASS_MAX_PITCH:
                continue
            plan = min((x for x in take.intended if x[1] == p), key=lambda x: abs(x[0] - t), default=None)
            k = None if plan is None or abs(plan[0] - t) > 0.1 else (round(plan[0], 4), p)
            what = missed.get(i)
            if k in dargs:
                dump.append({"take": take.name, "label": what or "ok", "truth_s": t, "args": dargs[k]})
            if what is None and not (args.all and k in rows):
                continue
            c = cause.get(k, "informed stage (4096)") if k else "not planned"
            if what is not None:
                causes[f"{what} {c}"] += 1
            heard = ",".join(f"{(o.t_s - t) * 1e3:+.0f}" for o in ons if o.pitch == p and abs(o.t_s - t) < 0.1)
            print(f"  {what or 'ok':<7} {t:7.3f} s key {p} [{c}] heard [{heard}] :: {rows.get(k, '') if k else ''}",
                  flush=True)
        log.rows.clear()
        log.cause.clear()
        log.args.clear()
        fakes, heard_f, _ = dt.fakes_heard(det, take, args.seed)
        for (t, q, d), h in zip(fakes, heard_f, strict=True):
            k = (round(t, 4), q)
            if q >= dm.BASS_MAX_PITCH or k not in log.rows:
                continue
            c = log.cause.get(k, "")
            dump.append({"take": take.name, "label": "FAKE heard" if h else "FAKE refused", "interval": d,
                         "args": log.args[k]})
            if h:
                causes[f"FAKE heard {c}"] += 1
            elif c.startswith("veto"):
                causes[f"FAKE refused {c}"] += 1
            if h or args.all or c.startswith("veto"):
                print(f"  FAKE {'heard' if h else 'refused'} {t:7.3f} s key {q} ({d:+d}) [{c}] :: {log.rows[k]}", flush=True)
        if args.dump:  # (after each take: a long run's first rows are read while it goes on)
            with args.dump.open("wb") as f:
                pickle.dump(dump, f)
    print("by cause (bass notes missed; bass fakes heard or refused by the veto):")
    for c, n in sorted(causes.items()):
        print(f"  {n:3d}  {c}")


if __name__ == "__main__":
    main()
