"""``make demo``'s figure on several rows (truth seed, room), with the microphone's gain
unknown and measured, over draws of the calibration's strokes (docs/calibration.md,
"Session 32, gain").

    PYTHONPATH=. .venv/bin/python bench/bench_demo_rows.py --rows 1:0 2:0 2:3 2:7 3:0 4:5 \\
        --variants unknown measured --draws 0 1 --out /tmp/rows

Each (row, variant, draw) runs ``make demo``'s two commands (the Makefile's ``demo``
target, ``SENSOR=audio VOICE=rich MIC_POSITIONS=5``): ``robo-player calibrate --spec
piano-88-grand --truth-seed S --port 'sim://?sensor=audio&voice=rich&sensor_seed=R...'
--mic-positions=5 [--mic-gain-db=G:TOL]``, then ``robo-player play default`` with that
calibration on ``sim://?voice=rich`` (the report only: no ``--wav``/``--plot``, which do
not change it). A row's room is the calibration's ``sensor_seed`` (the rows of sessions
23-31). Variants:

- ``unknown``: the microphone's gain unknown (``make demo`` as it is): the anchor takes
  the instrument's common loudness for the gain (docs/hearing.md, "A measured microphone");
- ``measured``: ``--mic-gain-db=G:TOL``, ``G`` the simulated room's true gain at the first
  place (read here from the simulator: the bench may, the calibrator may not) plus a
  measurement error drawn from N(0, TOL) (clipped at 2 TOL) from the row's seeds, the same
  on every draw of the row (one microphone, measured once). ``TOL`` (``--mic-tol-db``,
  default ``MIC_TOL_DB``) is what a measurement microphone's calibration file or a sound
  level calibrator gives (~0.1-0.3 dB, docs/hearing.md);
- ``exact``: as ``measured`` with no error (the same stated ``TOL``): a diagnosis of what
  the measured gain gives apart from its error's draw, never a microphone one has.

Draw ``D`` (``--draws``): the simulator's ``spread_draw=D`` on the calibration's port
(sim/spread.py ``draw_seed``): the calibration's strokes drawn again, the keys, the room,
its places and the play the same; 0 (the default) is ``make demo``'s. The play keeps draw
0 (as ``make demo``'s).

Per run: ``OUT/sS_rR_VARIANT_dD/`` with ``calibration.yaml``, ``report.json``, the two
commands' logs and ``seconds``; a run whose ``report.json`` is there is read, not run
again (kill and rerun to resume). Progress on stderr; the table (one line per row and
variant: each draw's velocity mean (p99) / onset p99 ms / strikes a key / seconds / the
take's level the calibration used (dB against the detector's reference microphone, from its
log; the room's true level beside the unknown variant's name), and the mean over the
draws) on stdout. ``--jobs`` runs that many at once (default 1: one core
each, ~5-10 min a run at rest).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = "piano-88-grand"
PIECE = "default"
VOICE = "rich"
MIC_POSITIONS = 5  # the Makefile's MIC_POSITIONS
# the measured microphone's stated tolerance (dB, one s.d.): the middle of the 0.1-0.3 dB
# that a measurement microphone's per-unit calibration file or a 94 dB SPL calibrator gives
# the chain (docs/hearing.md "A measured microphone"; session 26's one run used 0.1)
MIC_TOL_DB = 0.2
MIC_ERROR_CLIP = 2.0  # the drawn error is clipped at this many TOL (a calibration's stated bound)
MIC_ERROR_STREAM = 0x6D6963  # the error's own seed stream ("mic"), apart from the room's draws
VARIANTS = ("unknown", "measured", "exact")


def calibrate_url(room: int, draw: int) -> str:
    """The calibration's port: ``make demo``'s (``SENSOR=audio``, ``VOICE=rich``) in room
    ``room`` (``sensor_seed``), the strokes' draw ``draw`` (0: the truth's own)."""
    url = f"sim://?sensor=audio&voice={VOICE}&sensor_seed={room}"
    return url + (f"&spread_draw={draw}" if draw else "")


def true_gain_db(url: str) -> float:
    """The simulated room's microphone gain at its first place (dB, ``Room.gain_db``): the
    bench reads the simulator, as a measurement microphone would measure it."""
    from robo_player.sim.sensor import microphone_from_options

    opts: dict[str, object] = dict(parse_qsl(url.split("?", 1)[1]))
    opts.pop("spread_draw", None)
    room = microphone_from_options(url, opts).room
    assert room is not None
    return float(room.gain_db)


def mic_error_db(seed: int, room: int, tol_db: float) -> float:
    """The measured gain's error (dB): N(0, ``tol_db``) clipped at ``MIC_ERROR_CLIP`` s.d.,
    from the row's truth seed and room (the same for every draw and run of the row)."""
    z = float(np.random.default_rng([seed, room, MIC_ERROR_STREAM]).standard_normal())
    return tol_db * max(-MIC_ERROR_CLIP, min(MIC_ERROR_CLIP, z))


def run_dir(out: Path, seed: int, room: int, variant: str, draw: int, tol_db: float = MIC_TOL_DB) -> Path:
    """A run's folder (a measured gain's tolerance other than ``MIC_TOL_DB`` in its name)."""
    tol = f"_tol{tol_db:g}" if variant != "unknown" and tol_db != MIC_TOL_DB else ""
    return out / f"s{seed}_r{room}_{variant}{tol}_d{draw}"


def run_one(out: Path, seed: int, room: int, variant: str, draw: int, tol_db: float) -> dict[str, float]:
    """One ``make demo`` (calibrate, play) into its folder; its figures (read, not run
    again, where its report is there)."""
    d = run_dir(out, seed, room, variant, draw, tol_db)
    rep = d / "report.json"
    tag = f"seed {seed} room {room} {variant} draw {draw}"
    if not rep.exists():
        d.mkdir(parents=True, exist_ok=True)
        url = calibrate_url(room, draw)
        cal = [sys.executable, "-m", "robo_player.cli", "calibrate", "--spec", SPEC, "--truth-seed", str(seed),
               "--port", url, f"--mic-positions={MIC_POSITIONS}", "--out", str(d / "calibration.yaml")]
        if variant != "unknown":
            gain = true_gain_db(url) + (mic_error_db(seed, room, tol_db) if variant == "measured" else 0.0)
            cal.append(f"--mic-gain-db={gain:.3f}:{tol_db:g}")
        play = [sys.executable, "-m", "robo_player.cli", "play", PIECE, "--spec", SPEC, "--truth-seed", str(seed),
                "--port", f"sim://?voice={VOICE}", "--calibration", str(d / "calibration.yaml"),
                "--report", str(d / "report.json.part")]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        print(f"[{time.strftime('%H:%M:%S')}] {tag}: {' '.join(cal[3:])}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        for name, cmd in (("calibrate", cal), ("play", play)):
            with open(d / f"{name}.log", "w") as log:
                res = subprocess.run(["nice", *cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            if res.returncode:
                raise RuntimeError(f"{tag}: {name} failed ({res.returncode}), see {d / (name + '.log')}")
        (d / "seconds").write_text(f"{time.monotonic() - t0:.0f}\n")
        (d / "report.json.part").rename(rep)
    r = json.loads(rep.read_text())
    level, anchor = take_level(d / "calibrate.log")
    fig = {"level_db": level, "anchor_db": anchor, "velocity": r["velocity_error"]["mean"], "velocity_p99": r["velocity_error"]["p99"],
           "onset_p99": r["onset_error_ms"]["p99"], "strikes": r["calibration_strikes_per_key"],
           "seconds": float((d / "seconds").read_text()) if (d / "seconds").exists() else float("nan")}
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: {_cell(fig)}", file=sys.stderr, flush=True)
    return fig


LEVEL_LINE = re.compile(r"the take's level: ([-+]?\d+\.\d+) dB.*?the anchor \(?([-+]?\d+\.\d+) (?:\+- \d+\.\d+ )?dB")


def take_level(log: Path) -> tuple[float, float]:
    """The take's level the calibration used and its anchor's (dB against the detector's
    reference microphone, from the calibrate log's line; NaN where not found)."""
    m = LEVEL_LINE.search(log.read_text()) if log.exists() else None
    return (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))


def _cell(f: dict[str, float]) -> str:
    return (f"{f['velocity']:.2f} ({f['velocity_p99']:.2f}) / {f['onset_p99']:.2f} / {f['strikes']:.1f} / "
            f"{f['seconds']:.0f} s / {f['level_db']:+.2f} dB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=["1:0", "2:0", "2:3", "2:7", "3:0", "4:5"],
                    help="SEED:ROOM (truth seed, the calibration's sensor_seed); default: the six rows")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--draws", nargs="+", type=int, default=[0], help="the calibration's spread_draw (0: make demo's)")
    ap.add_argument("--mic-tol-db", type=float, default=MIC_TOL_DB, help="the measured gain's tolerance (dB, one s.d.)")
    ap.add_argument("--out", type=Path, required=True, help="one folder per run; runs already there are read")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    rows = [tuple(int(x) for x in r.split(":")) for r in a.rows]
    if any(len(r) != 2 for r in rows) or any(d < 0 for d in a.draws) or a.jobs < 1 or not 0 < a.mic_tol_db <= 20:
        ap.error("rows are SEED:ROOM, draws >= 0, jobs >= 1, 0 < mic-tol-db <= 20")
    runs = [(s, r, v, d) for s, r in rows for v in a.variants for d in a.draws]
    with ThreadPoolExecutor(a.jobs) as pool:
        figs = dict(zip(runs, pool.map(lambda k: run_one(a.out, *k, a.mic_tol_db), runs), strict=True))
    from robo_player.hearing.detector import REFERENCE_GAIN_DB

    print(f"| truth, room | variant (measured: the error drawn, TOL {a.mic_tol_db:g} dB) | "
          + " | ".join(f"draw {d}: velocity (p99) / onset p99 ms / strikes a key / s / the take's level" for d in a.draws)
          + " | mean over draws: velocity (p99) / onset p99 |")
    print("|---|---|" + "---|" * (len(a.draws) + 1))
    for s, r in rows:
        for v in a.variants:
            fs = [figs[(s, r, v, d)] for d in a.draws]
            true_db = true_gain_db(calibrate_url(r, 0)) - REFERENCE_GAIN_DB
            name = {"unknown": f"unknown (the true level {true_db:+.2f} dB)", "exact": "exact (no error)",
                    "measured": f"measured ({mic_error_db(s, r, a.mic_tol_db):+.2f} dB)"}[v]
            mean = {k: float(np.mean([f[k] for f in fs])) for k in ("velocity", "velocity_p99", "onset_p99")}
            print(f"| seed {s}, room {r} | {name} | " + " | ".join(_cell(f) for f in fs)
                  + f" | {mean['velocity']:.3f} ({mean['velocity_p99']:.2f}) / {mean['onset_p99']:.2f} |")
    print()
    for v in a.variants:
        for d in a.draws:
            m = np.mean([figs[(s, r, v, d)]["velocity"] for s, r in rows])
            print(f"{v}, draw {d}: velocity mean over the {len(rows)} rows {m:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
