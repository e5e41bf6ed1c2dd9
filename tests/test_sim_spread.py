"""Strike-to-strike spread of the simulated piano and guitar (sim/spread.py): each stroke
lands a little apart from the last, by the truth's per-actuator spread, reproducibly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from robo_player.actuation import actuator_pwm_max
from robo_player.driver import open_port
from robo_player.errors import SpecError, TransportError
from robo_player.plan import Command, Op, Plan
from robo_player.sim.guitar.truth import GuitarTruth
from robo_player.sim.physics import CoilEvent, PianoPhysics
from robo_player.sim.spread import (
    LOUDNESS_SD_FRAC,
    PEDAL_SD_FRAC,
    PRESS_SD_FRAC,
    SPREAD_CORR,
    SPREAD_DRAW_STRIDE,
    TIMING_SD_FRAC,
    TIMING_SD_US,
    Z_MAX,
    draw_seed,
    stroke_normals,
)
from robo_player.sim.truth import Truth
from robo_player.spec import load_spec
from robo_player.spec.model import PianoSpec

QUIET = {"timing_sd_us": 0, "loudness_sd": 0, "sensor": "notes"}  # the microphone's noise off
N = 400  # strikes of one key at one drive


@pytest.fixture(scope="module")
def piano() -> PianoSpec:
    return load_spec("piano-88-grand")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def truth(piano: PianoSpec) -> Truth:
    return Truth.draw(piano, 1)


def _strikes(channel: int, duty: float, n: int = N, t0: int = 0) -> list[CoilEvent]:
    ev: list[CoilEvent] = []
    for i in range(n):
        t = t0 + i * 300_000  # past every key's return
        ev += [CoilEvent(t, channel, duty), CoilEvent(t + 40_000, channel, 0.0)]
    return ev


def _onsets(physics: PianoPhysics, events: list[CoilEvent], pitch: int) -> tuple[np.ndarray, np.ndarray]:
    """Onset after its strike (µs) and loudness of every note of ``pitch``."""
    perf = physics.run(events)
    ch = physics.spec.key(pitch).channel
    starts = np.array([e.t_us for e in events if e.duty > 0 and e.actuator == ch])
    heard = [h for h in perf.heard if h.pitch == pitch]
    t = np.array([h.t_us for h in heard], dtype=np.float64)
    return t - starts[: len(t)], np.array([h.velocity for h in heard])


def test_the_spread_is_drawn_within_its_ranges_and_keeps_the_other_parameters(piano: PianoSpec,
                                                                              truth: Truth) -> None:  # fmt: skip
    for name, (lo, hi) in (("timing_sd_us", TIMING_SD_US), ("timing_sd_frac", TIMING_SD_FRAC),
                           ("loudness_sd", LOUDNESS_SD_FRAC), ("spread_corr", SPREAD_CORR)):  # fmt: skip
        v = np.array([getattr(k, name) for k in truth.keys])
        assert lo <= v.min() < v.max() <= hi, name  # per key, not one figure for all
    assert PEDAL_SD_FRAC[0] <= truth.pedal_sd_frac <= PEDAL_SD_FRAC[1]
    # the spread has its own stream: the other parameters are drawn as they always were
    rng = np.random.default_rng(1)
    assert [k.pulse_full_us for k in truth.keys] == np.rint(rng.uniform(20_000, 30_000, len(piano.keys))).tolist()


@pytest.mark.parametrize("duty", [1.0, 0.45])
def test_repeated_strikes_spread_by_the_keys_own_figures(piano: PianoSpec, truth: Truth, duty: float) -> None:
    ks = piano.keys[40]
    kt = truth.key(ks.pitch)
    exact_t, exact_v = _onsets(PianoPhysics(piano, truth, spread=False), _strikes(ks.channel, duty), ks.pitch)
    assert len(exact_t) == N and np.ptp(exact_t) == 0 and np.ptp(exact_v) == 0  # spread=0: exact
    lat, vel = float(exact_t[0]), float(exact_v[0])
    t, v = _onsets(PianoPhysics(piano, truth, spread=True), _strikes(ks.channel, duty), ks.pitch)
    assert len(t) == N
    want_t = np.hypot(kt.timing_sd_us, kt.timing_sd_frac * lat)
    want_v = kt.loudness_sd * vel
    # N = 400 draws: the sample s.d. within 15 % of the truth's (about 4 standard errors)
    assert np.std(t) == pytest.approx(want_t, rel=0.15)
    assert np.std(v) == pytest.approx(want_v, rel=0.15)
    assert abs(np.mean(t) - lat) < 4 * want_t / np.sqrt(N)  # centred on the formula
    assert np.abs(t - lat).max() <= Z_MAX * want_t + 1  # bounded (onsets are whole µs)


def test_a_late_strike_is_a_softer_one(piano: PianoSpec, truth: Truth) -> None:
    """The timing and loudness deviations of a strike are correlated by the key's
    ``spread_corr`` (negative): the same weak stroke comes late and soft."""
    ks = piano.keys[40]
    kt = truth.key(ks.pitch)
    t, v = _onsets(PianoPhysics(piano, truth, spread=True), _strikes(ks.channel, 0.6, 2000), ks.pitch)
    r = float(np.corrcoef(t, v)[0, 1])
    # 2000 strikes: the sample correlation's s.e. is about (1 - rho^2) / sqrt(n) < 0.02
    assert r < -0.3 and r == pytest.approx(kt.spread_corr, abs=0.08)
    assert np.std(v) == pytest.approx(kt.loudness_sd * float(np.mean(v)), rel=0.1)  # the s.d. is kept


def test_dampers_and_the_pedal_spread(piano: PianoSpec, truth: Truth) -> None:
    """A damper's fall after its key's release spreads by the key's timing figures on
    R/3; the pedal's latency by the truth's ``pedal_sd_frac``; both exact on spread=0."""
    ks = piano.keys[40]
    kt = truth.key(ks.pitch)
    ev: list[CoilEvent] = []
    for i in range(400):  # held 100 ms: the damper lands after the shortest sound
        ev += [CoilEvent(i * 400_000, ks.channel, 0.5), CoilEvent(i * 400_000 + 100_000, ks.channel, 0.0)]
    ends = {}
    for sp in (False, True):
        perf = PianoPhysics(piano, truth, spread=sp).run(ev)
        ends[sp] = np.array([h.end_us for h in perf.heard]) - np.arange(400) * 400_000
    fall = kt.return_us / 3
    assert np.ptp(ends[False]) == 0 and ends[False][0] == pytest.approx(100_000 + fall, abs=1)
    assert np.std(ends[True]) == pytest.approx(np.hypot(kt.timing_sd_us, kt.timing_sd_frac * fall), rel=0.15)
    pc = pedal_channel(piano)
    pev: list[CoilEvent] = []
    for i in range(200):
        pev += [CoilEvent(i * 500_000, pc, 1.0), CoilEvent(i * 500_000 + 250_000, pc, 0.0)]
    sent = np.array([e.t_us for e in pev])
    for sp in (False, True):
        ph = PianoPhysics(piano, truth, spread=sp)
        lat = np.array([t for t, _ in ph.run(pev).pedal]) - sent
        assert len(lat) == len(pev)
        if not sp:
            assert (lat == truth.pedal_latency_us).all()
        else:  # 400 changes: the s.d. within 15 %
            assert np.std(lat) == pytest.approx(truth.pedal_sd_frac * truth.pedal_latency_us, rel=0.15)
            # the counter runs on: a second run draws the next changes, not the same ones
            lat2 = np.array([t for t, _ in ph.run(pev).pedal]) - sent
            assert lat2.tolist() != lat.tolist()


def pedal_channel(piano: PianoSpec) -> int:
    assert piano.pedal is not None
    return piano.pedal.channel


def test_the_draws_are_reproducible_and_per_key(piano: PianoSpec, truth: Truth) -> None:
    a, b = piano.keys[40], piano.keys[41]
    mine = _strikes(a.channel, 0.8, 50)
    t1, v1 = _onsets(PianoPhysics(piano, truth, spread=True), mine, a.pitch)
    t2, v2 = _onsets(PianoPhysics(piano, truth, spread=True), mine, a.pitch)
    assert t1.tolist() == t2.tolist() and v1.tolist() == v2.tolist()  # same truth, same commands
    # strikes added on another key do not reshuffle this key's
    other = _strikes(b.channel, 0.6, 50, t0=150_000)
    both = sorted(mine + other, key=lambda e: e.t_us)
    t3, v3 = _onsets(PianoPhysics(piano, truth, spread=True), both, a.pitch)
    assert t3.tolist() == t1.tolist() and v3.tolist() == v1.tolist()
    # another truth seed spreads otherwise
    t4, _ = _onsets(PianoPhysics(piano, Truth.draw(piano, 2), spread=True), mine, a.pitch)
    assert np.std(t4) > 0 and (t4 - np.mean(t4)).tolist() != (t1 - np.mean(t1)).tolist()


def test_the_counter_runs_on_across_runs_and_forks(piano: PianoSpec, truth: Truth) -> None:
    ks = piano.keys[30]
    whole_t, _ = _onsets(PianoPhysics(piano, truth, spread=True), _strikes(ks.channel, 0.9, 40), ks.pitch)
    ph = PianoPhysics(piano, truth, spread=True)
    first, _ = _onsets(ph, _strikes(ks.channel, 0.9, 20), ks.pitch)
    fork = ph.fork()
    second, _ = _onsets(ph, _strikes(ks.channel, 0.9, 20), ks.pitch)
    forked, _ = _onsets(fork, _strikes(ks.channel, 0.9, 20), ks.pitch)
    assert first.tolist() + second.tolist() == whole_t.tolist()  # strikes 20..39, not 0..19 again
    assert forked.tolist() == second.tolist()  # a replay from a fork draws what the run draws


def test_stroke_normals_are_standard_normal_and_independent() -> None:
    n = np.arange(100_000)
    z1, z2 = stroke_normals(7, 1, np.full(len(n), 60), n)
    assert abs(z1.mean()) < 0.02 and abs(z2.mean()) < 0.02
    assert z1.std() == pytest.approx(1.0, abs=0.02) and z2.std() == pytest.approx(1.0, abs=0.02)
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 0.02 and abs(np.corrcoef(z1[:-1], z1[1:])[0, 1]) < 0.02
    assert np.abs(z1).max() <= Z_MAX
    y1, _ = stroke_normals(7, 2, np.full(len(n), 60), n)  # another stream: other numbers
    assert abs(np.corrcoef(z1, y1)[0, 1]) < 0.02


def _play_piano(opened: Any, piano: PianoSpec, url: str) -> list[Any]:
    ks = piano.keys[20]
    full = actuator_pwm_max(piano)[ks.channel]
    cmds = [Command(i * 300_000, Op.PULSE_HOLD, ks.channel, round(0.8 * full), 30_000, 0) for i in range(20)]
    cmds += [Command(i * 300_000 + 100_000, Op.RELEASE, ks.channel) for i in range(20)]
    plan = Plan(cmds, spec_name=piano.name, spec_hash=piano.spec_hash)
    plan.sort()
    dev = opened(open_port(url, piano, truth_seed=1, **QUIET))
    return dev.play(plan).heard


def test_the_url_option_turns_it_off(opened: Any, piano: PianoSpec) -> None:
    on = _play_piano(opened, piano, "sim://?spread=1")
    off = _play_piano(opened, piano, "sim://?spread=0")
    lat_on = [h.t_us - i * 300_000 for i, h in enumerate(on)]
    lat_off = [h.t_us - i * 300_000 for i, h in enumerate(off)]
    assert len(on) == len(off) == 20
    assert len(set(lat_off)) == 1 and len({h.velocity for h in off}) == 1
    assert len(set(lat_on)) > 10 and len({h.velocity for h in on}) > 10
    with pytest.raises(TransportError, match=r"spread=2 \(allowed: 0 or 1\)"):
        open_port("sim://?spread=2", piano)


def test_the_url_option_draws_the_strokes_again(opened: Any, piano: PianoSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """``spread_draw=D`` (session 32) draws the strokes from the truth's spread seed + D x
    SPREAD_DRAW_STRIDE (session 31's one-off "+1000" patch of ``Truth.spread_seed``); the
    default, 0, is the truth's own draw, so every figure measured before holds."""
    base = _play_piano(opened, piano, "sim://?spread=1")
    lat = [h.t_us - i * 300_000 for i, h in enumerate(base)]
    assert _play_piano(opened, piano, "sim://?spread=1&spread_draw=0") == base
    again = _play_piano(opened, piano, "sim://?spread=1&spread_draw=1")
    lat_again = [h.t_us - i * 300_000 for i, h in enumerate(again)]
    assert len(again) == 20 and all(a != b for a, b in zip(lat, lat_again, strict=True))
    assert abs(np.mean(lat_again) - np.mean(lat)) < 3 * np.std(lat) / np.sqrt(20) + 50  # the same key, another draw
    assert _play_piano(opened, piano, "sim://?spread=1&spread_draw=2") != again
    assert draw_seed(12345, 0) == 12345 and draw_seed(12345, 1) == 12345 + SPREAD_DRAW_STRIDE
    orig = Truth.spread_seed
    monkeypatch.setattr(Truth, "spread_seed", lambda self: orig(self) + SPREAD_DRAW_STRIDE)
    assert _play_piano(opened, piano, "sim://?spread=1") == again  # session 31's draws, by the option
    monkeypatch.undo()
    for bad, msg in (("-1", r"spread_draw=-1 \(allowed: 0\.\.1000000\)"), ("x", "spread_draw='x' must be an integer")):
        with pytest.raises(TransportError, match=msg):
            open_port(f"sim://?spread_draw={bad}", piano)
    with pytest.raises(TransportError, match="spread_draw=1 needs spread=1"):
        open_port("sim://?spread=0&spread_draw=1", piano)


def test_truth_files_keep_the_spread_and_old_files_get_the_middle(tmp_path: Path, piano: PianoSpec,
                                                                  truth: Truth) -> None:  # fmt: skip
    p = tmp_path / "t.yaml"
    truth.save(p)
    assert Truth.load(p) == truth
    doc = yaml.safe_load(p.read_text())
    for k in doc["keys"]:
        for name in ("timing_sd_us", "timing_sd_frac", "loudness_sd"):
            del k[name]
        del k["spread_corr"]
    del doc["pedal_sd_frac"]
    doc["seed"] = None
    p.write_text(yaml.safe_dump(doc))
    old = Truth.load(p)
    assert old.keys[0].timing_sd_us == sum(TIMING_SD_US) / 2
    assert old.keys[0].loudness_sd == sum(LOUDNESS_SD_FRAC) / 2
    assert old.keys[0].spread_corr == sum(SPREAD_CORR) / 2 and old.pedal_sd_frac == sum(PEDAL_SD_FRAC) / 2
    assert old.spread_seed() == Truth.load(p).spread_seed()  # no seed: from its contents
    doc["keys"][3]["loudness_sd"] = 0.9
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=r"keys\[3\]\.loudness_sd: 0\.9 out of range \(allowed: 0\.0\.\.0\.5\)"):
        Truth.load(p)
    doc["keys"][3]["loudness_sd"] = 0.01
    doc["pedal_sd_frac"] = -0.1
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=r"pedal_sd_frac: -0\.1 out of range \(allowed: 0\.0\.\.0\.5\)"):
        Truth.load(p)


# --- the guitar --------------------------------------------------------------------------


def _guitar_picks(opened: Any, url: str, fret: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Forty picks of string 1 of the matrix guitar (fret 3 pressed 1.02 x its settle
    before each pick sounds, if ``fret``): latencies, loudness, buzzed notes."""
    spec = load_spec("guitar-matrix")
    dev = opened(open_port(url, spec, truth_seed=1, **QUIET))
    truth: GuitarTruth = dev._truth
    pk = spec.actuators[spec.strings[1].picker.channel]
    ch = (spec.strings[1].fret_channels or ())[2]
    fa = spec.actuators[ch]
    damper = spec.actuators[spec.strings[1].damper.channel]
    tr = truth.strings[1]
    drive = round(0.8 * pk.pwm_max) / pk.pwm_max
    lat = tr.latency_full_us * ((drive - tr.threshold) / (1 - tr.threshold)) ** (-tr.alpha)
    settle = truth.pressers["fret:1:3"]
    cmds = []
    for i in range(40):
        t = 200_000 + i * 400_000
        if fret:
            cmds.append(Command(t, Op.PULSE_HOLD, ch, fa.pwm_max, spec.timing.press_pulse_us, fa.hold_counts))
        pick = round(t + 1.02 * settle - lat)
        cmds.append(Command(pick, Op.PULSE_HOLD, pk.index, round(0.8 * pk.pwm_max), spec.timing.pick_pulse_us, 0))
        cmds.append(Command(t + 250_000, Op.PULSE_HOLD, damper.index, damper.pwm_max, spec.timing.damp_us, 0))
        if fret:
            cmds.append(Command(t + 300_000, Op.RELEASE, ch))
    plan = Plan(cmds, spec_name=spec.name, spec_hash=spec.spec_hash)
    plan.sort()
    perf = dev.play(plan)
    notes = dev.instrument.last_notes
    starts = np.array(sorted(c.t_us for c in cmds if c.actuator == pk.index))
    return notes.t_us - starts, notes.velocity, int(perf.extra["buzzed_notes"])


def test_guitar_picks_and_fret_contacts_spread(opened: Any) -> None:
    t0, v0, buzz0 = _guitar_picks(opened, "sim://?spread=0", fret=False)
    assert np.ptp(t0) == 0 and np.ptp(v0) == 0 and buzz0 == 0
    t1, v1, _ = _guitar_picks(opened, "sim://?spread=1", fret=False)
    assert np.std(t1) > 100 and np.std(v1) > 0.3  # µs, velocity units
    assert np.abs(t1 - t0[0]).max() < 5_000 and np.abs(v1 / v0[0] - 1).max() < 0.1
    # the fret pressed only 2 % of its settle time early: with spread=0 never a buzz,
    # with the contact's own spread (3-6 % s.d.) some presses are not clean yet
    _, _, b_exact = _guitar_picks(opened, "sim://?spread=0", fret=True)
    _, _, b_spread = _guitar_picks(opened, "sim://?spread=1", fret=True)
    assert b_exact == 0 and 0 < b_spread < 40


def test_guitar_truth_draws_the_spread_and_checks_it(tmp_path: Path) -> None:
    spec = load_spec("guitar-matrix")
    g = GuitarTruth.draw(spec, 4)
    sds = np.array(list(g.press_spread.values()))
    assert len(sds) == len(g.pressers) and PRESS_SD_FRAC[0] <= sds.min() < sds.max() <= PRESS_SD_FRAC[1]
    p = tmp_path / "g.yaml"
    g.save(p)
    assert GuitarTruth.load(p) == g
    doc = yaml.safe_load(p.read_text())
    for st in doc["strings"]:  # a file from before the spread: the middle of the ranges
        del st["timing_sd_us"], st["loudness_sd"]
    del doc["press_spread"]
    p.write_text(yaml.safe_dump(doc))
    old = GuitarTruth.load(p)
    assert old.strings[0].timing_sd_us == sum(TIMING_SD_US) / 2 and old.strings[0].timing_sd_frac == g.strings[0].timing_sd_frac
    assert old.press_sd("fret:0:1") == sum(PRESS_SD_FRAC) / 2
    doc["press_spread"] = {"fret:9:9": 0.01}
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=r"press_spread\.fret:9:9: no such presser"):
        GuitarTruth.load(p).check_for(spec, str(p))


# --- what the spread asks of the calibrator --------------------------------------------


SOFT_END_PITCHES = [21, 45, 60, 83, 108]


def _soft_end_error(opened: Any, piano: PianoSpec) -> float:
    """Calibrate five keys on sim://?spread=1 (truth seed 0) within the default budget;
    the latency curve's worst error over the usable range (µs)."""
    from robo_player.calibrator import calibrate_session

    dev = opened(open_port("sim://?sensor=notes&spread=1", piano, truth_seed=0, sensor_seed=0))
    cal, rep = calibrate_session(dev, piano, pitches=SOFT_END_PITCHES, seed=0)
    assert rep.strikes_per_key <= 14  # issue 11's budget, probes included
    worst = 0.0
    for p in SOFT_END_PITCHES:
        c, kt = cal.keys[p], dev._truth.key(p)
        for d in np.linspace(c.drive[0], 1.0, 50):
            u = (d - kt.threshold) / (1.0 - kt.threshold)
            if u > 0:
                worst = max(worst, abs(c.latency_at(d) - kt.latency_full_us * u ** (-kt.alpha)))
    return worst


@pytest.mark.xfail(strict=True, reason="out of reach within 14 strikes a key: at the soft end (300 ms) one "
                   "strike's own s.d. is 3-6 ms, and the curve's error there falls as 1/sqrt(strikes) "
                   "(docs/calibration.md, 'Spread', session 13: 8.2 ms -> 4.3 ms worst here; 17 strikes a key "
                   "still leave 5.5-8 ms over 88 keys); strict, so that a calibrator that meets it fails "
                   "the suite until the mark is taken off")  # fmt: skip
def test_calibration_with_the_spread_meets_the_latency_target(opened: Any, piano: PianoSpec) -> None:
    """tests/test_calibrator.py's target (the latency curve within 1 ms of the truth over
    the usable range), on sim://?spread=1: with the spread. Measured: 4.26 ms worst (key
    60 at 296 ms; session 12: 8.2 ms, key 60 at 292 ms)."""
    worst = _soft_end_error(opened, piano)
    assert worst < 1000.0, worst


@pytest.mark.parametrize("seed", [1, 3])
def test_guitar_calibration_through_audio_with_the_spread_finds_c(opened: Any, seed: int) -> None:
    """With the picks' own spread the guitar's audio calibration reads its absolute time
    (c: the sync picker's full-drive latency) within 1 ms of the truth: from the spec's
    sync click. Before the click c came from the picks' curve shape (flat: alpha
    0.15-0.25) and landed tens of ms off (seed 3: 33.5 ms), or a latency below 0 made the
    fit NaN (seed 1); docs/guitar.md, "Calibration")."""
    from robo_player.calibrator.guitar import calibrate_guitar
    from robo_player.calibrator.guitar_listening import sync_string

    spec = load_spec("guitar-slider")
    dev = opened(open_port("sim://?sensor=audio&spread=1", spec, truth_seed=seed))
    cal, rep = calibrate_guitar(dev, spec)
    assert rep.clock_by == "click" and rep.sync_offset_us is None
    s = sync_string(spec)
    c = cal.pickers[s].latency_at(1.0)  # what c would be: the sync picker at full drive, absolute
    assert abs(c - dev._truth.strings[s].latency_full_us) < 1000.0  # measured: 108 us (seed 1)
