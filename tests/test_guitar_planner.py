"""The guitar and bass planner: invariants on random pieces, the search against brute
force, impossible pieces, tab and CLI."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robo_player.cli import main as cli_main
from robo_player.midi import write_midi
from robo_player.plan import Command, Op, Plan
from robo_player.planner import PlanOptions, plan
from robo_player.planner.fingering import WINDOW, Costs, Layout, brute_force, path_cost, search
from robo_player.planner.guitar import MATRIX_COSTS, GuitarPlanReport, plan_guitar, prepare
from robo_player.planner.guitar_bounds import must_alter
from robo_player.planner.report import Fate
from robo_player.planner.tab import format_tab
from robo_player.score import Note, Score
from robo_player.spec.guitar import GuitarSpec, Mechanism, travel_us
from robo_player.spec.guitar_loader import load_guitar_spec

SPECS = {n: load_guitar_spec(n) for n in ("guitar-slider", "guitar-matrix", "bass-4")}
MS = 1000


def score_of(*notes: tuple[int, int, int, int]) -> Score:
    return Score([Note(p, t, d, v) for p, t, d, v in notes])


@st.composite
def pieces(draw: st.DrawFn, spec: GuitarSpec, max_notes: int = 24) -> Score:
    """Random pieces around the instrument's range: melodies, repeats, chords, rests."""
    n = draw(st.integers(1, max_notes))
    notes = []
    t = 0
    for _ in range(n):
        t += draw(st.sampled_from([0, 0, 40, 90, 125, 180, 250, 400, 900])) * MS
        pitch = draw(st.integers(spec.lowest - 3, spec.lowest + 30))
        dur = draw(st.sampled_from([30, 100, 125, 250, 500, 2000])) * MS
        notes.append(Note(pitch, t, dur, draw(st.integers(1, 127))))
    return Score(notes)


def _check(spec: GuitarSpec, score: Score, the_plan: Plan, report: GuitarPlanReport,
           calibration: object = None) -> None:  # fmt: skip
    """Replay the commands and hold every rule; return nothing, assert everything.
    ``calibration``: the plan's (with every contact measured, a fret settles before its
    pick's expected sound less the margin, not before the pick command)."""
    t = spec.timing
    lay = Layout(spec, calibration)
    amap = spec.actuators
    report.check()
    # every note accounted for, exactly once
    assert [o.index for o in report.outcomes] == list(range(len(score.notes)))
    played = {o.index for o in report.outcomes if o.fate is not Fate.DROPPED}
    assert set(report.fingering) == played
    picks = [c for c in the_plan.commands if amap[c.actuator].role.startswith("pick:")]
    assert sorted(c.note for c in picks) == sorted(played)
    for o in report.outcomes:
        assert o.fate is not Fate.DROPPED or o.reason
    # never two sounding notes on one string: per string, a note ends before the next sounds
    by_string: dict[int, list[tuple[int, int]]] = {}
    for i, (s, _f) in report.fingering.items():
        o = report.outcomes[i]
        n = score.notes[i]
        end = o.intended_t_us + n.duration_us + int(o.changes.get("duration_us", 0))
        by_string.setdefault(s, []).append((o.intended_t_us, end))
    for spans in by_string.values():
        spans.sort()
        for (s0, e0), (s1, _e1) in zip(spans, spans[1:], strict=False):
            assert s0 < s1 and e0 <= s1, spans
    # replay
    down: dict[int, int | None] = {}  # press actuator -> since when (None: up)
    up_at: dict[int, int] = {}
    moving_until: dict[int, int] = {}
    pos: dict[int, int] = {}
    slider = spec.mechanism is Mechanism.SLIDER
    ordered = sorted(the_plan.commands, key=Command.sort_key)
    assert ordered == the_plan.commands
    spans: dict[int, list[list[int]]] = {}  # press actuator -> [on, off (10**15: never)]
    at_press: dict[tuple[int, int], tuple[int | None, int]] = {}  # (actuator, on) -> carriage
    picks: list[tuple[Command, int, int]] = []
    dampers: dict[int, list[int]] = {}  # string -> its damper pulses
    for c in ordered:
        a = amap[c.actuator]
        kind, s = a.role.split(":")[0], int(a.role.split(":")[1])
        if kind in ("press", "fret"):
            if c.op is Op.PULSE_HOLD:
                assert down.get(c.actuator) is None
                if slider:  # the carriage has arrived and settled
                    assert moving_until.get(s, 0) <= c.t_us, (c, moving_until.get(s))
                down[c.actuator] = c.t_us
                spans.setdefault(c.actuator, []).append([c.t_us, 10**15])
                at_press[(c.actuator, c.t_us)] = (pos.get(s), moving_until.get(s, 0))
            else:
                assert c.op is Op.RELEASE and down.get(c.actuator) is not None
                assert c.t_us - (down[c.actuator] or 0) <= a.max_on_us
                down[c.actuator] = None
                up_at[c.actuator] = c.t_us
                spans[c.actuator][-1][1] = c.t_us
        elif kind == "carriage":
            assert c.op is Op.MOVE and 0 <= c.position <= a.pwm_max
            presser = spec.strings[s].presser
            assert presser is not None
            # no carriage moves while its presser is down (or still lifting)
            assert down.get(presser.channel) is None, c
            assert c.t_us >= up_at.get(presser.channel, -(10**9)) + t.release_us, c
            d_mm = abs(c.position - pos.get(s, 0)) / a.pwm_max * a.travel_mm
            moving_until[s] = c.t_us + round(travel_us(d_mm, a.max_speed_mm_s, a.accel_mm_s2)) + a.settle_us
            pos[s] = c.position
        elif kind == "pick":
            s_note, fret = report.fingering[c.note]
            assert s_note == s and c.op is Op.PULSE_HOLD and 0 < c.drive <= a.pwm_max
            picks.append((c, s, fret))
        elif kind == "damp":
            dampers.setdefault(s, []).append(c.t_us)
    # every pick after its fret has settled: at its ready time (the pick command, or with
    # a calibration the pick's expected sound less the margin) the fret is down, pressed
    # at least its settle before; an open string has nothing pressed on it then
    for c, s, fret in picks:
        ready = max(c.t_us, report.outcomes[c.note].intended_t_us - lay.margin_us)
        # and the string's damper (the note before's) silenced it and lifted by then
        # (the spec's damper_lift_us, 8 ms where it has none)
        assert not [d for d in dampers.get(s, []) if ready - t.damp_us - lay.lift_us < d <= ready], (c, ready)
        st_ = spec.strings[s]
        if fret > 0:
            act = st_.presser.channel if st_.presser is not None else st_.fret_channels[fret - 1]  # type: ignore[index]
            held = [sp for sp in spans.get(act, []) if sp[0] <= ready < sp[1]]
            assert held and held[0][0] <= ready - lay.settle_at[s][fret], (c, held)
            if slider:
                car = st_.carriage
                assert car is not None
                want = round(lay.pos_mm[fret] / car.travel_mm * amap[car.channel].pwm_max)
                where, until = at_press[(act, held[0][0])]
                assert where == want and until <= held[0][0]
        else:
            acts = [st_.presser.channel] if st_.presser is not None else list(st_.fret_channels or ())
            assert not any(sp[0] <= ready < sp[1] for x in acts for sp in spans.get(x, [])), c
    assert all(v is None for v in down.values()), "a fret left pressed at the end"


@pytest.mark.parametrize("name", list(SPECS))
def test_invariants_on_random_pieces(name: str) -> None:
    spec = SPECS[name]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces(spec), st.sampled_from(["transpose", "drop"]))
    def run(score: Score, policy: str) -> None:
        the_plan, report = plan(score, spec, None, PlanOptions(out_of_range=policy))
        assert isinstance(report, GuitarPlanReport)
        _check(spec, score, the_plan, report)

    run()


@pytest.mark.parametrize("name", list(SPECS))
def test_invariants_with_a_slow_damper(name: str) -> None:
    """A spec whose dampers lift slower than a fret settles (``timing.damper_lift_us``
    60 ms): every pick still waits for the felt (``_check``)."""
    spec = replace(SPECS[name], timing=replace(SPECS[name].timing, damper_lift_us=60 * MS))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces(spec))
    def run(score: Score) -> None:
        the_plan, report = plan(score, spec, None)
        assert isinstance(report, GuitarPlanReport)
        _check(spec, score, the_plan, report)

    run()


@pytest.mark.parametrize("first", [40, 41])
def test_a_slower_damper_lift_starts_the_changeover_sooner(first: int) -> None:
    """Legato on the matrix's low string, open E2 or F2 (fret 1) into G2 (fret 3): the
    changeover is the damper, then the fret settled and the felt lifted, so a spec with
    ``damper_lift_us`` 40 ms (over the fret's 25 ms settle) damps the first note 15 ms
    sooner (cut 15 ms more) than one without (8 ms); the pick stays where it was."""
    base = SPECS["guitar-matrix"]
    t = base.timing
    score = score_of((first, 0, 500 * MS, 80), (43, 500 * MS, 500 * MS, 80))
    damper = base.strings[0].damper.channel
    got = {}
    for lift in (None, 40 * MS):
        spec = replace(base, timing=replace(t, damper_lift_us=lift))
        the_plan, rep = plan(score, spec, None)
        assert isinstance(rep, GuitarPlanReport)
        assert rep.fingering == {0: (0, first - 40), 1: (0, 3)}
        _check(spec, score, the_plan, rep)
        damp_t = [c.t_us for c in the_plan.commands if c.actuator == damper and c.note == 0]
        pick_t = [c.t_us for c in the_plan.commands if spec.actuators[c.actuator].role == "pick:0" and c.note == 1]
        got[lift] = (damp_t[0], -rep.outcomes[0].changes["duration_us"], pick_t[0])
    (d0, cut0, p0), (d1, cut1, p1) = got[None], got[40 * MS]
    slower = 40 * MS - max(t.fret_settle_us, t.release_us, 8 * MS)
    assert slower == 15 * MS and p1 == p0
    assert d0 - d1 == slower and cut1 - cut0 == slower
    # and each damper is the whole changeover before the pick (no calibration: ready = pick)
    assert p0 - d0 == t.damp_us + max(t.fret_settle_us, t.release_us, 8 * MS)
    assert p1 - d1 == t.damp_us + 40 * MS


@pytest.mark.parametrize("name", ["guitar-slider", "bass-4"])
def test_invariants_with_pickers_of_different_latency(name: str) -> None:
    """Calibrated on a hidden-truth guitar, each string's picker has its own latency, so
    a string picks later than the search (which plans with the slowest) assumed: its
    carriage must still wait for its presser to clear (it once left early, a fault on
    the simulator: bwv248.5's bass line, string 3)."""
    from robo_player.calibrator.guitar import calibrate_guitar
    from robo_player.driver import open_port

    spec = SPECS[name]
    with open_port("sim://", spec, truth_seed=3) as dev:
        cal, _ = calibrate_guitar(dev, spec)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces(spec, max_notes=40))
    def run(score: Score) -> None:
        the_plan, report = plan(score, spec, cal)
        assert isinstance(report, GuitarPlanReport)
        _check(spec, score, the_plan, report, cal)

    run()


def calibrated(spec: GuitarSpec, seed: int) -> SimpleNamespace:
    """A calibration as the planner reads it: every picker (its curve left nominal) and a
    random settle (8-32 ms) for every fret contact; the changeovers then count back
    from the picks' expected sound (fingering.Layout)."""
    rng = random.Random(seed)
    roles = [a.role for a in spec.actuators if a.role.startswith(("press:", "fret:"))]
    return SimpleNamespace(pickers={s: None for s in range(len(spec.strings))},
                           settle_us={r: rng.randint(8_000, 32_000) for r in roles})  # fmt: skip


@pytest.mark.parametrize("cal", [False, True], ids=["nominal", "calibrated"])
@pytest.mark.parametrize("name", ["guitar-slider", "bass-4", "guitar-matrix"])
def test_search_equals_brute_force(name: str, cal: bool) -> None:
    spec = SPECS[name]
    layout = Layout(spec, calibrated(spec, 1) if cal else None)
    assert (layout.margin_us < 10**9) == cal

    @settings(max_examples=40, deadline=None)
    @given(pieces(spec, max_notes=6))
    def run(score: Score) -> None:
        onsets, _ = prepare(spec, score)
        n_paths = 1
        for o in onsets:
            n_paths *= len(o.fingerings)
        if n_paths > 3000:
            return
        # the matrix's weights (cut notes only) as the planner uses them
        costs = MATRIX_COSTS if name == "guitar-matrix" else None
        choice, cost = search(layout, onsets, costs, beam=10**6)
        _, best = brute_force(layout, onsets, costs)
        assert cost == pytest.approx(best, abs=1e-6)
        assert path_cost(layout, onsets, choice, costs) == pytest.approx(cost, abs=1e-6)

    run()


def test_search_chooses_which_of_two_notes_one_string_has_moves_an_octave() -> None:
    """G#5 then G5 125 ms later: only the top string has either, too close for its
    changeover, so one of them is played an octave down. Within the planner's window
    (WINDOW + the octave's price) the search weighs moving either, and finds brute
    force's choice (the first); with the octave's price outside the window the first is
    played as written because it comes first, and the second is moved at a higher cost."""
    spec = SPECS["guitar-slider"]
    layout = Layout(spec)
    score = score_of((80, 125 * MS, 110 * MS, 80), (79, 250 * MS, 110 * MS, 80), (75, 650 * MS, 110 * MS, 80))
    onsets, _ = prepare(spec, score)
    _, best = brute_force(layout, onsets)
    _, cost = search(layout, onsets, beam=10**6, window=WINDOW + Costs().transpose_ms)
    assert cost == pytest.approx(best, abs=1e-6)
    _, narrow = search(layout, onsets, beam=10**6, window=WINDOW)
    assert narrow > best + 1.0
    _, rep = plan_guitar(score, spec)
    assert [o.changes.get("pitch") for o in rep.outcomes] == [-12, None, None]
    assert rep.fingering[1] == (5, 15)  # G5 as written, on the top string


def test_search_prefers_short_travel() -> None:
    spec = SPECS["guitar-slider"]
    # a scale on one string's reach: the search keeps the carriage moves small
    notes = [(p, i * 300 * MS, 250 * MS, 80) for i, p in enumerate([55, 57, 59, 60, 62, 64, 65, 67])]
    _, rep = plan_guitar(score_of(*notes), spec)
    assert rep.notes_dropped == 0
    assert rep.fretter_travel_frets <= 10


def test_a_seven_note_chord_drops_what_has_no_string() -> None:
    spec = SPECS["guitar-slider"]
    chord = [(p, 0, 500 * MS, 80) for p in (40, 45, 50, 55, 59, 64, 69)]
    the_plan, rep = plan_guitar(score_of(*chord), spec, None, PlanOptions(out_of_range="drop"))
    assert rep.notes_in == 7 and rep.notes_dropped == 1
    (d,) = rep.drops
    assert "chord of 7 notes: no free string" in str(d["reason"])
    _check(spec, score_of(*chord), the_plan, rep)


def test_a_pitch_below_the_lowest_string() -> None:
    spec = SPECS["bass-4"]
    s = score_of((20, 0, 200 * MS, 80), (40, 300 * MS, 200 * MS, 80))
    _, rep = plan(s, spec, None, PlanOptions(out_of_range="drop"))
    assert rep.notes_dropped == 1 and rep.notes_played == 1
    assert "pitch G#0 is below the lowest string (E1)" in str(rep.drops[0]["reason"])
    _, rep = plan(s, spec, None, PlanOptions(out_of_range="transpose"))
    assert rep.notes_dropped == 0
    assert rep.outcomes[0].fate is Fate.ALTERED and rep.outcomes[0].changes["pitch"] == 12


def test_a_carriage_too_slow_for_the_tempo_is_reported() -> None:
    spec = SPECS["bass-4"]
    # F1 then G#1 250 ms later, both only on the E1 string (frets 1 and 4): damper 40 +
    # release 15 + move 164 + fret settle 25 ms before the pick do not fit after F1 has
    # rung its shortest 50 ms; G#1 is dropped with the reason, the rest is played
    s = score_of((29, 0, 50 * MS, 80), (32, 250 * MS, 50 * MS, 80), (31, 1000 * MS, 50 * MS, 80))
    the_plan, rep = plan_guitar(s, spec, None, PlanOptions(out_of_range="drop"))
    assert rep.notes_in == 3 and rep.notes_played == 2
    assert rep.drops == [{"note": 1, "reason": "string 0 fret 4: carriage move needs 244 ms before the pick"}]
    _check(spec, s, the_plan, rep)
    # policy transpose (the default): played an octave up on another string, reported
    the_plan, rep = plan_guitar(s, spec)
    assert rep.notes_dropped == 0 and rep.notes_played == 2
    o = rep.outcomes[1]
    assert o.fate is Fate.ALTERED and o.changes["pitch"] == 12 and o.pitch_out == 44
    assert o.reason == "moved an octave: no string that has it could be ready in time"
    assert rep.fingering[1][0] != 0
    _check(spec, s, the_plan, rep)


def test_a_note_two_busy_strings_have_is_moved_an_octave_not_dropped() -> None:
    spec = SPECS["guitar-slider"]
    # B5 (only the top string, fret 19) and F#5 (B string fret 19: the top string is
    # taken) ring from 0; F5 60 ms later is on the B string (fret 18) and the top string
    # (fret 13) only, both ringing at other frets with no time for a changeover: under
    # transpose it is played an octave down (F4) on a free string, under drop dropped
    s = score_of((83, 0, 1_000 * MS, 80), (78, 0, 1_000 * MS, 80), (77, 60 * MS, 200 * MS, 80))
    the_plan, rep = plan_guitar(s, spec)
    assert rep.notes_dropped == 0 and rep.fingering[0] == (4, 19) and rep.fingering[1] == (5, 19)  # F#5, B5
    o = rep.outcomes[2]
    assert o.fate is Fate.ALTERED and o.changes["pitch"] == -12 and o.pitch_out == 65
    assert o.reason == "moved an octave: no string that has it could be ready in time"
    assert rep.fingering[2][0] < 4
    _check(spec, s, the_plan, rep)
    the_plan, rep = plan_guitar(s, spec, None, PlanOptions(out_of_range="drop"))
    assert rep.notes_dropped == 1 and rep.drops[0]["note"] == 2
    assert "needs" in str(rep.drops[0]["reason"])
    _check(spec, s, the_plan, rep)


def test_the_carriage_moves_while_its_string_rings_open() -> None:
    spec = SPECS["bass-4"]
    amap = spec.actuators
    # F1 (fret 1), E1 open at 400 ms, G#1 (fret 4) at 600 ms: after the open E1 there is
    # no room for a move after the damper (244 ms before the pick), but the carriage is
    # free from F1's release and travels to fret 4 while E1 rings (pre-positioning)
    s = score_of((29, 0, 100 * MS, 80), (28, 400 * MS, 500 * MS, 80), (32, 600 * MS, 50 * MS, 80))
    the_plan, rep = plan_guitar(s, spec)
    assert rep.notes_dropped == 0 and rep.fingering == {0: (0, 1), 1: (0, 0), 2: (0, 4)}
    assert rep.fretter_travel_frets == 4 and rep.cut_notes == 1  # E1 damped before fret 4
    picks = {c.note: c.t_us for c in the_plan.commands if amap[c.actuator].role == "pick:0"}
    moves = [c for c in the_plan.commands if c.op is Op.MOVE]
    assert len(moves) == 2 and moves[1].note == 2 and moves[1].t_us < picks[1]
    _check(spec, s, the_plan, rep)


def test_a_note_ringing_into_the_next_on_its_string_is_cut() -> None:
    spec = SPECS["bass-4"]
    # two notes only string E1 has, overlapping: the first is cut and reported
    s = score_of((30, 0, 1_000 * MS, 80), (32, 600 * MS, 200 * MS, 80))
    the_plan, rep = plan_guitar(s, spec)
    assert rep.notes_dropped == 0 and rep.cut_notes == 1
    assert rep.outcomes[0].changes["duration_us"] < 0
    _check(spec, s, the_plan, rep)


def test_tab_and_report_keys() -> None:
    spec = SPECS["guitar-slider"]
    s = score_of((40, 0, 200 * MS, 80), (64, 0, 200 * MS, 80), (67, 300 * MS, 200 * MS, 80))
    _, rep = plan_guitar(s, spec)
    j = rep.to_json()
    for key in ("fretter_travel_frets", "fretter_travel_mm", "string_changes", "cut_notes"):
        assert key in j
    assert j["heat_overloads"] == 0 and j["supply_overloads"] == 0
    tab = format_tab(spec, s, rep)
    lines = [x for x in tab.splitlines() if "|" in x]
    assert len(lines) == 6 and lines[0].startswith("e|") and lines[-1].startswith("E|")
    assert lines[-1].startswith("E|-0-") and lines[0].startswith("e|-0-3")


def test_cli_plan_writes_tab_and_plays_on_the_simulator_only(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    mid = tmp_path / "tune.mid"
    write_midi(score_of((45, 0, 250 * MS, 80), (52, 250 * MS, 250 * MS, 90), (57, 500 * MS, 500 * MS, 70)), mid)
    out, tab, rep = tmp_path / "plan.jsonl", tmp_path / "tab.txt", tmp_path / "rep.json"
    assert cli_main(["-q", "plan", str(mid), "--spec", "guitar-slider", "--out", str(out),
                     "--tab", str(tab), "--report", str(rep)]) == 0  # fmt: skip
    assert Plan.read_jsonl(out).spec_name == "guitar-slider"
    assert "|" in tab.read_text()
    assert json.loads(rep.read_text())["notes_in"] == 3
    assert cli_main(["inspect", str(mid), "--spec", "bass-4"]) == 0
    assert "fretter travel" in capsys.readouterr().out
    assert cli_main(["-q", "simulate", str(mid), "--spec", "guitar-matrix"]) == 0  # sim/guitar/
    # play goes through the firmware too (tests/test_guitar_fw.py); calibrate listens on sim://
    assert cli_main(["calibrate", "--out", str(tmp_path / "c.yaml"), "--spec", "guitar-matrix",
                     "--port", "fw-host://"]) == 2  # fmt: skip
    assert "--port fw-host://: no device for the guitar family there yet" in capsys.readouterr().err


def test_cli_plan_tab_alone_as_the_issue_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `robo-player plan tune.mid --spec guitar-slider --tab tab.txt`: no --out needed
    mid = tmp_path / "tune.mid"
    write_midi(score_of((45, 0, 250 * MS, 80), (52, 250 * MS, 250 * MS, 90)), mid)
    tab = tmp_path / "tab.txt"
    assert cli_main(["plan", str(mid), "--spec", "guitar-slider", "--tab", str(tab)]) == 0
    assert "|" in tab.read_text() and f"wrote {tab}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tab.txt", "tune.mid"]
    # nothing to write: a usage error that names the outputs
    assert cli_main(["plan", str(mid), "--spec", "guitar-slider"]) == 2
    assert "give --out PLAN.jsonl, --tab TAB.txt or --report PATH" in capsys.readouterr().err


def test_plan_round_trip(tmp_path: Path) -> None:
    spec = SPECS["bass-4"]
    s = score_of((28, 0, 200 * MS, 80), (35, 400 * MS, 200 * MS, 100), (40, 900 * MS, 300 * MS, 40))
    the_plan, _ = plan(s, spec)
    assert any(c.op is Op.MOVE and c.position > 0 for c in the_plan.commands)
    path = tmp_path / "p.jsonl"
    the_plan.write_jsonl(path)
    again = Plan.read_jsonl(path)
    assert again.commands == the_plan.commands and again.spec_hash == spec.spec_hash


def test_a_tight_supply_and_a_hot_coil_are_counted() -> None:
    import dataclasses

    spec = SPECS["guitar-matrix"]
    # 6-note chords: 6 fret pulses then 6 picks; with room for 2 pulses at once, overloads
    tight = dataclasses.replace(spec, power=dataclasses.replace(spec.power, max_simultaneous_strikes=2))
    chords = [(p, i * 500 * MS, 400 * MS, 80) for i in range(4) for p in (41, 46, 51, 56, 60, 65)]
    _, rep = plan_guitar(score_of(*chords), tight)
    assert rep.supply_overloads > 0
    _, rep = plan_guitar(score_of(*chords), spec)
    assert rep.supply_overloads == 0 and rep.heat_overloads == 0
    # a coil that heats 100x faster passes its limit on a long held fret
    hot = dataclasses.replace(spec, thermal=dataclasses.replace(spec.thermal, coil_heat_capacity_j_per_k=0.1))
    _, rep = plan_guitar(score_of((41, 0, 10_000 * MS, 80)), hot)
    assert rep.heat_overloads >= 1


def _reference_overloads(spec: GuitarSpec, the_plan: Plan) -> tuple[int, int]:
    """Supply and heat overloads by the shared rules, call by call (what the planner's
    inlined loops must equal)."""
    from robo_player import rules

    amap = spec.actuators
    active: list[tuple[int, float]] = []
    over = 0
    for c in the_plan.commands:
        if c.op is not Op.PULSE_HOLD or c.pulse_us <= 0 or not amap[c.actuator].on_supply:
            continue
        active = [x for x in active if x[0] > c.t_us]
        active.append((c.t_us + c.pulse_us, rules.amps(amap[c.actuator], c.drive)))
        if not rules.fits_concurrency(amap, len(active)) or not rules.fits_supply(amap, sum(x[1] for x in active)):
            over += 1
    heat = rules.CoilHeat(amap)
    last: dict[int, tuple[int, int]] = {}
    hot: set[int] = set()
    for c in the_plan.commands:
        a = amap[c.actuator]
        if a.kind.name != "COIL":
            continue
        limit = rules.heat_limit_k(a)
        prev = last.pop(c.actuator, None)
        if prev is not None and prev[1] > 0 and c.t_us > prev[0]:
            if heat.run(c.actuator, prev[0], c.t_us, prev[1]) > limit:
                hot.add(c.actuator)
        if c.op is Op.PULSE_HOLD:
            if heat.run(c.actuator, c.t_us, c.t_us + c.pulse_us, c.drive) > limit:
                hot.add(c.actuator)
            last[c.actuator] = (c.t_us + c.pulse_us, c.hold)
    return over, len(hot)


def test_supply_and_heat_checks_equal_the_shared_rules() -> None:
    import dataclasses

    base = SPECS["guitar-matrix"]
    # a tight supply and coils that heat fast, so that both counts are often above 0
    spec = dataclasses.replace(
        base,
        power=dataclasses.replace(base.power, max_simultaneous_strikes=3),
        thermal=dataclasses.replace(base.thermal, coil_heat_capacity_j_per_k=0.3),
    )

    @settings(max_examples=30, deadline=None)
    @given(pieces(spec, max_notes=30))
    def run(score: Score) -> None:
        the_plan, rep = plan_guitar(score, spec)
        assert (rep.supply_overloads, rep.heat_overloads) == _reference_overloads(spec, the_plan)

    run()


def test_pieces_that_cannot_be_played_are_reported_not_raised() -> None:
    spec = SPECS["guitar-slider"]
    # nothing at all; only pitches outside every string; a 7-note chord of unisons;
    # notes at one instant on one string-only pitch; a note of length 0
    cases = [
        Score([]),
        score_of((10, 0, 100 * MS, 80), (127, 0, 100 * MS, 80)),
        score_of(*[(64, 0, 100 * MS, 80)] * 7),
        score_of((83, 0, 100 * MS, 80), (83, 0, 100 * MS, 80)),
        score_of((60, 0, 0, 80), (60, 10 * MS, 0, 80)),
    ]
    for policy in ("transpose", "drop"):
        for s in cases:
            the_plan, rep = plan(s, spec, None, PlanOptions(out_of_range=policy))
            assert isinstance(rep, GuitarPlanReport)
            _check(spec, s, the_plan, rep)
            assert rep.notes_in == len(s.notes) == len(rep.outcomes)
            assert rep.notes_played + rep.notes_altered + rep.notes_dropped == len(s.notes)
    _, rep = plan(cases[1], spec, None, PlanOptions(out_of_range="drop"))
    assert rep.notes_dropped == 2 and all("policy 'drop'" in str(d["reason"]) for d in rep.drops)
    _, rep = plan(cases[2], spec, None, PlanOptions(out_of_range="drop"))
    # E4 is on 5 strings (A2 fret 19 .. E4 open): 5 play it, 2 find no free string
    assert rep.notes_played + rep.notes_altered == 5 and rep.notes_dropped == 2
    assert isinstance(rep, GuitarPlanReport)
    assert sorted(s for s, _ in rep.fingering.values()) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", list(SPECS))
def test_the_planner_stays_within_the_string_count_bounds(name: str) -> None:
    """bench/bench_guitar.py's 'unaltered max': no plan leaves more notes unaltered than
    must_alter allows (the one for plans that drop nothing, when the plan drops nothing)."""
    spec = SPECS[name]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces(spec))
    def run(score: Score) -> None:
        _, report = plan_guitar(score, spec)
        no_drop, any_plan = must_alter(spec, score)
        unaltered = sum(o.fate is Fate.PLAYED for o in report.outcomes)
        assert unaltered <= len(score.notes) - any_plan
        if report.notes_dropped == 0:
            assert unaltered <= len(score.notes) - no_drop

    run()


def test_legato_four_voice_chords_must_cut_two_notes_a_change() -> None:
    # 4 voices, every one moving at each change, legato (10 ms apart): of the 4 ringing
    # and 4 new notes only 6 find a string, so 2 ringing notes are cut at every change;
    # a plan that may drop can instead drop 2 new notes, which frees their strings at the
    # next change too
    spec = SPECS["guitar-matrix"]
    chords = [(48, 55, 60, 64), (50, 57, 62, 65)] * 3
    notes = [(p, k * 500 * MS, 490 * MS, 80) for k, ch in enumerate(chords) for p in ch]
    score = score_of(*notes)
    assert must_alter(spec, score) == (2 * 5, 2 * 3)
    _, report = plan_guitar(score, spec)
    assert report.notes_dropped == 0
    assert sum(o.fate is Fate.PLAYED for o in report.outcomes) == len(notes) - 2 * 5


def test_a_chord_note_no_string_can_ready_is_moved_an_octave_not_dropped() -> None:
    """Chord notes get an octave option only where the chosen path must drop one: a
    fast chord change on the slider (found by a random search) dropped two notes."""
    notes = [(53, 0), (56, 0), (62, 0), (75, 0), (76, 125), (78, 125), (50, 250), (69, 250), (74, 250)]
    sc = score_of(*((p, t * MS, 120 * MS, 80) for p, t in notes))
    spec = SPECS["guitar-slider"]
    the_plan, report = plan(sc, spec, None)
    assert isinstance(report, GuitarPlanReport)
    assert report.drops == []
    moved = [o for o in report.outcomes if "pitch" in o.changes]
    assert moved and all(abs(o.changes["pitch"]) == 12 for o in moved)
    _check(spec, sc, the_plan, report)
    # policy drop: no octave moves, the notes are dropped and reported
    _, rep_drop = plan(sc, spec, None, PlanOptions(out_of_range="drop"))
    assert isinstance(rep_drop, GuitarPlanReport) and rep_drop.drops
