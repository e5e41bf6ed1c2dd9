"""Digest of the planners' output (plan file and report) on fixed cases, to show that a
change meant to be behaviour-neutral (a speed-up) is: run it before and after and
compare, or give ``--baseline REV`` to run the same cases on a git revision too.

    .venv/bin/python scripts/plan_digest.py                   # this tree's digests
    .venv/bin/python scripts/plan_digest.py --baseline 6fda615  # side by side, exit 1 if any differ
    .venv/bin/python scripts/plan_digest.py --cases guitar --baseline HEAD
    .venv/bin/python scripts/plan_digest.py --cases live --baseline HEAD  # the live guitar

Guitar cases (``--cases guitar``): seeded random scores (single notes, chords, repeated
notes, out-of-range pitches) on the slider, matrix and bass specs at beams 1, 4, 8 and 32 (the default),
under both out-of-range policies, one with a slower calibrated picker, and with every
picker and fret contact calibrated (the changeover timed from the sound); and, where the
guitar bench's corpus cache exists (bench/guitar_corpus.py), its folk tunes, chorales
and the ~20,000-note speed score at beams 4, 8 and 32.

Live guitar cases (``--cases live``): the live planner on four fixed MIDI streams (a
line across the strings, the same fast, two seeded random ones, legato), fixed and
lowest latency, on the slider, matrix and bass, played on ``sim://`` in virtual time;
the digest of the commands it sent.

Piano cases:
Cases: the bundled pieces on each piano spec; the Maple Leaf Rag repeated to 20,000
notes (the planning-speed bench's score); seeded random scores dense enough to stagger,
merge, overload the supply, heat coils and carry notes by the pedal; and a measured
calibration (scaled curves and return times on some keys). Each digest is the SHA-256
of the plan written as JSON Lines followed by the report with its outcomes as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _cases() -> dict[str, tuple[object, object, object]]:
    """name -> (score, spec, calibration or None)."""
    from robo_player.midi import bundled_pieces, read_midi
    from robo_player.score import Note, PedalEvent, Score
    from robo_player.spec import load_spec
    from robo_player.spec.calibration import Calibration, KeyCurve

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_planner import repeated_score

    specs = {name: load_spec(name) for name in ("piano-88-grand", "piano-61-diy")}
    cases: dict[str, tuple[object, object, object]] = {}
    for path in bundled_pieces():
        score = read_midi(path)
        for name, spec in specs.items():
            cases[f"{path.stem}/{name}"] = (score, spec, None)
    big = repeated_score("maple_leaf_rag", 20_000)
    for name, spec in specs.items():
        cases[f"maple_x20000/{name}"] = (big, spec, None)
    grand = specs["piano-88-grand"]
    hot = dataclasses.replace(
        grand, thermal=dataclasses.replace(grand.thermal, coil_heat_capacity_j_per_k=1.0)
    )
    for seed in range(6):
        rng = random.Random(seed)
        span = 20_000_000 if seed < 3 else 150_000_000  # crowded (supply overloads), or not
        notes = []
        for _ in range(600):
            notes.append(
                Note(
                    rng.choice([rng.randint(0, 127), rng.randint(48, 72)]),
                    rng.randint(0, span),
                    rng.choice([rng.randint(0, 300_000), rng.randint(0, 12_000_000)]),
                    rng.randint(1, 127),
                )
            )
        pedal = [
            PedalEvent(rng.randint(0, span + 1_000_000), rng.randint(0, 127)) for _ in range(40)
        ]
        score = Score(sorted(notes, key=lambda n: n.onset_us), sorted(pedal, key=lambda e: e.t_us))
        for name, spec in {**specs, "hot-grand": hot}.items():
            cases[f"random{seed}/{name}"] = (score, spec, None)
    cal = Calibration.nominal(grand)
    rng = random.Random(99)
    for pitch in rng.sample(sorted(cal.keys), 30):
        c = cal.keys[pitch]
        gain, lat = rng.uniform(0.6, 1.2), rng.uniform(0.8, 2.0)
        cal.keys[pitch] = KeyCurve(
            pitch,
            c.threshold,
            c.drive,
            tuple(v * gain for v in c.velocity),
            tuple(x * lat for x in c.latency_us),
            strikes=10,
            return_us=rng.uniform(20_000, 90_000),
        )
    cal.measured = True
    for seed in (0, 1):
        cases[f"random{seed}/grand-calibrated"] = (
            cases[f"random{seed}/piano-88-grand"][0],
            grand,
            cal,
        )
    cases["maple_leaf_rag/grand-calibrated"] = (
        cases["maple_leaf_rag/piano-88-grand"][0],
        grand,
        cal,
    )
    return cases


def _guitar_cases() -> dict[str, tuple[Any, Any, Any, dict[str, Any]]]:
    """name -> (score, spec, calibration or None, plan_guitar keyword arguments)."""
    from types import SimpleNamespace

    from robo_player.planner import PlanOptions
    from robo_player.score import Note, Score
    from robo_player.spec import load_spec
    from robo_player.spec.calibration import KeyCurve

    specs = {name: load_spec(name) for name in ("guitar-slider", "guitar-matrix", "bass-4")}
    cases: dict[str, tuple[Any, Any, Any, dict[str, Any]]] = {}
    for seed in range(4):
        rng = random.Random(seed)
        notes = []
        t = 0
        for _ in range(400):
            t += rng.choice([0, 60_000, 120_000, 250_000, 500_000, 2_000_000])
            chord = rng.choice([1, 1, 1, 2, 3, 6]) if seed % 2 else 1
            for _ in range(chord):
                notes.append(Note(rng.choice([rng.randint(20, 100), rng.randint(40, 76)]), t,
                                  rng.choice([30_000, 200_000, 800_000]), rng.randint(1, 127)))  # fmt: skip
        score = Score(sorted(notes, key=lambda n: n.onset_us))
        for name, spec in specs.items():
            for beam in (1, 4, 8, 32):
                cases[f"g-random{seed}/{name}/beam{beam}"] = (score, spec, None, {"beam": beam})
            drop = {"options": PlanOptions(out_of_range="drop")}
            cases[f"g-random{seed}/{name}/drop"] = (score, spec, None, drop)
    slider = specs["guitar-slider"]
    n = slider.nominal
    slow = KeyCurve(0, 0.0, n.drive, n.velocity, tuple(x * 1.5 for x in n.latency_us))
    cal = SimpleNamespace(pickers={1: slow, 4: slow})
    cases["g-random1/guitar-slider/calibrated"] = (cases["g-random1/guitar-slider/beam8"][0], slider, cal, {})
    # every picker and every fret contact measured: changeovers timed back from the sound
    for name, spec in specs.items():
        n = spec.nominal
        settle: dict[str, int] = {}
        for s, st in enumerate(spec.strings):
            for f in range(1, spec.neck.frets + 1):
                role = f"press:{s}" if st.presser is not None else f"fret:{s}:{f}"
                settle[role] = spec.timing.fret_settle_us * (5 + (s * 7 + f * 3) % 8) // 10
        curve = KeyCurve(0, 0.0, n.drive, n.velocity, tuple(x * 0.8 for x in n.latency_us))
        full = SimpleNamespace(pickers=dict.fromkeys(range(len(spec.strings)), curve), settle_us=settle)
        for seed in (0, 1):
            cases[f"g-random{seed}/{name}/cal-settle"] = (cases[f"g-random{seed}/{name}/beam8"][0], spec, full, {})
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        import bench_guitar as bg
        from guitar_corpus import cache_dir

        if not (cache_dir() / "essen-40.json").exists() or not (cache_dir() / "chorales-20.json").exists():
            return cases
        folk = [p for c, _ in bg.COLLECTIONS for p in bg.tunes(c, 40)]
        ch, bass = bg.chorales(20)
    except ImportError:
        return cases
    big = _repeated_guitar(folk, 20_000)
    for beam in (4, 8, 32):
        cases[f"folk_x20000/guitar-slider/beam{beam}"] = (big, slider, None, {"beam": beam})
        cases[f"folk/guitar-slider/beam{beam}"] = (_joined(folk), slider, None, {"beam": beam})
    cases["folk_x20000/guitar-matrix"] = (big, specs["guitar-matrix"], None, {})
    cases["chorales/guitar-slider"] = (_joined(ch), slider, None, {})
    cases["chorales/guitar-matrix"] = (_joined(ch), specs["guitar-matrix"], None, {})
    cases["chorale_basses_x20000/bass-4"] = (_repeated_guitar(bass, 20_000), specs["bass-4"], None, {})
    return cases


def _repeated_guitar(pieces: list[tuple[str, Any]], count: int) -> Any:
    """The pieces one after another (half a second apart) to ``count`` notes, as
    bench/bench_guitar.py's speed rows build them."""
    from robo_player.score import Note, Score

    out: list[Note] = []
    t0 = 0
    while len(out) < count:
        for _, sc in pieces:
            out += [Note(n.pitch, n.onset_us + t0, n.duration_us, n.velocity) for n in sc.notes]
            t0 = max(n.end_us for n in out) + 500_000
    return Score(out[:count])


def _joined(pieces: list[tuple[str, Any]]) -> Any:
    return _repeated_guitar(pieces, sum(len(sc.notes) for _, sc in pieces))


def _live_guitar_digests() -> dict[str, str]:
    """The live guitar planner (``robo_player.live.guitar``) on fixed MIDI streams,
    played on ``sim://`` in virtual time: the digest of every command it sent."""
    import mido

    from robo_player.driver.ports import open_port
    from robo_player.live import LatencyMode, LiveOptions
    from robo_player.live.family import live_planner
    from robo_player.live.session import run_virtual
    from robo_player.spec import load_spec

    def melody(pitches: list[int], gap_s: float, dur_s: float) -> list[tuple[float, Any]]:
        ev: list[tuple[float, Any]] = []
        for i, p in enumerate(pitches):
            t = 0.2 + i * gap_s
            ev.append((t, mido.Message("note_on", note=p, velocity=(50, 80, 110, 127)[i % 4])))
            ev.append((t + dur_s, mido.Message("note_off", note=p)))
        return sorted(ev, key=lambda e: e[0])

    line = [40, 43, 45, 47, 50, 52, 55, 57, 59, 62, 64, 67, 64, 60, 57, 53, 48, 45, 42, 40, 40]
    rng = random.Random(3)
    rnd = [rng.randint(40, 70) for _ in range(60)]
    streams = {"line": melody(line, 0.3, 0.2), "fast": melody(line, 0.06, 0.05),
               "legato": melody(rnd, 0.12, 0.2), "dense": melody(rnd, 0.09, 0.4)}  # fmt: skip
    out: dict[str, str] = {}
    for spec_name in ("guitar-slider", "guitar-matrix", "bass-4"):
        spec = load_spec(spec_name)
        shift = -12 if spec_name == "bass-4" else 0
        for mode in ("fixed", "lowest"):
            for name, ev in streams.items():
                planner = live_planner(spec, None, LiveOptions(mode=LatencyMode(mode)))
                with open_port("sim://", spec, truth_seed=0) as dev:
                    _, session = run_virtual(dev, planner, [(t, m.copy(note=m.note + shift)) for t, m in ev],
                                             record=True)  # fmt: skip
                sent = [(c.t_us, c.op.value, c.actuator, c.drive, c.pulse_us, c.hold, c.note, c.position)
                        for c in session.sent]  # fmt: skip
                out[f"live-{name}/{spec_name}/{mode}"] = hashlib.sha256(json.dumps(sent).encode()).hexdigest()[:16]
    return out


def _digest(path: Path, plan: Any, report: Any) -> str:
    plan.write_jsonl(path)
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps(report.to_json(outcomes=True), sort_keys=True).encode())
    return h.hexdigest()[:16]


def digests(which: str = "all") -> dict[str, str]:
    from robo_player.planner import plan_piano
    from robo_player.planner.guitar import plan_guitar

    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "plan.jsonl"
        if which in ("all", "piano"):
            for name, (score, spec, cal) in _cases().items():
                out[name] = _digest(path, *plan_piano(score, spec, cal))  # type: ignore[arg-type]
        if which in ("all", "guitar"):
            for name, (score, spec, cal, kw) in _guitar_cases().items():
                out[name] = _digest(path, *plan_guitar(score, spec, cal, **kw))
        if which in ("all", "live"):
            out.update(_live_guitar_digests())
    return out


def _at_revision(rev: str, which: str) -> dict[str, str]:
    """The digests of git revision ``rev`` (its robo_player package, this script's cases)."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(f"git -C {ROOT} archive {rev} | tar -x -C {d}", shell=True, check=True)
        res = subprocess.run(
            [sys.executable, str(HERE / "plan_digest.py"), "--json", "--root", d, "--cases", which],
            check=True,
            capture_output=True,
            text=True,
        )
    return dict(json.loads(res.stdout))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline", help="git revision to compare with (e.g. 6fda615)")
    ap.add_argument("--json", action="store_true", help="print the digests as JSON")
    ap.add_argument("--cases", choices=("all", "piano", "guitar", "live"), default="all")
    ap.add_argument("--root", help=argparse.SUPPRESS)  # a tree to import robo_player from
    args = ap.parse_args()
    if args.root:
        global ROOT
        ROOT = Path(args.root)
        sys.path.insert(0, args.root)
        for mod in [m for m in sys.modules if m == "robo_player" or m.startswith("robo_player.")]:
            del sys.modules[mod]
    now = digests(args.cases)
    if args.json:
        print(json.dumps(now))
        return 0
    base = _at_revision(args.baseline, args.cases) if args.baseline else {}
    differ = 0
    for name, h in now.items():
        b = base.get(name)
        mark = "" if b is None else ("same" if b == h else "DIFFERENT")
        differ += mark == "DIFFERENT"
        print(f"{name:<40} {h}  {b or '':<16} {mark}")
    if args.baseline:
        print(f"{differ} of {len(now)} cases differ from {args.baseline}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
