"""Calibration accuracy and cost on the simulator, and end-to-end playing accuracy.

For each truth seed: calibrate every key of the spec on ``sim://`` (the calibrator sees
only ``play``), compare the curves with the hidden truth (this script may read it; the
calibrator may not), then plan the bundled pieces with that calibration, play them on
the same simulated piano and match heard notes to the plan's outcomes (same pitch,
nearest time) to get the onset error and the velocity error as a listener hears them.

    .venv/bin/python bench/bench_calibration.py --seeds 0 1 2

``--single-notes``: the detector's loudness over the partials against the truth on single
notes, A0 to C8, through the room and without (the keyboard's trend: docs/calibration.md,
"The loudness trend across the keyboard").

``--strikes [PITCH ...] --voice rich --seeds 1``: a calibration through audio of a few keys,
each strike's heard loudness against the physics' and each key's table against the truth
(docs/calibration.md, "The log-mean's partials, one set").

``--parts --voice rich --seeds 2 [--calibration CAL.yaml | --sensor-seed N]``: where ``make
demo``'s velocity error comes from: its tables' common part and each key's own error at 64
taken out, the default piece played again on the same truth (docs/calibration.md, "Session
21, thump"); calibrated in room N (``sensor_seed``) or read from CAL.yaml ("Session 23,
velocity": rooms 0, 3 and 7); then each register's share and the common part at velocity
96, the piece's ("Session 26, velocity").

``--room-colour 84 104 4 --voice rich [--predelay-ms 2]``: each key's power sum through no
room and through rooms 0, 3, 7 (``--rooms``), through the detector's windows and others: a
key's own bias and one strike's room colour (docs/calibration.md, "Session 24, velocity",
"Session 25, velocity").
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from robo_player.calibrator import MAX_STRIKES_PER_KEY, calibrate_session
from robo_player.driver import open_port
from robo_player.midi import bundled_piece, bundled_pieces, read_midi
from robo_player.plan import Op
from robo_player.planner.piano import plan_piano
from robo_player.planner.report import Fate
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration


def truth_latency_us(kt: object, d: float) -> float:
    u = (d - kt.threshold) / (1.0 - kt.threshold)  # type: ignore[attr-defined]
    if u <= 0:
        return math.inf
    lat = kt.latency_full_us * u ** (-kt.alpha)  # type: ignore[attr-defined]
    return lat if lat <= 400_000 else math.inf


def truth_velocity(kt: object, d: float) -> float:
    u = max(0.0, (d - kt.threshold) / (1.0 - kt.threshold))  # type: ignore[attr-defined]
    k, v0 = kt.k, kt.v0  # type: ignore[attr-defined]
    return kt.gain * (v0 + (1 - v0) * (1 - math.exp(-k * u)) / (1 - math.exp(-k)))  # type: ignore[attr-defined]


def curve_errors(cal: Calibration, truth: object, spec: object) -> dict[str, float]:
    """Latency and loudness error of the tables against the truth, over velocities 25..115
    as the planner uses them (drive for the velocity, rounded to PWM counts)."""
    el, ev, eth = [], [], []
    for p, c in cal.keys.items():
        kt = truth.key(p)  # type: ignore[attr-defined]
        pm = spec.key(p).pwm_max  # type: ignore[attr-defined]
        eth.append(abs(c.threshold - kt.threshold) / kt.threshold)
        for vt in np.linspace(max(25.0, c.min_velocity), min(115.0, c.max_velocity), 60):
            dv = c.drive_for_velocity(vt)
            if not math.isfinite(dv):  # a flat stretch of the table (an audio-heard key)
                continue
            d = round(dv * pm) / pm
            el.append(abs(c.latency_at(d) - truth_latency_us(kt, d)))
            ev.append(abs(c.velocity_at(d) - truth_velocity(kt, d)))
    a, b = np.array(el), np.array(ev)
    return {
        "lat_mean_us": float(a.mean()),
        "lat_p99_us": float(np.percentile(a, 99)),
        "lat_max_us": float(a.max()),
        "vel_mean": float(b.mean()),
        "vel_p99": float(np.percentile(b, 99)),
        "thr_max_rel": float(max(eth)),
    }


def loudness_split(cal: Calibration, truth: object, spec: object, velocity: float = 96.0) -> dict[str, float]:
    """Each key's table against the truth at ``velocity`` (the log of the truth's loudness
    at the drive the table gives, rounded to PWM counts, over ``velocity``), split into a
    common part (the anchor's: the level), a line in pitch (the keyboard's trend, A0 to
    C8 when the keys span it) and each key's scatter about the two; %. What a calibration
    through audio carries (docs/calibration.md, "Loudness through the microphone")."""
    pitches, err = [], []
    for p, c in cal.keys.items():
        pm = spec.key(p).pwm_max  # type: ignore[attr-defined]
        d = round(c.drive_for_velocity(velocity) * pm) / pm
        pitches.append(p)
        err.append(math.log(truth_velocity(truth.key(p), d) / velocity))  # type: ignore[attr-defined]
    x, e = (np.array(pitches) - 64.5) / 43.5, 100.0 * np.array(err)
    slope, icept = np.polyfit(x, e, 1) if len(e) > 2 else (0.0, float(e.mean()))
    return {"common": float(e.mean()), "trend": float(2.0 * slope), "scatter": float(np.std(e - slope * x - icept))}


def soft_end_errors(cal: Calibration, truth: object) -> dict[str, float]:
    """Each key's worst latency error over its table's whole usable range (its first
    drive to full; the soft end, ~300 ms, is where it lands): median and max over keys
    (µs), and the worst against one strike's own s.d. at that latency (the truth's)."""
    worst, ratio = [], []
    for p, c in cal.keys.items():
        kt = truth.key(p)  # type: ignore[attr-defined]
        w = r = 0.0
        for d in np.linspace(c.drive[0], 1.0, 50):
            tl = truth_latency_us(kt, d)
            if math.isfinite(tl):
                e = abs(c.latency_at(d) - tl)
                w = max(w, e)
                r = max(r, e / math.hypot(kt.timing_sd_us, kt.timing_sd_frac * tl))
        worst.append(w)
        ratio.append(r)
    return {"median_us": float(np.median(worst)), "max_us": float(max(worst)), "ratio_max": float(max(ratio))}


def return_errors(cal: Calibration, truth: object) -> dict[str, float]:
    """Measured key return time (margin included) minus the truth's, over every key."""
    e = np.array(
        [
            c.return_us - truth.key(p).return_us  # type: ignore[attr-defined]
            for p, c in cal.keys.items()
            if c.return_us is not None
        ],
        dtype=float,
    )
    if e.size == 0:
        return {"keys": 0.0}
    return {
        "keys": float(e.size),
        "unmeasured": float(len(cal.keys) - e.size),
        "min_us": float(e.min()),
        "p1_us": float(np.percentile(e, 1)),
        "median_us": float(np.median(e)),
        "p99_us": float(np.percentile(e, 99)),
        "max_us": float(e.max()),
        "short_1ms": float((e < -1000).sum()),
        "within_5ms": float((e <= 5000).mean()),
    }


def play_errors(dev: object, spec: object, cal: Calibration, piece: str) -> dict[str, float]:
    score = read_midi(bundled_piece(piece))
    plan, report = plan_piano(score, spec, cal)  # type: ignore[arg-type]
    perf = dev.play(plan)  # type: ignore[attr-defined]
    # strike time and the gap since the previous release of the same key, per note
    last_release: dict[int, int] = {}
    gap_us: dict[int, float] = {}
    for c in plan.commands:  # sorted by time
        if c.op is Op.RELEASE:
            last_release[c.actuator] = c.t_us
        elif c.op is Op.STRIKE and c.note >= 0:
            gap_us[c.note] = c.t_us - last_release.get(c.actuator, -(10**12))
    heard: dict[int, list[tuple[int, float]]] = {}
    for h in perf.heard:
        heard.setdefault(h.pitch, []).append((h.t_us, h.velocity))
    on, ve, missing, clean = [], [], 0, []
    for o in report.outcomes:
        if o.fate is Fate.DROPPED or o.velocity_target is None:
            continue
        cands = heard.get(o.pitch_out, [])
        if not cands:
            missing += 1
            continue
        t, v = min(cands, key=lambda c: abs(c[0] - o.target_t_us))
        if abs(t - o.target_t_us) > 50_000:
            missing += 1
            continue
        on.append(abs(t - o.target_t_us))
        ve.append(abs(v - o.velocity_target))
        # keys that had less than the slowest possible return (90 ms) since their release
        clean.append(gap_us.get(o.index, math.inf) >= 90_000)
    a, b = np.array(on, dtype=float), np.array(ve)
    m = np.array(clean, dtype=bool)
    return {
        "short_return": float((~m).sum()),
        "onset_p99_clean_ms": float(np.percentile(a[m], 99) / 1000),
        "vel_mean_abs_clean": float(b[m].mean()),
        "notes": float(len(on)),
        "missing": float(missing),
        "onset_p99_ms": float(np.percentile(a, 99) / 1000),
        "onset_max_ms": float(a.max() / 1000),
        "vel_mean_abs": float(b.mean()),
    }


def single_notes(velocity: float, takes: int, voice: str = "plain") -> None:
    """Heard over true loudness (%, the log) of single notes struck at ``velocity`` on
    keys 21, 27, .. 105, each alone in ``takes`` takes (a room drawn per take), read as
    the calibration reads them (:func:`partials_read`; a key's decay pooled over its
    takes), with no decay taken out, and the comb's power sum (:meth:`Detector.find`'s
    loudness): the common part, the line in pitch (A0 -> C8), the keys' scatter about it
    and the take-to-take s.d. (rms over keys). ``voice``: the simulator's voice
    (``plain`` or ``rich``, robo_player/sim/audio.py)."""
    from robo_player.hearing.detector import (
        Detector,
        partials_read,
        pooled_comb_rate,
        pooled_rates,
        power_velocity,
        read_velocity,
    )
    from robo_player.performance import HeardNote
    from robo_player.sim.audio import RENDERERS, Voice
    from robo_player.sim.room import Room, RoomTake

    render = RENDERERS[Voice(voice)]

    pitches = list(range(21, 109, 6))
    for rt60, n, snr in ((0.0, 1, 80.0), (0.3, takes, 30.0)):
        rows: dict[str, list[list[float]]] = {
            "decay taken out": [], "none taken out": [], "power sum, decay out": [], "comb's power sum": [],
        }
        for p in pitches:
            reads, comb = [], []
            for take in range(n):
                room = Room(gain_db=-24.0, seed=4, rt60_s=rt60, snr_db=snr)
                # held 80 ms: a calibration strike's damper lands >= 73 ms after its onset
                rt = RoomTake(room, [HeardNote(500_000, p, velocity, 580_000)], [], take, render=render)
                det = Detector(rt.samples(), rt.sample_rate, gain_db=-24.0)
                t = rt._audio_us(500_000) / 1e6
                o = det.find(p, t - 0.03, t + 0.03, alone=True)
                r = partials_read(det, p, o.t_s) if o is not None else None
                if r is not None:
                    reads.append(r)
                if o is not None and o.velocity > 0.0:
                    comb.append(100.0 * math.log(o.velocity / velocity))
            rates = pooled_rates(reads)
            for name, rr in (("decay taken out", rates), ("none taken out", np.full(len(rates), np.nan))):
                vs = [read_velocity(r, rr) for r in reads]
                rows[name].append([100.0 * math.log(v / velocity) for v in vs if v is not None])
            rows["comb's power sum"].append(comb)
            comb_rate = pooled_comb_rate(reads)
            vs = [power_velocity(r, comb_rate) for r in reads]
            rows["power sum, decay out"].append([100.0 * math.log(v / velocity) for v in vs if v is not None])
        x = (np.array(pitches) - 64.5) / 43.5
        for name, e in rows.items():
            m = np.array([np.mean(a) for a in e])
            slope, icept = np.polyfit(x, m, 1)
            sd = math.sqrt(float(np.mean([np.var(a) for a in e])))
            print(
                f"{voice}: velocity {velocity:g}, {'room rt60 0.3 s, ' + str(n) + ' takes' if rt60 else 'no room'}, {name}: "
                f"common {m.mean():+.2f} %, trend A0 -> C8 {2 * slope:+.2f} %, scatter {np.std(m - slope * x - icept):.2f} %, "
                f"take-to-take s.d. {sd:.2f} %"
            )
            print("    " + " ".join(f"{p}:{a:+.1f}" for p, a in zip(pitches, m, strict=True)))


def strike_reads(spec: Any, seed: int, voice: str, pitches: list[int]) -> None:
    """A calibration through audio (``voice``) of ``pitches`` only; each ordinary strike's
    heard loudness (as the session last read it) against the loudness the physics gave
    it (``perf.heard``: this bench may read it), by key: the mean and s.d. (%, the log;
    less the median over all keys), soft (< 50) and loud apart; and the key's table
    against the truth at velocities 40 / 64 / 96 (less the keys' mean at 64): where a
    table's error comes from, the strikes' reads or the curve through them
    (docs/calibration.md, "The log-mean's partials, one set")."""
    import robo_player.calibrator.session as session

    dev = open_port(f"sim://?sensor=audio&voice={voice}", spec, truth_seed=seed, sensor_seed=seed)
    takes: list[tuple[Any, list[Any]]] = []
    listen = session.listen_round

    def keep(perf: Any, pending: list[Any], *a: Any, **k: Any) -> Any:
        takes.append((perf, list(pending)))
        return listen(perf, pending, *a, **k)

    session.listen_round = keep  # the strikes as heard, kept for the comparison
    try:
        cal, _ = calibrate_session(dev, spec, pitches=pitches)
    finally:
        session.listen_round = listen
    truth = dev._truth
    rows: dict[int, list[tuple[float, float]]] = {}  # key: (log heard / physics, physics' loudness)
    for perf, pending in takes:
        heard: dict[int, list[Any]] = {}
        for h in perf.heard:
            heard.setdefault(h.pitch, []).append(h)
        for st in pending:
            if not st.heard or st.onset_us is None or st.probe_gap_us is not None:
                continue
            cands = heard.get(st.pitch, [])
            if cands:
                h = min(cands, key=lambda h: abs(h.t_us - st.onset_us))
                if abs(h.t_us - st.onset_us) <= 20_000 and h.velocity > 0:
                    rows.setdefault(st.pitch, []).append(
                        (100.0 * math.log(st.velocity / h.velocity), h.velocity))
    med = float(np.median([e for r in rows.values() for e, _ in r]))
    tab: dict[int, list[float]] = {}
    for p in pitches:
        c, pm = cal.keys[p], spec.key(p).pwm_max
        tab[p] = [100.0 * math.log(truth_velocity(truth.key(p), round(c.drive_for_velocity(v) * pm) / pm) / v)
                  for v in (40.0, 64.0, 96.0)]  # fmt: skip
    t64 = float(np.mean([t[1] for t in tab.values()]))
    print(f"{voice}, truth seed {seed}: {sum(map(len, rows.values()))} strikes heard (median heard / physics {med:+.2f} %)")
    for p in pitches:
        e = np.array([x for x, _ in rows.get(p, [])]) - med
        soft = np.array([v < 50.0 for _, v in rows.get(p, [])], dtype=bool)
        t = tab[p]
        print(f"  key {p}: strikes {len(e)}, heard / physics {e.mean():+.2f} % (s.d. {e.std():.2f}; soft "
              f"{e[soft].mean() if soft.any() else math.nan:+.2f}, loud {e[~soft].mean() if (~soft).any() else math.nan:+.2f}); "
              f"table / truth at 40 / 64 / 96 {t[0] - t64:+.1f} / {t[1] - t64:+.1f} / {t[2] - t64:+.1f} %")
    print(f"  tables at 64: common {t64:+.2f} %, s.d. over the keys {np.std([t[1] for t in tab.values()]):.2f} %")


def error_parts(spec: Any, seed: int, voice: str, cal_path: str | None = None, sensor_seed: int = 0) -> None:
    """Where a calibration's velocity error comes from: ``make demo``'s calibration through
    audio (``voice``, truth ``seed``, its room: ``sensor_seed``, make demo's 0) or the one
    saved at ``cal_path``; each key's table against the truth at velocity 64 (the log of
    the truth's loudness at the drive the table gives, %), its common part (beside the
    truth's own: its keys' mean loudness at full drive against the spec's nominal, which
    the anchor cannot know) and the keys' scatter, and how alike neighbouring keys' errors
    are (their correlation, key to the next: a room's colour is shared by neighbouring
    pitches, docs/calibration.md "Session 23, velocity"); then the default piece played
    on the same truth with the tables as they are, with the common part taken out of
    every key's table, and with each key's own error at 64 taken out (docs/calibration.md,
    "Session 21, thump"). This bench may read the truth; what it takes out, the
    calibrator cannot know."""
    from dataclasses import replace

    from robo_player.midi import DEFAULT_PIECE

    def device() -> Any:  # make demo's: the default sensor seed (its room), a fresh device to play on
        return open_port(f"sim://?sensor=audio&voice={voice}", spec, truth_seed=seed)

    if cal_path is None:
        with open_port(f"sim://?sensor=audio&voice={voice}&sensor_seed={sensor_seed}", spec, truth_seed=seed) as d:
            cal = calibrate_session(d, spec)[0]
    else:
        cal = Calibration.load(cal_path)
    # played on a fresh device, as `play` does (a device that calibrated first draws the
    # strikes' spread on: the same tables read 2.02 / 1.98 / 1.54 on rich seed 2, not
    # 2.06 / 1.94 / 1.52: the figures below carry one draw of the strikes)
    dev = device()
    truth = dev._truth
    err: dict[int, float] = {}
    for p, c in cal.keys.items():
        pm = spec.key(p).pwm_max
        err[p] = math.log(truth_velocity(truth.key(p), round(c.drive_for_velocity(64.0) * pm) / pm) / 64.0)
    common = float(np.mean(list(err.values())))
    spread = float(np.std(list(err.values())))
    keyed = np.array([err[p] for p in sorted(err)]) - common
    neighbours = float(np.corrcoef(keyed[:-1], keyed[1:])[0, 1]) if len(keyed) > 2 else math.nan
    want = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    own = math.log(float(np.mean([truth_velocity(truth.key(p), 1.0) for p in err])) / want)

    def scaled(factor: dict[int, float]) -> Calibration:
        return replace(cal, keys={p: replace(c, velocity=tuple(v * factor[p] for v in c.velocity))
                                  for p, c in cal.keys.items()})  # fmt: skip

    print(f"{voice}, truth seed {seed}: tables at 64 against the truth: common {100 * common:+.2f} % (the truth's "
          f"keys at full drive against the nominal {100 * own:+.2f} %), keys' s.d. {100 * spread:.2f} %, "
          f"neighbouring keys' correlation {neighbours:+.2f}")
    for name, factor in (
        ("as they are", {p: 1.0 for p in err}),
        ("the common part out", {p: math.exp(common) for p in err}),
        ("each key's error at 64 out", {p: math.exp(e) for p, e in err.items()}),
    ):
        pe = play_errors(dev, spec, scaled(factor), DEFAULT_PIECE)
        print(f"  {DEFAULT_PIECE}, tables {name}: mean |velocity error| {pe['vel_mean_abs']:.2f}, "
              f"onset p99 {pe['onset_p99_ms']:.2f} ms")
    register_parts(dev, spec, cal)
    dev.close()


# --parts: the keyboard's registers (the bass below E3, where the microphone's places a
# metre apart hear the room alike in the lower partials; the treble from C6)
REGISTERS = (("bass 21-51", 21, 52), ("middle 52-83", 52, 84), ("treble 84-108", 84, 109))


def register_parts(dev: Any, spec: Any, cal: Calibration, plays: int = 3) -> None:
    """Each register's share of the default piece's velocity error (docs/calibration.md,
    "Session 26, velocity"): each key's table against the truth at velocity 64 and 96
    (the piece's every note is 96) less their common part, rms over the register's keys;
    then the piece played (``plays`` times, the mean: one play's draw moves it by ~0.03)
    with the tables as they are, with the common part at 96 out, and with one register's
    tables the truth's (each drive's truth loudness); the truth's own level beside it."""
    from dataclasses import replace

    from robo_player.midi import DEFAULT_PIECE

    truth = dev._truth

    def err(p: int, c: Any, v: float) -> float:
        pm = spec.key(p).pwm_max
        return 100.0 * math.log(truth_velocity(truth.key(p), round(c.drive_for_velocity(v) * pm) / pm) / v)

    e64 = {p: err(p, c, 64.0) for p, c in cal.keys.items()}
    e96 = {p: err(p, c, 96.0) for p, c in cal.keys.items()}
    c64, c96 = float(np.mean(list(e64.values()))), float(np.mean(list(e96.values())))
    want = float(np.interp(1.0, spec.nominal.drive, spec.nominal.velocity))
    own = 100.0 * math.log(float(np.mean([truth_velocity(truth.key(p), 1.0) for p in cal.keys])) / want)

    def rms(e: dict[int, float], common: float, lo: int, hi: int) -> float:
        return math.sqrt(float(np.mean([(x - common) ** 2 for p, x in e.items() if lo <= p < hi])))

    def truths(lo: int, hi: int) -> Calibration:
        keys = {}
        for p, c in cal.keys.items():
            if lo <= p < hi:
                v = np.maximum.accumulate([truth_velocity(truth.key(p), d) for d in c.drive])
                c = replace(c, velocity=tuple(float(x) for x in v))
            keys[p] = c
        return replace(cal, keys=keys)

    def played(c: Calibration) -> float:
        return float(np.mean([play_errors(dev, spec, c, DEFAULT_PIECE)["vel_mean_abs"] for _ in range(plays)]))

    f = math.exp(c96 / 100.0)
    level = replace(cal, keys={p: replace(c, velocity=tuple(v * f for v in c.velocity)) for p, c in cal.keys.items()})
    print(f"  common part at 96 {c96:+.2f} % (the truth's keys at full drive against the nominal {own:+.2f} %); "
          f"played {plays} times: as they are {played(cal):.3f}, the common part out {played(level):.3f}, "
          f"every table the truth's {played(truths(0, 200)):.3f}")
    for name, lo, hi in REGISTERS:
        print(f"  {name}: keys' rms at 64 / 96 {rms(e64, c64, lo, hi):.2f} / {rms(e96, c96, lo, hi):.2f} %, "
              f"its tables the truth's: played {played(truths(lo, hi)):.3f}")
    # each key's error at 96 weighed by the piece's notes on it (nearly all at 96), rms about
    # its weighted mean: orders the "common part out" figure where the registers' plain rms
    # did not (docs/calibration.md, "Session 28, velocity")
    notes: dict[int, int] = {}
    for n in read_midi(bundled_piece(DEFAULT_PIECE)).notes:
        notes[n.pitch] = notes.get(n.pitch, 0) + 1
    w = np.array([notes.get(p, 0) for p in e96], dtype=float)  # (keys,)
    x = np.array(list(e96.values()))
    wc = float((w * x).sum() / w.sum())
    parts = ", ".join(f"{name} {math.sqrt(float((w[m] * (x[m] - wc) ** 2).sum() / w[m].sum())):.2f}"
                      for name, lo, hi in REGISTERS
                      if (m := np.array([lo <= p < hi for p in e96]) & (w > 0)).any())  # fmt: skip
    print(f"  weighed by the piece's notes: keys' rms at 96 {math.sqrt(float((w * (x - wc) ** 2).sum() / w.sum())):.2f} % "
          f"about their common {wc:+.2f} % ({parts})")


# --room-colour: a key struck at these velocities, four strikes a take in three takes (a
# tail each, as a calibration's takes), read as the calibration reads them
COLOUR_VELOCITIES = ((25.0, 50.0, 80.0, 105.0), (32.0, 60.0, 90.0, 115.0), (40.0, 70.0, 100.0, 64.0))
# the windows compared (start s after the onset, their centres' span s; None: the detector's)
COLOUR_WINDOWS: dict[str, tuple[float, float] | None] = {
    "from COMPACT_START_S": None, "from 6 ms (sessions 22-24)": (0.006, 0.006), "from 4 ms": (0.004, 0.006),
    "from 2 ms, centres over 3 ms": (0.002, 0.003), "from 1 ms, centres over 3 ms": (0.001, 0.003),
}


def room_colour(voice: str, pitches: list[int], rooms: list[int], predelay_ms: float = 4.0) -> None:
    """Each key's power sum (``power_velocity`` with the key's pooled decay, as the
    calibration reads it) over its truth, through the short windows from
    COMPACT_START_S (2 ms since session 25) and others (:data:`COLOUR_WINDOWS`): through no room
    (the keys' s.d. of their mean read: a key's own bias, the thump's mostly) and
    through ``rooms`` (each strike's read less its no-room one: its room colour, alike
    on every strike of a take). A key's error in the simulator (13 strikes, each in its
    own take: bias and colour / sqrt(13)) and in one room that stays the same from take
    to take, as a real one does (bias and colour whole); ``predelay_ms``: the rooms'
    first reflection's delay (sim://'s ``predelay_ms``). docs/calibration.md, "Session
    24, velocity" and "Session 25, velocity"."""
    import robo_player.hearing.detector as det_mod
    from robo_player.calibrator.listening import loudness_onset
    from robo_player.performance import HeardNote
    from robo_player.sim.audio import RENDERERS, Voice
    from robo_player.sim.room import Room, RoomTake

    render = RENDERERS[Voice(voice)]
    main_window = (det_mod.COMPACT_START_S, det_mod.COMPACT_SPAN_S)
    reads: dict[str, dict[tuple[int, int], dict[tuple[int, float], float]]] = {name: {} for name in COLOUR_WINDOWS}
    for p in pitches:
        for rs in [-1, *rooms]:
            room = (Room(gain_db=-24.0, seed=4, rt60_s=0.0) if rs < 0
                    else Room(gain_db=-24.0, seed=rs, predelay_s=predelay_ms / 1000.0))
            strikes = []
            for take, vs in enumerate(COLOUR_VELOCITIES):
                notes = [HeardNote(300_000 * (i + 1), p, v, 300_000 * (i + 1) + 80_000) for i, v in enumerate(vs)]
                rt = RoomTake(room, notes, [], take, render=render)
                det = det_mod.Detector(rt.samples(), rt.sample_rate, gain_db=-24.0)
                for h in notes:
                    t = rt._audio_us(h.t_us) / 1e6
                    o = det.find(p, t - 0.03, t + 0.03, alone=True)
                    if o is not None:
                        strikes.append((det, take, h.velocity, loudness_onset(det, p, o.t_s, not o.sure)))
            for name, window in COLOUR_WINDOWS.items():
                det_mod.COMPACT_START_S, det_mod.COMPACT_SPAN_S = window or main_window
                det_mod._PARTIALS_REF.clear()
                got = [(det_mod.partials_read(d, p, ts), take, v) for d, take, v, ts in strikes]
                ok = [(r, take, v) for r, take, v in got if r is not None]
                rate = det_mod.pooled_comb_rate([r for r, _, _ in ok])
                out = reads[name].setdefault((p, rs), {})
                for r, take, v in ok:
                    pv = det_mod.power_velocity(r, rate)
                    if pv is not None:
                        out[(take, v)] = 100.0 * math.log(pv / v)
            det_mod.COMPACT_START_S, det_mod.COMPACT_SPAN_S = main_window
            det_mod._PARTIALS_REF.clear()
    for name, got in reads.items():
        bias, colour = [], []
        for p in pitches:
            clean = got.get((p, -1), {})
            if not clean:
                continue
            bias.append(float(np.mean(list(clean.values()))))
            for rs in rooms:
                colour += [e - clean[k] for k, e in got.get((p, rs), {}).items() if k in clean]
        b, c = float(np.std(bias)), math.sqrt(float(np.mean(np.square(colour))))
        # the bias by the strike's loudness (the thump is a soft blow's)
        by_v = []
        for lo, hi in ((0.0, 45.0), (45.0, 75.0), (75.0, 200.0)):
            means = [float(np.mean([e for (_, v), e in got[(p, -1)].items() if lo <= v < hi])) for p in pitches
                     if any(lo <= v < hi for _, v in got.get((p, -1), {}))]  # fmt: skip
            by_v.append(f"{float(np.std(means)):.2f}")
        print(
            f"{voice}, keys {pitches[0]}..{pitches[-1]}, {name}: keys' s.d. with no room {b:.2f} % "
            f"(velocity < 45 / 45..75 / >= 75: {' / '.join(by_v)} %), one strike's "
            f"room colour {c:.2f} % (rooms {rooms}); a key's error with 13 strikes in 13 takes "
            f"{math.hypot(b, c / math.sqrt(13)):.2f} %, in one fixed room {math.hypot(b, c):.2f} %"
        )

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="piano-88-grand")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-strikes", type=int, default=MAX_STRIKES_PER_KEY)
    ap.add_argument("--pieces", nargs="*", default=None, help="bundled piece names (default all)")
    ap.add_argument(
        "--port", default="sim://?sensor=notes",
        help="the simulated device (default: the note-level sensor, strikes with their spread; "
        "'sim://?sensor=notes&spread=0': the exact instrument)",
    )
    ap.add_argument(
        "--play-port", default=None,
        help="play the pieces on this device instead (same truth seed), e.g. calibrate with "
        "--port '...&spread=0' and play with the spread: the strikes' own part of the onset error",
    )
    ap.add_argument("--single-notes", type=float, nargs="*", default=None, metavar="VELOCITY",
                    help="only the detector's loudness of single notes through the room (default velocities 96 40)")
    ap.add_argument("--takes", type=int, default=8, help="--single-notes: takes a key (a room each)")
    ap.add_argument("--voice", default="plain", choices=("plain", "rich"),
                    help="--single-notes, --strikes: the simulator's voice")
    ap.add_argument("--strikes", type=int, nargs="*", default=None, metavar="PITCH",
                    help="only a calibration through audio of these keys (default 24 keys A0..C8), each strike's "
                    "loudness against the physics' and each table against the truth (--seeds, --voice)")
    ap.add_argument("--parts", action="store_true",
                    help="only where the velocity error comes from: make demo's calibration (--voice, --seeds) "
                    "or --calibration's, its tables' common part and each key's own taken out, the piece played again")
    ap.add_argument("--calibration", default=None, help="--parts: a saved calibration of that truth (one seed)")
    ap.add_argument("--sensor-seed", type=int, default=0,
                    help="--parts without --calibration: calibrate in this room (sim://'s sensor_seed; make demo's: 0)")
    ap.add_argument("--room-colour", type=int, nargs=3, default=None, metavar=("FIRST", "LAST", "STEP"),
                    help="only each key's power sum through no room and --rooms, through the detector's windows "
                    "and others (keys FIRST..LAST every STEP, --voice)")
    ap.add_argument("--rooms", type=int, nargs="+", default=[0, 3, 7], help="--room-colour: the rooms (sensor seeds)")
    ap.add_argument("--predelay-ms", type=float, default=4.0,
                    help="--room-colour: the rooms' first reflection's delay (sim://'s predelay_ms)")
    args = ap.parse_args()
    if args.room_colour is not None:
        first, last, step = args.room_colour
        room_colour(args.voice, list(range(first, last + 1, step)), args.rooms, args.predelay_ms)
        return
    if args.parts:
        for seed in args.seeds:
            error_parts(load_spec(args.spec), seed, args.voice, args.calibration, args.sensor_seed)
        return
    if args.single_notes is not None:
        for v in args.single_notes or [96.0, 40.0]:
            single_notes(v, args.takes, args.voice)
        return
    spec = load_spec(args.spec)
    if args.strikes is not None:
        keys = args.strikes or [*range(21, 36, 2), 40, 45, 48, 52, 55, 60, 64, 67, 72, 76, 80, 84, 90, 96, 102, 108]
        for seed in args.seeds:
            strike_reads(spec, seed, args.voice, keys)
        return
    pieces = args.pieces if args.pieces is not None else [p.stem for p in bundled_pieces()]
    for seed in args.seeds:
        dev = open_port(args.port, spec, truth_seed=seed, sensor_seed=seed)  # note-level sensor: the figures documented with this bench (audio: bench_hearing.py)
        t0 = time.perf_counter()
        cal, rep = calibrate_session(dev, spec, max_strikes_per_key=args.max_strikes, seed=seed)
        wall = time.perf_counter() - t0
        truth = dev._truth  # the bench may read the truth; the calibrator may not
        ce = curve_errors(cal, truth, spec)
        print(
            f"seed {seed}: {rep.keys} keys, {rep.strikes_per_key:.1f} strikes/key, "
            f"{rep.play_calls} plays, {rep.sim_time_us / 1e6:.1f} s of playing "
            f"({wall:.1f} s wall), coil peak {rep.max_coil_temp_ratio:.3f} of limit, "
            f"isotonic keys {len(rep.isotonic_keys)}, pedal {rep.pedal_latency_us} us "
            f"(truth {truth.pedal_latency_us})"
        )
        print(
            f"  curves vs truth (vel 25..115): latency err mean {ce['lat_mean_us']:.0f} us, "
            f"p99 {ce['lat_p99_us']:.0f} us, max {ce['lat_max_us']:.0f} us; "
            f"velocity err mean {ce['vel_mean']:.2f}, p99 {ce['vel_p99']:.2f}; "
            f"threshold err max {100 * ce['thr_max_rel']:.2f} %"
        )
        ls = loudness_split(cal, truth, spec)
        print(
            f"  loudness at velocity 96 vs truth: common {ls['common']:+.2f} %, trend A0 -> C8 "
            f"{ls['trend']:+.2f} %, scatter {ls['scatter']:.2f} % (level {rep.audio_level_db} dB by "
            f"{rep.audio_level.by if rep.audio_level else rep.heard_by})"
        )
        se = soft_end_errors(cal, truth)
        print(
            f"  usable range (table's first drive .. 1), each key's worst latency err: median "
            f"{se['median_us']:.0f} us, max {se['max_us']:.0f} us; worst / one strike's own s.d. "
            f"{se['ratio_max']:.2f}"
        )
        re = return_errors(cal, truth)
        if re["keys"]:
            print(
                f"  key return vs truth ({rep.return_probes / rep.keys:.2f} probe strikes/key, "
                f"{re['keys']:.0f} keys measured, {re['unmeasured']:.0f} not): "
                f"return_us - R min {re['min_us'] / 1000:+.2f} ms, p1 {re['p1_us'] / 1000:+.2f}, "
                f"median {re['median_us'] / 1000:+.2f}, p99 {re['p99_us'] / 1000:+.2f}, "
                f"max {re['max_us'] / 1000:+.2f} ms; {re['short_1ms']:.0f} keys > 1 ms short, "
                f"{100 * re['within_5ms']:.1f} % <= 5 ms long"
            )
        pdev = dev if args.play_port is None else open_port(args.play_port, spec, truth_seed=seed, sensor_seed=seed)
        for piece in pieces:
            pe = play_errors(pdev, spec, cal, piece)
            print(
                f"  play {piece}: {pe['notes']:.0f} notes matched, {pe['missing']:.0f} missing; "
                f"onset err p99 {pe['onset_p99_ms']:.3f} ms, max {pe['onset_max_ms']:.3f} ms; "
                f"mean |velocity err| {pe['vel_mean_abs']:.2f}"
            )
            print(
                f"    without the {pe['short_return']:.0f} notes struck < 90 ms after their key's "
                f"release: onset err p99 {pe['onset_p99_clean_ms']:.3f} ms, "
                f"mean |velocity err| {pe['vel_mean_abs_clean']:.2f}"
            )


if __name__ == "__main__":
    main()
