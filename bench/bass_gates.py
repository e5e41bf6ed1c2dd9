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
the fakes the veto dropped. ``--steps``: the bass step rules instead (session 24; set them
on with ``--set BASS_VETO_STEP=True BASS_STEP_RESCUE=True``): every call of
``Detector._step_struck`` in the plan-known pass and the fakes' pass with its figures
(the step's fraction at the onset and its frequency share, the rescue's fit in its own
bands, the keys struck near it by semitones, the key's own last strike, the onset against
the plan) and, where it said yes, what it let in: a strike of the key within 20 ms
("right"), 20-100 ms ("off"), none ("false"), or a fake planned key ("FAKE"). ``--dump FILE``: every decision's arguments, outcome and
label (a pickle, for :mod:`bass_features`). Reads the truth only to say which note was
sounded.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Sequence
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
                own: Sequence[int], strikes: Sequence[tuple[float, int]], plan_s: float | None = None) -> Onset | None:
        r = rescue(self, pitch, t_lo_s, t_hi_s, sounding, own, strikes, plan_s)
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


class StepLog:
    """The bass step rules' calls (``Detector._step_struck``, also as ``_step_rescue``'s
    last test) of one pass, with their figures."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.kind = "veto"  # "rescue" inside Detector._step_rescue
        self.freq: tuple[float, float] | None = None  # the last step_frequency's answer
        self.own_fit: tuple[float, float] | None = None  # the rescue's last fit in its own bands


def install_steps(log: StepLog) -> None:
    """Wrap the bass step rules to record each call in ``log`` (decisions unchanged)."""
    struck_fn, rescue_fn, freq_fn, onset_fn = Detector._step_struck, Detector._step_rescue, dm.step_frequency, dm.step_onset

    def freq(*a: object, **k: object) -> tuple[float, float] | None:
        log.freq = freq_fn(*a, **k)  # type: ignore[arg-type]
        return log.freq

    def onset(*a: object, **k: object) -> tuple[float, float] | None:
        got = onset_fn(*a, **k)  # type: ignore[arg-type]
        if k.get("partials") is not None:
            log.own_fit = got
        return got

    def struck(self: Detector, o: Onset, t_lo_s: float, t_hi_s: float, strikes: Sequence[tuple[float, int]],
               plan_s: float | None = None) -> bool:
        log.freq = None
        r = struck_fn(self, o, t_lo_s, t_hi_s, strikes, plan_s)
        near = [(q - o.pitch, u) for u, q in strikes if abs(u - o.t_s) <= dm.BASS_VETO_STEP_NEAR_S]
        last = [o.t_s - u for u, q in strikes if q == o.pitch and u < o.t_s - dm.MIN_GAP_S]
        log.rows.append({"kind": log.kind, "pitch": o.pitch, "t": o.t_s, "plan": t_lo_s + dt.BEFORE_S if plan_s is None else plan_s, "yes": r,
                         "freq": log.freq, "own_fit": log.own_fit if log.kind == "rescue" else None,
                         "bands": Detector._step_bands(o.pitch, o.t_s, strikes), "near": near,
                         "last": min(last) if last else None})
        return r

    def rescue(self: Detector, pitch: int, t_lo_s: float, t_hi_s: float,
               strikes: Sequence[tuple[float, int]], plan_s: float | None = None) -> Onset | None:
        log.kind, log.own_fit = "rescue", None
        try:
            return rescue_fn(self, pitch, t_lo_s, t_hi_s, strikes, plan_s)
        finally:
            log.kind = "veto"

    dm.step_frequency = freq  # type: ignore[assignment]
    dm.step_onset = onset  # type: ignore[assignment]
    Detector._step_struck = struck  # type: ignore[method-assign]
    Detector._step_rescue = rescue  # type: ignore[method-assign]


def _step_row(take: dt.Take, row: dict[str, object], fakes: set[Key], what: str) -> str:
    """One step-rule call as a line: its label (what it let in, where it said yes), figures
    and the keys struck near it (semitones from ours, ms from the onset, their velocity:
    the truth's, for the reader only)."""
    p, t = int(row["pitch"]), float(row["t"])  # type: ignore[arg-type]
    truth = [(u * 1e-6 + dt.OFFSET_S, int(q), float(v)) for u, q, v in take.truth]
    own = [abs(u - t) for u, q, _ in truth if q == p]
    d = min(own, default=math.inf)
    if (round(float(row["plan"]), 4), p) in fakes:  # type: ignore[arg-type]
        label = "FAKE"
    else:
        label = "right" if d <= 0.02 else "off" if d < 0.1 else "false"
    row["label"] = label
    freq, fit = row["freq"], row["own_fit"]
    near = []
    for dq, u in row["near"]:  # type: ignore[attr-defined]
        v = min(((abs(w - u), vv) for w, q, vv in truth if q == p + dq), default=(math.inf, math.nan))
        near.append(f"{dq:+d}@{(u - t) * 1e3:+.0f}ms v{v[1]:.0f}" if v[0] < 0.05 else f"{dq:+d}@{(u - t) * 1e3:+.0f}ms unstruck")
    last = row["last"]
    return (f"  {what:<6} {'YES' if row['yes'] else 'no ':<3} {label:<5} {row['kind']:<6} key {p} t {t:7.3f} "
            f"step-plan {(t - float(row['plan'])) * 1e3:+4.0f} ms "  # type: ignore[arg-type]
            f"at {'-' if freq is None else f'{freq[0]:.2f}'} share {'-' if freq is None else f'{freq[1]:.3f}'} "  # type: ignore[index]
            f"fit {'-' if fit is None else f'{fit[1]:.2f}'} bands {row['bands']} "  # type: ignore[index]
            f"last {'-' if last is None else f'{float(last):.2f}s'} truth-d {d * 1e3:.0f} ms near [{', '.join(near)}]")  # type: ignore[arg-type]


def plan_pass(det: Detector, intended: Sequence[tuple[float, int]], extra: Sequence[tuple[float, int]]) -> list[Onset]:
    """(``--bass-only``) the plan-known pass looking for the planned keys below
    BASS_MAX_PITCH only (and ``extra``'s), the plan's other notes its context: the bass
    keys' decisions as in the whole pass but for the joint second opinion's (it weighs the
    notes looked for), at a fraction of its cost."""
    every = sorted([*intended, *extra])
    bass = [x for x in every if x[1] < dm.BASS_MAX_PITCH]
    rest = [x for x in every if x[1] >= dm.BASS_MAX_PITCH]
    return det.detect_intended(bass, dt.BEFORE_S, dt.AFTER_S, [], context=rest)


def _step_rows(take: dt.Take, rows: list[dict[str, object]], fakes: set[Key], name: str,
               dump: list[dict[str, object]], tally: Counter[str], show: Callable[[dict[str, object]], bool]) -> None:
    """One pass's step-rule calls of ``take``: each kept in ``dump``, printed where ``show``
    says, its yes counted in ``tally`` by what it let in."""
    for row in list(rows):
        line = _step_row(take, row, fakes, name)
        dump.append({"take": take.name, "pass": name, **row})
        if show(row):
            print(line, flush=True)
        if row["yes"]:
            tally[f"{name} pass yes {row['kind']} {row['label']}"] += 1


def steps_main(args: argparse.Namespace) -> None:
    """``--steps``: the bass step rules' calls per take, both passes, and what their yes let in."""
    log = StepLog()
    install_steps(log)
    tally: Counter[str] = Counter()
    dump: list[dict[str, object]] = []
    for take in dt.takes(args, args.cache):
        det = take.detector()
        log.rows.clear()
        if args.bass_only:
            plan_pass(det, take.intended, ())
            print(f"{take.name}:", flush=True)
        else:
            res = dt.score(take, dt.intended_onsets(det, take))
            print(f"{take.name}: F1 {res.f1:.3f} off {len(res.timed_off)} unheard {len(res.unheard)} false {res.false}",
                  flush=True)
        _step_rows(take, log.rows, set(), "plan", dump, tally, lambda row: bool(row["yes"] or args.all))
        log.rows.clear()
        if args.bass_only:
            fakes = dt.fake_neighbours(take.intended, take.struck, dt.OFFSET_S, args.seed)
            ons = plan_pass(det, take.intended, [(t, q) for t, q, _ in fakes])
            heard_f = [any(o.pitch == q and abs(o.t_s - t) <= 0.1 for o in ons) for t, q, _ in fakes if q < dm.BASS_MAX_PITCH]
        else:
            fakes, heard_f, _ = dt.fakes_heard(det, take, args.seed)
        fk = {(round(t, 4), q) for t, q, _ in fakes}
        print(f"  fakes heard {sum(heard_f)}/{len(heard_f)}", flush=True)
        _step_rows(take, log.rows, fk, "fakes", dump, tally,
                   lambda row: row["label"] == "FAKE" and bool(row["yes"] or args.all))
        if args.dump:
            with args.dump.open("wb") as f:
                pickle.dump(dump, f)
    print("the step rules' yes, by what they let in:")
    for c, n in sorted(tally.items()):
        print(f"  {n:3d}  {c}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dt.add_row_args(ap, cache=True)
    ap.add_argument("--all", action="store_true", help="every bass veto and rescue decision")
    ap.add_argument("--dump", type=Path, help="write every decision's arguments and label here (a pickle)")
    ap.add_argument("--steps", action="store_true", help="the bass step rules' calls instead (docstring)")
    ap.add_argument("--bass-only", action="store_true",
                    help="--steps: look for the bass keys only, the plan's other notes as context (faster)")
    args = ap.parse_args()
    dt.set_constants(args.set)
    if args.steps:
        steps_main(args)
        return
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
