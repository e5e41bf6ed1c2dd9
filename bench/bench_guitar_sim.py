"""The simulated guitar and bass after calibration on hidden truth, and Karplus-Strong speed.

    .venv/bin/python bench/bench_guitar_sim.py [--folk 12] [--chorales 6] [--truth-seed 3] [--sensor both]

Pieces the project does not ship, from music21's corpus (``pip install -e '.[corpus]'``):
folk tunes of the Essen collection, O'Neill's 1850 and Ryan's Mammoth Collection (every
k-th file of each, sorted by name) and 4-voice Bach chorales (bwv66.6, which the project
ships, left out), each at its written tempo (music21's 120 per quarter where the file
gives none), tied notes joined, velocity ``56 + 40 * beat strength`` (accents on the
beat), durations as written less 10 ms. The bass plays the chorales' bass lines an
octave down.

Per spec: a device with hidden truth ``--truth-seed`` is calibrated by listening
(``calibrate_guitar``), then every piece is planned with that calibration and played
on a fresh ``sim://`` with the same truth (a plan starts with the carriages at the
nut). Pooled over the pieces: notes unaltered (pitch, time and loudness as written; a
note cut where its string is needed next still counts, the issue's note end) and as
written (the written length too) / altered (why) / dropped, onset error
(played notes, heard - intended, ms), mean velocity error, buzzed notes, carriage faults,
picks while a carriage moved; the same without calibration (nominal curves) beside it.

``--sensor``: what the calibration hears through: ``notes`` (the note-level sensor, each
pick's onset and loudness with a little noise), ``audio`` (a microphone in the room:
``sim://?sensor=audio``, the guitar's ear, :mod:`robo_player.calibrator.guitar_listening`;
the take's level anchored on the strings' full-drive picks against the nominal),
``mic`` (the same through a measured microphone: the room's gain ``--room-gain-db``,
default -31 dB, away from the ear's reference, and the calibration told
``--mic-gain-db``, default -30.8:0.3, 0.2 dB off the truth as a real measurement is),
``both`` (the default: notes and audio) or ``all`` (notes, audio, mic); the pieces play
on the same truth.

Audio: ``render_audio`` (Karplus-Strong) of every performance, CPU seconds
(``time.process_time``: the machine is shared) against the seconds of audio, with the
caches cleared before each piece (cold) and over all pieces.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from robo_player.calibrator.fitting import KeyFit, curve_from_fit
from robo_player.calibrator.guitar import (
    GuitarCalibrationReport,
    calibrate_guitar,
    settle_written_us,
)
from robo_player.driver import open_port
from robo_player.hearing.level import parse_mic_gain
from robo_player.planner import plan
from robo_player.report import build_report
from robo_player.score import Note, Score
from robo_player.sim.guitar import audio
from robo_player.spec import load_spec
from robo_player.spec.string_calibration import StringCalibration

COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth")


def _score_of(sc: Any) -> Score:
    flat = sc.flatten()
    marks = list(flat.getElementsByClass("MetronomeMark"))
    us_q = 60e6 / (marks[0].getQuarterBPM() if marks else 120.0)
    notes: list[Note] = []
    for el in flat.notes:
        tie = getattr(el, "tie", None)
        if tie is not None and tie.type in ("stop", "continue"):
            continue
        on = round(float(el.offset) * us_q)
        ql = float(el.quarterLength)
        if tie is not None and tie.type == "start":  # join the tied notes that follow
            nxt = el.next("Note")
            while nxt is not None and nxt.tie is not None and nxt.tie.type in ("stop", "continue"):
                ql += float(nxt.quarterLength)
                nxt = nxt.next("Note") if nxt.tie.type == "continue" else None
        dur = max(20_000, round(ql * us_q) - 10_000)
        vel = int(56 + 40 * float(getattr(el, "beatStrength", 0.5) or 0.5))
        for p in el.pitches:
            notes.append(Note(int(p.midi), on, dur, min(127, vel)))
    notes.sort(key=lambda n: (n.onset_us, n.pitch))
    return Score(notes)


def folk_tunes(count: int) -> list[tuple[str, Score]]:
    from music21 import corpus

    out: list[tuple[str, Score]] = []
    per = max(1, count // len(COLLECTIONS))
    for coll in COLLECTIONS:
        paths = sorted(str(p) for p in corpus.getPaths() if coll in str(p))
        step = max(1, len(paths) // per)
        got = 0
        for path in paths[::step]:
            if got >= per:
                break
            sc = None
            for number in (1, 2, 3, 5, 10):  # one tune per file (the files hold many)
                try:
                    sc = _score_of(corpus.parse(path, number=number))
                    break
                except Exception:  # noqa: BLE001 - music21 raises many kinds for a missing number
                    continue
            if sc is None:
                continue
            if len(sc.notes) >= 16:
                out.append((f"{coll}/{Path(path).stem}", sc))
                got += 1
    return out


def chorales(count: int) -> list[tuple[str, Score]]:
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getComposer("bach")
                   if Path(str(p)).suffix in (".mxl", ".xml") and "bwv66.6" not in str(p))  # fmt: skip
    step = max(1, len(paths) // max(1, count))
    out: list[tuple[str, Score]] = []
    for path in paths[::step]:
        if len(out) >= count:
            break
        s = corpus.parse(path)
        if len(s.parts) != 4:
            continue
        out.append((f"bach/{Path(path).stem}", _score_of(s)))
    return out


def bass_line(score: Score) -> Score:
    """The lowest note of every onset, an octave down."""
    low: dict[int, Note] = {}
    for n in score.notes:
        if n.onset_us not in low or n.pitch < low[n.onset_us].pitch:
            low[n.onset_us] = n
    return Score(sorted((Note(n.pitch - 12, n.onset_us, n.duration_us, n.velocity)
                         for n in low.values()), key=lambda n: n.onset_us))  # fmt: skip


def truth_calibration(spec: Any, truth: Any) -> StringCalibration:
    """The calibration the hidden truth itself gives (the floor: what no calibration
    beats): each picker's exact curves, each contact's settle as the calibrator writes a
    bound that lands on it (:func:`~robo_player.calibrator.guitar.settle_written_us`)."""
    cal = StringCalibration(spec.name, spec.spec_hash, spec.family)
    for s, tr in enumerate(truth.strings):
        th = tr.threshold
        fit = KeyFit(theta=th, lat_a=tr.latency_full_us * (1.0 - th) ** tr.alpha, alpha=tr.alpha,
                     vel_a=tr.gain * tr.v0, vel_b=tr.gain * (1.0 - tr.v0) / (1.0 - math.exp(-tr.k)),
                     vel_k=tr.k / (1.0 - th))  # fmt: skip
        cal.pickers[s] = curve_from_fit(spec.open_pitch(s), fit, 2.0 * tr.latency_full_us, 13)
    for role, settle in truth.pressers.items():
        cal.settle_us[role] = settle_written_us(settle)
    return cal


def run_spec(name: str, pieces: list[tuple[str, Score]], seed: int, perfs: list[Any], sensor: str = "notes",
             nominal: dict[str, Any] | None = None, room_gain_db: float = -31.0,
             mic_gain: str = "-30.8:0.3", spread: str = "", floor: bool = False) -> dict[str, Any]:  # fmt: skip
    """Calibrate through ``sensor``, play every piece; ``nominal``: the uncalibrated
    figures of an earlier run (not played again). ``spread``: ``&spread=0|1`` for every
    port (empty: the simulator's default); ``floor``: play with the truth's own
    calibration (:func:`truth_calibration`) instead of calibrating."""
    spec = load_spec(name)
    c0 = time.process_time()
    url, mic = f"sim://?sensor={sensor}{spread}", None
    if sensor == "mic":
        url, mic = f"sim://?sensor=audio&gain_db={room_gain_db:g}{spread}", parse_mic_gain(mic_gain)
    with open_port(url, spec, truth_seed=seed) as dev:
        if floor:
            cal, crep = truth_calibration(spec, dev._truth), GuitarCalibrationReport()
        else:
            cal, crep = calibrate_guitar(dev, spec, mic=mic)
    cal_cpu = time.process_time() - c0
    out: dict[str, Any] = {"spec": name, "pieces": len(pieces), "cal_picks": crep.picks,
                           "cal_cpu_s": cal_cpu, "cal_play_s": crep.sim_time_us / 1e6, "sensor": sensor,
                           "c_ms": None if crep.sync_offset_us is None else crep.sync_offset_us / 1000,
                           "clock_by": crep.clock_by, "level": crep.audio_level}  # fmt: skip
    if nominal is not None:
        out["nominal"] = nominal
    for label, calibration in (("cal", cal), ("nominal", None)):
        if label in out:
            continue
        onset: list[float] = []
        vel: list[float] = []
        why: Counter[str] = Counter()
        tot: Counter[str] = Counter()
        cut_ms: list[float] = []  # per cut note: written sounding length less the planned, ms
        for _piece, score in pieces:
            the_plan, rep = plan(score, spec, calibration)
            with open_port(f"sim://?sensor=notes{spread}", spec, truth_seed=seed) as dev:  # reports read the notes
                perf = dev.play(the_plan)
            r = build_report(plan_report=rep, performance=perf, piece=_piece, spec=spec,
                             port="sim://", calibration=calibration)  # fmt: skip
            if label == "cal":
                perfs.append(perf)
            for k in ("notes_in", "notes_played", "notes_altered", "notes_dropped", "notes_unheard",
                      "buzzed_notes", "carriage_faults", "moving_picks"):  # fmt: skip
                tot[k] += int(r[k])
            cut_ms += [-float(o.changes["duration_us"]) / 1000.0 for o in rep.outcomes
                       if "duration_us" in o.changes]  # fmt: skip
            for k in ("slurred_notes",):
                tot[k] += int(perf.extra.get(k, 0))
            for o in rep.outcomes:
                if o.fate.name != "PLAYED":
                    why[(o.reason or "").split(";")[0][:48]] += 1
                # pitch, time and loudness as written; a cut at the next note on its string
                # is the note end ("cut there and reported"), counted apart
                tot["unaltered"] += o.fate.name == "PLAYED" or set(o.changes) == {"duration_us"}
            matched = _pairs(rep, perf)
            for o, h in matched:
                onset.append(abs(h.t_us - o.intended_t_us) / 1000.0)
                vel.append(abs(h.velocity - o.velocity_in))
        cq = np.percentile(cut_ms, [10, 50, 90]).tolist() if cut_ms else None
        out[label] = {**tot, "cut": len(cut_ms), "cut_ms": cq, "onset_p99": float(np.percentile(onset, 99)) if onset else None,
                      "onset_max": max(onset, default=None),
                      "vel_mean": float(np.mean(vel)) if vel else None, "why": why}  # fmt: skip
    return out


def _pairs(rep: Any, perf: Any) -> list[tuple[Any, Any]]:
    from robo_player.report import match_heard

    m = match_heard(rep.outcomes, perf.heard)
    return [(o, m[o.index]) for o in rep.outcomes if o.fate.name == "PLAYED" and o.index in m]


def ks_speed(perfs: list[Any]) -> tuple[float, float, float]:
    """(audio seconds, x real time cold, x real time over all) in CPU time."""
    audio_s = cold_cpu = 0.0
    for perf in perfs:
        audio._pluck_spectrum.cache_clear()
        audio._weights.cache_clear()
        c0 = time.process_time()
        y = audio.render_audio(perf)
        cold_cpu += time.process_time() - c0
        audio_s += len(y) / audio.SAMPLE_RATE
    c0 = time.process_time()
    for perf in perfs:
        audio.render_audio(perf)
    warm_cpu = time.process_time() - c0
    return audio_s, audio_s / cold_cpu, audio_s / warm_cpu


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folk", type=int, default=12, help="folk tunes (split over 3 collections)")
    ap.add_argument("--chorales", type=int, default=6)
    ap.add_argument("--truth-seed", type=int, default=3)
    ap.add_argument("--sensor", choices=("notes", "audio", "mic", "both", "all"), default="both",
                    help="what the calibration hears through (both: notes and audio; all: and mic)")
    ap.add_argument("--room-gain-db", type=float, default=-31.0, help="--sensor mic: the room's true gain")
    ap.add_argument("--mic-gain-db", default="-30.8:0.3", help="--sensor mic: the gain the calibration is told")
    ap.add_argument("--spread", choices=("0", "1"), help="the picks' and presses' own spread on every port "
                    "(default: the simulator's, sim/spread.py SPREAD_DEFAULT)")
    ap.add_argument("--floor", action="store_true", help="play with the truth's own calibration (no calibrating): "
                    "the floor the calibrated figures are measured against")
    args = ap.parse_args(argv)
    spread = "" if args.spread is None else f"&spread={args.spread}"
    try:
        import music21  # noqa: F401
    except ImportError:
        print("skipped: the pieces come from music21's corpus: pip install -e '.[corpus]'")
        return 0
    t0 = time.time()
    folk = folk_tunes(args.folk)
    chor = chorales(args.chorales)
    print(f"pieces: {len(folk)} folk tunes, {len(chor)} chorales "
          f"({sum(len(s.notes) for _, s in folk + chor)} notes), loaded in {time.time() - t0:.0f} s")  # fmt: skip
    perfs: list[Any] = []
    sets = [("guitar-matrix", folk + chor), ("guitar-slider", folk + chor),
            ("bass-4", [(n, bass_line(s)) for n, s in chor])]  # fmt: skip
    nominal: dict[str, Any] = {}
    sensors = {"both": ("notes", "audio"), "all": ("notes", "audio", "mic")}.get(args.sensor, (args.sensor,))
    for k, sensor in enumerate(sensors):
        rows = []
        for name, pieces in sets:
            rows.append(run_spec(name, pieces, args.truth_seed, perfs if k == 0 else [], sensor, nominal.get(name),
                                 args.room_gain_db, args.mic_gain_db, spread, args.floor))  # fmt: skip
            nominal[name] = rows[-1]["nominal"]
        if k == 0:
            audio_s, cold_x, warm_x = ks_speed(perfs)
        _print_rows(rows, sensor)
    print(f"\nKarplus-Strong, x real time (CPU, cold caches): {cold_x:.0f} (goal >= 50: "
          f"{'yes' if cold_x >= 50 else 'NO'}); {audio_s:.0f} s rendered; with warm caches: {warm_x:.0f}")
    return 0


def _print_rows(rows: list[dict[str, Any]], sensor: str) -> None:
    print(f"\n## calibrated through sensor={sensor}")
    for r in rows:
        if r.get("level") is not None:
            print(f"  {r['spec']}: " + r["level"].line("the ear's law", "strings at full drive against the spec's nominal"))
    print()
    print("| spec | notes | unaltered | as written | altered | dropped | unheard | onset p99 ms (nominal) "
          "| mean vel err (nominal) | buzzed | faults | calibration |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        c, n = r["cal"], r["nominal"]
        print(f"| {r['spec']} | {c['notes_in']} | {100 * c['unaltered'] / c['notes_in']:.1f} % | "
              f"{100 * c['notes_played'] / c['notes_in']:.1f} % | "
              f"{c['notes_altered']} | {c['notes_dropped']} | {c['notes_unheard']} | "
              f"{_f(c['onset_p99'])} ({_f(n['onset_p99'])}) | {_f(c['vel_mean'])} ({_f(n['vel_mean'])}) | "
              f"{c['buzzed_notes']} | {c['carriage_faults']} | {r['cal_picks']} picks, "
              f"{r['cal_play_s']:.0f} s played, {r['cal_cpu_s']:.1f} s CPU"
              + ("" if r["c_ms"] is None else f", c {r['c_ms']:.2f} ms")
              + ("" if r["clock_by"] is None else f", clock by {r['clock_by']}") + " |")  # fmt: skip
    print()
    print("cut notes and their cut length p10/p50/p90 ms (written sounding length less the planned), "
          "calibrated (nominal); slurs heard (a fret pressed or released on a ringing string):")
    for r in rows:
        c, n = r["cal"], r["nominal"]
        fmt = (lambda q: "-" if q is None else "/".join(f"{x:.1f}" for x in q))  # noqa: E731
        print(f"  {r['spec']}: {c['cut']} cut, {fmt(c['cut_ms'])} ({n['cut']} cut, {fmt(n['cut_ms'])}); "
              f"slurs {c['slurred_notes']} ({n['slurred_notes']})")
    print()
    print("why notes were altered or dropped (calibrated run):")
    for r in rows:
        print(f"  {r['spec']}: " + "; ".join(f"{k or '?'}: {v}" for k, v in r["cal"]["why"].most_common(4)))
    m, s, b = rows
    print()
    print("| target | measured | goal | met |")
    print("| --- | --- | --- | --- |")
    checks = [
        ("matrix: notes unaltered (pitch, time, loudness)", 100 * m["cal"]["unaltered"] / m["cal"]["notes_in"],
         ">= 99 %", 99.0, 1),
        ("matrix: onset error p99 (ms)", m["cal"]["onset_p99"], "<= 1", 1.0, -1),
        ("matrix: mean velocity error", m["cal"]["vel_mean"], "<= 2", 2.0, -1),
        ("matrix: buzzed notes", m["cal"]["buzzed_notes"], "0", 0, -1),
        ("slider: onset error p99 (ms)", s["cal"]["onset_p99"], "<= 1", 1.0, -1),
        ("bass: onset error p99 (ms)", b["cal"]["onset_p99"], "<= 1", 1.0, -1),
        ("matrix / slider / bass: carriage faults", m["cal"]["carriage_faults"] + s["cal"]["carriage_faults"]
         + b["cal"]["carriage_faults"], "0", 0, -1),
        ("slider: mean velocity error", s["cal"]["vel_mean"], "<= 2", 2.0, -1),
        ("bass: mean velocity error", b["cal"]["vel_mean"], "<= 2", 2.0, -1),
    ]
    for what, val, goal, lim, sign in checks:
        met = val is not None and (val >= lim if sign > 0 else val <= lim)
        print(f"| {what} | {_f(val)} | {goal} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    raise SystemExit(main())
