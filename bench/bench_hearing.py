"""Hearing through audio on the hidden-truth simulator (issue 11 targets).

1. Calibration through the room microphone (``sim://?sensor=audio``: reverb, noise at
   ``--snr`` dB, an unknown clock offset, a drift drawn in +-100 ppm) beside today's
   note-level sensor, on the same truth: strikes per key, the curves against the truth,
   and a piece played with each calibration on a truth-exact listener (no sensor noise)
   - onset error p99 (absolute, and around the performance's mean shift) and mean
   |velocity error|.
2. The key-unknown detector on rendered performances: note F1 (same pitch, onset
   within 20 ms) and the median onset error, after the one clock offset.

    .venv/bin/python bench/bench_hearing.py --keys 88 --seed 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_calibration import curve_errors, truth_latency_us  # noqa: E402
from detector_takes import (  # noqa: E402
    AFTER_S,
    BEFORE_S,
    OFFSET_S,
    add_row_args,
    fakes_heard,
    intended_onsets,
    random_piece,
    score,
    set_constants,
    takes,
)

from robo_player.calibrator import calibrate_session  # noqa: E402
from robo_player.driver import open_port  # noqa: E402
from robo_player.errors import RoboPlayerError  # noqa: E402
from robo_player.hearing import detector as det_mod  # noqa: E402
from robo_player.hearing.detector import Detector  # noqa: E402
from robo_player.planner.piano import plan_piano  # noqa: E402
from robo_player.planner.report import Fate  # noqa: E402
from robo_player.score import Score  # noqa: E402
from robo_player.spec import load_spec  # noqa: E402


def play_errors(spec, cal, seed: int, score: Score, notes: list | None = None,  # noqa: ANN001
                spread: int | None = None) -> dict[str, float]:
    """Onset p99 and |velocity error| of ``score`` played with ``cal`` (a truth-exact
    listener); ``notes`` not None: each matched note's (pitch, onset error us,
    velocity target, planned latency us) appended to it (``--why``)."""
    plan, report = plan_piano(score, spec, cal)
    url = "sim://" if spread is None else f"sim://?spread={spread}"  # None: the simulator's default
    with open_port(url, spec, truth_seed=seed, timing_sd_us=0, loudness_sd=0) as dev:
        perf = dev.play(plan)
    heard: dict[int, list[tuple[int, float]]] = {}
    for h in perf.heard:
        heard.setdefault(h.pitch, []).append((h.t_us, h.velocity))
    on, ve = [], []
    for o in report.outcomes:
        if o.fate is Fate.DROPPED or o.velocity_target is None or not heard.get(o.pitch_out):
            continue
        t, v = min(heard[o.pitch_out], key=lambda c: abs(c[0] - o.target_t_us))
        if abs(t - o.target_t_us) <= 50_000:
            on.append(t - o.target_t_us)
            ve.append(abs(v - o.velocity_target))
            if notes is not None and o.strike_t_us is not None:
                notes.append((o.pitch_out, t - o.target_t_us, o.velocity_target, o.target_t_us - o.strike_t_us))
    a = np.array(on, dtype=float)
    if not len(a):  # nothing the plan meant was heard near its time
        raise ValueError(f"none of {len(report.outcomes)} planned notes heard within 50 ms")
    return {
        "n": float(len(a)),
        "p99_ms": float(np.percentile(np.abs(a), 99) / 1000),
        "shift_ms": float(np.mean(a) / 1000),
        "p99_rel_ms": float(np.percentile(np.abs(a - a.mean()), 99) / 1000),
        "vel": float(np.mean(ve)),
    }


def calibration_part(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)
    pitches = [k.pitch for k in spec.keys if args.range[0] <= k.pitch <= args.range[1]]
    if args.keys < len(pitches):
        pitches = [pitches[int(i)] for i in np.linspace(0, len(pitches) - 1, args.keys)]
    piece = random_piece(100 + args.seed)
    print(f"calibration, {spec.name}, truth seed {args.seed}, {len(pitches)} keys; "
          f"played: a random piece (not shipped), {len(piece.notes)} notes")
    print(f"{'sensor':<34} {'strikes/key':>11} {'wall s':>7} {'lat err mean/p99 us':>20} "
          f"{'vel err mean':>12} {'onset p99 ms':>12} {'shift ms':>9} {'p99 around shift':>16} {'|vel err|':>9}")
    spread_opt = "" if args.spread is None else f"&spread={args.spread}"
    audio_url = f"sim://?sensor=audio&snr_db={args.snr}{spread_opt}" + "".join(f"&{o}" for o in args.room)
    no_click = replace(spec, sync_click=None)
    rows = [("note-level (sensor=notes)", f"sim://?sensor=notes{spread_opt}", spec)]
    if spec.sync_click is not None:
        rows.append((f"audio+click ({args.snr:g} dB, room, drift)", audio_url, spec))
    rows.append((f"audio, no click ({args.snr:g} dB)", audio_url, no_click))
    for name, url, sp in rows:
        if args.only and args.only not in name:
            continue
        spec = sp
        dev = open_port(url, spec, truth_seed=args.seed, sensor_seed=args.seed)
        rounds: list[tuple[list, list]] = []
        undo = record_rounds(dev, rounds) if args.why else None
        t0 = time.perf_counter()
        try:
            cal, rep = calibrate_session(dev, spec, pitches=pitches, max_strikes_per_key=14)
        except RoboPlayerError as err:
            print(f"{name:<34} failed: {err}")
            continue
        finally:
            if undo is not None:
                undo()
        wall = time.perf_counter() - t0
        truth = dev._truth  # the bench may read it; the calibrator may not
        dev.close()
        ce = curve_errors(_only(cal, pitches), truth, spec)
        notes: list = []
        try:
            pe = play_errors(spec, cal, args.seed, _restrict(piece, pitches), notes, args.play_spread)
        except (RoboPlayerError, ValueError) as err:
            print(f"{name:<34} {rep.strikes_per_key:>11.1f} {wall:>7.0f} "
                  f"{ce['lat_mean_us']:>9.0f}/{ce['lat_p99_us']:<10.0f} {ce['vel_mean']:>12.2f}  play failed: {err}")
            continue
        print(f"{name:<34} {rep.strikes_per_key:>11.1f} {wall:>7.0f} "
              f"{ce['lat_mean_us']:>9.0f}/{ce['lat_p99_us']:<10.0f} {ce['vel_mean']:>12.2f} "
              f"{pe['p99_ms']:>12.2f} {pe['shift_ms']:>+9.2f} {pe['p99_rel_ms']:>16.2f} {pe['vel']:>9.2f}"
              + ("" if rep.audio_level_db is None else f"  level {rep.audio_level_db:+.2f} dB ({rep.audio_level_keys} keys)"))
        if args.why:
            why_calibration(spec, cal, truth, rounds, notes)


def record_rounds(dev, rounds: list) -> Callable[[], None]:  # noqa: ANN001
    """``--why``: keep each round's strikes as heard and the notes the device sounded
    (``perf.heard``: the sensor's 0.2 ms noise on the physics' onsets; the calibrator
    does not read them when there is audio). Returns the undo."""
    from robo_player.calibrator import session

    orig = session.listen_round

    def listen(perf, pending, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        orig(perf, pending, *a, **k)
        rounds.append((list(perf.heard), pending))

    session.listen_round = listen  # type: ignore[assignment]

    def undo() -> None:
        session.listen_round = orig  # type: ignore[assignment]

    return undo


def why_calibration(spec, cal, truth, rounds: list, notes: list) -> None:  # noqa: ANN001
    """``--why``: where the played onset errors come from. Each calibration strike heard
    against the sounded onset of its key (mis-heard: > 1 ms off; with the nearest other
    key's onset in the round, kin = an interval the detector can confuse), then the
    played notes' worst errors against the key's curve error at the planned drive."""
    from robo_player.calibrator.scheduler import KIN_INTERVALS

    bad: dict[int, list[tuple[float, object, str]]] = {}
    cats: dict[str, int] = {}
    n_heard = 0
    n_doubt = 0  # strikes the detector marked doubtful (Onset.sure False), and of them mis-heard
    n_doubt_bad = 0
    for rno, (sounded, pending) in enumerate(rounds):
        for s in pending:
            if not s.heard:
                continue
            n_heard += 1
            n_doubt += s.doubtful
            t_h = s.t_us + s.latency_us
            mine = [h.t_us for h in sounded if h.pitch == s.pitch and h.t_us >= s.t_us]
            if not mine:
                k = "heard, key silent"
                err = math.inf
            else:
                t_true = min(mine, key=lambda u: abs(u - t_h))  # noqa: B023
                err = t_h - t_true
                if abs(err) <= 1000:
                    continue
                near = [(abs(h.t_us - t_true), h.pitch - s.pitch) for h in sounded
                        if h.pitch != s.pitch and abs(h.t_us - t_true) < 300_000]
                dt, dp = min(near) if near else (math.inf, 0)
                kin = "kin" if abs(dp) in KIN_INTERVALS else "other"
                k = (f"{'1-5' if abs(err) < 5000 else '>5'} ms off, "
                     + (f"{kin} key within {'100' if dt < 100_000 else '300'} ms" if near else "alone"))
                k += f", {'probe' if s.probe_gap_us is not None else 'strike'}"
                k += f" (near {dp:+d} at {dt / 1000:.0f} ms)" if near else ""
            n_doubt_bad += s.doubtful
            k += ", doubtful" if s.doubtful else ""
            bad.setdefault(s.pitch, []).append((err, s, f"round {rno}: {k}"))
            key = k.split(" (near")[0].removesuffix(", doubtful")
            cats[key] = cats.get(key, 0) + 1
    print(f"    why: {n_heard} strikes heard; {sum(cats.values())} mis-heard (> 1 ms off the sounded onset); "
          f"{n_doubt} doubtful (the energy fit's alone), {n_doubt_bad} of them mis-heard:")
    for k, n in sorted(cats.items(), key=lambda kv: -kv[1]):
        print(f"      {n:>4}  {k}")
    for p, lst in sorted(bad.items()):
        for err, s, what in lst:
            print(f"      key {p:>3} drive {s.drive:.3f} heard {err / 1000:+7.2f} ms  {what}")  # type: ignore[attr-defined]
    if not notes:
        return
    a = np.array([e for _, e, _, _ in notes], dtype=float)
    q = float(np.percentile(np.abs(a), 99))
    print(f"    why: played {len(a)} notes, onset p99 {q / 1000:.2f} ms; the notes past 1 ms "
          "(planned latency, the truth's at that drive; the key's mis-heard strikes):")
    for p, e, vt, lat in sorted(notes, key=lambda n: -abs(n[1])):
        if abs(e) <= 1000:
            break
        c = cal.keys[p]
        pm = spec.key(p).pwm_max
        d = round(c.drive_for_velocity(vt) * pm) / pm
        t_lat = truth_latency_us(truth.key(p), d)
        print(f"      key {p:>3} v {vt:5.1f} drive {d:.3f}: onset {e / 1000:+6.2f} ms, planned latency "
              f"{lat / 1000:6.2f} ms, truth {t_lat / 1000:6.2f} ms; {len(bad.get(p, []))} mis-heard strikes")
    keys_bad = set(bad)
    rest = np.array([e for p, e, _, _ in notes if p not in keys_bad], dtype=float)
    if len(rest):
        print(f"    why: onset p99 over the {len(rest)} notes of keys with no mis-heard strike: "
              f"{np.percentile(np.abs(rest), 99) / 1000:.2f} ms")


def _only(cal, pitches):  # noqa: ANN001, ANN202
    import copy

    c = copy.copy(cal)
    c.keys = {p: k for p, k in cal.keys.items() if p in pitches}
    return c


def _restrict(score: Score, pitches: list[int]) -> Score:
    keep = set(pitches)
    return Score(notes=[n for n in score.notes if n.pitch in keep])


def detector_part(args: argparse.Namespace) -> None:
    print("detector on rendered performances (sim://?sensor=audio, 30 dB SNR, offset 0.1 s): "
          "key unknown (blind), and with the plan's notes known (intended; verify)")
    print(f"{'piece':<40} {'mode':<9} {'notes':>6} {'heard':>6} {'precision':>9} {'recall':>7} {'F1':>6} "
          f"{'median err ms':>13} {'median |err-med| ms':>19} {'wall s':>7} {'x real time':>11} {'fakes heard':>14}")
    # as verify and the closed loop plan: with the device's calibration (note-level sensor)
    print(f"plan: {args.plan} (the intended times the detector is given)")
    for take in takes(args, calibrated=args.plan == "calibrated"):
        det = take.detector()
        t0 = time.perf_counter()
        informed = intended_onsets(det, take, informed=not args.no_informed)
        wall_informed = take.blind_wall_s + time.perf_counter() - t0
        fake_col = ""
        if not args.no_fakes:
            fakes, heard_fakes, with_fakes = fakes_heard(det, take, args.seed, informed=not args.no_informed)
            n_heard = sum(heard_fakes)
            fake_col = f" {n_heard:>5}/{len(fakes):<4} {n_heard / max(1, len(fakes)):>4.2f}"
            if args.why:
                fake_why(with_fakes, fakes, BEFORE_S, AFTER_S)
        for mode, ons, wall in (("blind", take.blind, take.blind_wall_s), ("intended", informed, wall_informed)):
            s = score(take, ons)
            print(f"{take.name:<40} {mode:<9} {len(take.truth):>6} {len(s.heard):>6} {s.precision:>9.3f} "
                  f"{s.recall:>7.3f} {s.f1:>6.3f} {s.median_ms:>+13.2f} {s.spread_ms:>19.2f} {wall:>7.1f} "
                  f"{wall / take.seconds:>11.2f}" + (fake_col if mode == "intended" else ""))
            if args.why:
                why(take.truth, s.heard, s.pairs)
                if mode == "blind":
                    stages(det, take.truth, s.pairs, OFFSET_S)


def fake_why(ons, fakes: list[tuple[float, int, int]], before_s: float, after_s: float) -> None:  # noqa: ANN001
    """``--why``: the fakes heard, by their interval from the struck note they were placed beside."""
    by: dict[int, list[int]] = {}
    for t, q, d in fakes:
        heard = any(o.pitch == q and -before_s <= o.t_s - t <= after_s for o in ons)
        n = by.setdefault(d, [0, 0])
        n[0] += heard
        n[1] += 1
    print("    fakes heard by interval:", ", ".join(f"{d:+d} {h}/{n}" for d, (h, n) in sorted(by.items())))


def why(sounded: np.ndarray, heard: list[tuple[int, int]], pairs: dict[int, int]) -> None:
    """Where the detector fails: the misses by velocity, chord and cause, and the false
    onsets by their relation to the nearest sounded note (same key = heard at the wrong
    time; semitone or tone; octave, twelfth and above; other)."""
    truth = [(int(t), int(p), float(v)) for t, p, v in sounded]
    used = set(pairs.values())
    miss: dict[str, int] = {}
    for i, (t, p, v) in enumerate(truth):
        if i in pairs:
            continue
        band = "v<40" if v < 40 else "v40-80" if v < 80 else "v>=80"
        chord = "chord" if any(abs(u - t) < 30_000 and q != p for u, q, _ in truth) else "alone"
        late = any(q == p and 20_000 <= abs(u - t) < 100_000 for u, q in heard)
        for k in (band, chord, "heard 20-100 ms off" if late else "not heard near"):
            miss[k] = miss.get(k, 0) + 1
    fp: dict[str, int] = {}
    for j, (t, p) in enumerate(heard):
        if j in used:
            continue
        near = [q - p for u, q, _ in truth if abs(u - t) < 30_000]
        if any(q == p and abs(u - t) < 100_000 for u, q, _ in truth):
            k = "same key 20-100 ms off"
        elif any(abs(d) <= 2 for d in near):
            k = "semitone/tone of a note"
        elif any(abs(d) in (12, 19, 24, 28, 31, 34, 36) for d in near):
            k = "octave/twelfth+ of a note"
        else:
            k = "chord" if near else "alone"
        fp[k] = fp.get(k, 0) + 1
    print("    misses:", ", ".join(f"{k} {n}" for k, n in sorted(miss.items())))
    print("    false: ", ", ".join(f"{k} {n}" for k, n in sorted(fp.items())))


def stages(det: Detector, sounded: np.ndarray, pairs: dict[int, int], offset_s: float) -> None:
    """Key unknown: the stage of :meth:`Detector.detect` at which each missed note was
    lost, at the frame of its key's largest rise within -16..+24 ms of its onset: no rise
    (< BLIND_RISE_DB), too few partials risen (< BLIND_MIN_FRACTION), the owner test
    (another key took the new sound), the fine pitch (a semitone off), or heard but
    timed > 20 ms off or merged."""
    out: dict[str, int] = {}
    hop_s = det.hop / det.sr
    for i, (t_us, pitch, _) in enumerate(sounded):
        if i in pairs:
            continue
        p = int(pitch)
        t = t_us * 1e-6 + offset_s
        r = det.rise_db(p)
        i0 = int(t / hop_s)
        j = max(0, i0 - 8) + int(np.argmax(r[max(0, i0 - 8) : i0 + 12]))
        if r[j] < det_mod.BLIND_RISE_DB:
            k = "no rise"
        elif det.risen_fraction(p, j) < det_mod.BLIND_MIN_FRACTION:
            k = "few partials rose"
        else:
            t_mid = det._midpoint(p, j, predicted=True)  # as detect times it
            kin = [p + d for d in det_mod.KIN]
            est = det.fine_pitch(p, t_mid)
            if det.new_share(p, t_mid, kin, det_mod.BLIND_RELATIVE) < det_mod.BLIND_MIN_NEW:
                k = "owner test"
            elif est is not None and abs(est - p) > det_mod.FINE_PITCH_TOL:
                k = "fine pitch"
            else:
                k = "timed off / merged"
        out[k] = out.get(k, 0) + 1
    print("    blind misses by stage:", ", ".join(f"{k} {n}" for k, n in sorted(out.items())))


def strikes_part(args: argparse.Namespace) -> None:
    """Known-key strikes (the calibration's question) through the room: each key of
    ``--range`` struck three times in each of three takes (room seeds ``--seed`` ..
    ``--seed`` + 2: each draws its own reverb tail), velocity 20-115, an unrelated key
    struck between, 0.25 s apart; ``find`` in a window of +-12 ms around the truth. The
    onset |error| and a key's mean error over one take (what its curve carries), with
    the detector as it is and with the energy fit alone (below DIRECT_MAX_PITCH too)."""
    from robo_player.performance import HeardNote
    from robo_player.sim.room import Room, RoomTake

    lo, hi = max(21, args.range[0]), min(108, args.range[1])
    room = {k: float(v) for k, v in (o.split("=", 1) for o in args.room)}
    offset = 0.2
    takes = []
    for seed in range(args.seed, args.seed + 3):
        rng = np.random.default_rng(seed)
        notes, test, t = [], [], 0.3
        for _ in range(3):
            for p in range(lo, hi + 1):
                notes.append(HeardNote(int(t * 1e6), p, float(rng.uniform(20, 115)), int(t * 1e6) + 100_000))
                test.append(len(notes) - 1)
                t += 0.25
                q = p + int(rng.choice([29, 30, 32, 33, 34, 37, 39, 41, 42, 44]))
                q = q if q <= 108 else p - 29
                notes.append(HeardNote(int(t * 1e6), q, float(rng.uniform(20, 115)), int(t * 1e6) + 100_000))
                t += 0.25
        kw = {"offset_s": offset, "drift_ppm": 0.0, "snr_db": args.snr, "seed": seed, **room}
        takes.append((seed, notes, test, RoomTake(Room(**kw), notes, [], 0).samples()))  # type: ignore[arg-type]
    keep = det_mod.DIRECT_MAX_PITCH
    below = keep if args.direct_below is None else args.direct_below
    print(f"known-key strikes, keys {lo}..{hi}, room seeds {args.seed}..{args.seed + 2}, snr {args.snr:g} dB"
          + (f", {' '.join(args.room)}" if args.room else ""))
    print(f"{'onset':<28} {'strikes':>7} {'missed':>6} {'|err| p50':>9} {'p90':>6} {'p99':>6} "
          f"{'mean':>6} {'key bias p90':>12} {'max':>6}  (ms)")
    for name, direct in (("energy fit alone", 0), (f"as detected (direct < {below})", below)):
        det_mod.DIRECT_MAX_PITCH = direct
        errs: list[float] = []
        bias: list[float] = []
        missed = 0
        for _, notes, test, y in takes:
            det = Detector(y, 48000)
            by: dict[int, list[float]] = {}
            for i in test:
                h = notes[i]
                ta = h.t_us / 1e6 + offset
                o = det.find(h.pitch, ta - 0.012, ta + 0.012, others=[notes[i - 1].pitch] if i else [])
                if o is None:
                    missed += 1
                    continue
                by.setdefault(h.pitch, []).append((o.t_s - ta) * 1e3)
            for e in by.values():
                errs += e
                bias.append(abs(float(np.mean(e))))
        a = np.abs(np.array(errs))
        print(f"{name:<28} {len(a) + missed:>7} {missed:>6} {np.percentile(a, 50):>9.2f} {np.percentile(a, 90):>6.2f} "
              f"{np.percentile(a, 99):>6.2f} {np.mean(errs):>+6.2f} {np.percentile(bias, 90):>12.2f} {max(bias):>6.2f}")
    det_mod.DIRECT_MAX_PITCH = keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="piano-88-grand")
    add_row_args(ap, pieces=["bwv66.6"], random_default=None)  # the detector's rows, --seed, --set
    ap.add_argument("--keys", type=int, default=88, help="keys to calibrate (spread over the keyboard)")
    ap.add_argument("--snr", type=float, default=30.0)
    ap.add_argument("--range", type=int, nargs=2, default=[0, 127], metavar=("LO", "HI"),
                    help="calibrate keys in this pitch range only")
    ap.add_argument("--plan", choices=["calibrated", "default"], default="calibrated",
                    help="detector: plan with a calibration of the truth seed's piano (as verify does) "
                         "or with the spec's nominal curves (sessions 8-9: a soft note's intended time "
                         "is then up to 0.25 s early, outside the matcher's window)")
    ap.add_argument("--room", nargs="*", default=[], metavar="OPT=V",
                    help="more options of the room microphone (e.g. rt60_s=0: no reverb)")
    ap.add_argument("--only", default="", help="calibration: only the rows whose name has this")
    ap.add_argument("--spread", type=int, choices=[0, 1], default=None,
                    help="calibration: the strikes' own spread in the calibration (default: the simulator's, on)")
    ap.add_argument("--play-spread", type=int, choices=[0, 1], default=None,
                    help="calibration: ... and in the piece played after it (--spread 0 --play-spread 1: the "
                         "floor, a calibration of the exact instrument played with the spread)")
    ap.add_argument("--part", choices=["all", "calibration", "detector", "strikes"], default="all",
                    help="strikes: known-key strikes through the room, onset errors (not in all)")
    ap.add_argument("--direct-below", type=int, default=None, metavar="KEY",
                    help="strikes: time from the direct sound below this key (default: the detector's)")
    ap.add_argument("--no-informed", action="store_true",
                    help="detector: the plan-known search without its score-informed stage (Detector.informed)")
    ap.add_argument("--planned-min-new", type=float, default=None, metavar="NOISE_UNITS",
                    help="detector: the plan-known owner test's PLANNED_MIN_NEW (0: as before session 13)")
    ap.add_argument("--no-fakes", action="store_true",
                    help="detector: skip the honesty column (fake planned neighbours heard, see fake_neighbours)")
    ap.add_argument("--why", action="store_true", help="calibration: mis-heard strikes and the worst played notes by cause; "
                    "detector: misses and false onsets by cause")
    args = ap.parse_args()
    set_constants(args.set)
    if args.planned_min_new is not None:
        det_mod.PLANNED_MIN_NEW = args.planned_min_new
    if args.part in ("all", "calibration"):
        calibration_part(args)
    if args.part in ("all", "detector"):
        detector_part(args)
    if args.part == "strikes":
        strikes_part(args)


if __name__ == "__main__":
    main()
