"""Call and response (``live --respond``): end of turn, the answer's timing and
conditioning, and the answer stopping when the player plays again; in virtual time on
the simulator (no wall clock)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import mido
import pytest

from robo_player.calibrator import calibrate_session
from robo_player.cli import main
from robo_player.driver.ports import open_port
from robo_player.live import LiveOptions, LivePlanner
from robo_player.live.respond import (
    InlineGenerator,
    Responder,
    RespondOptions,
    continue_phrase,
    pulse_us,
    start_on_pulse,
)  # fmt: skip
from robo_player.live.session import run_virtual
from robo_player.score import Note
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration
from robo_player.spec.model import PianoSpec

HAS_TORCH = importlib.util.find_spec("torch") is not None
MODEL = Path(__file__).resolve().parents[1] / "models" / "performance.pt"
ANSWER = [Note(72 + 2 * i, 250_000 * i, 150_000, 100) for i in range(4)]  # 0.9 s


@pytest.fixture(scope="module")
def spec() -> PianoSpec:
    return load_spec("piano-61-diy")


@pytest.fixture(scope="module")
def cal(spec: PianoSpec) -> Calibration:
    """The keys the tests play, calibrated on the simulator's hidden truth."""
    # the note-level sensor: these tests respond live, not hear (tests/test_hearing*.py do)
    with open_port("sim://?sensor=notes", spec, truth_seed=0) as dev:
        c, _ = calibrate_session(dev, spec, pitches=[*range(55, 68), *range(72, 80)], seed=0)
    return c


def phrase(t0: float, pitches: list[int | None], beat: float = 0.25, art: float = 0.8,
           vel: int = 90) -> list[tuple[float, Any]]:  # fmt: skip
    """Notes on a beat grid (None: a rest), each ``art`` of a beat long."""
    ev: list[tuple[float, Any]] = []
    for i, p in enumerate(pitches):
        if p is not None:
            t = t0 + i * beat
            ev.append((t, mido.Message("note_on", note=p, velocity=vel)))
            ev.append((t + art * beat, mido.Message("note_off", note=p)))
    return sorted(ev, key=lambda e: e[0])


def respond(spec: PianoSpec, cal: Calibration, ev: list, answer: list[Note] = ANSWER,
            **opts: Any) -> tuple[Any, Any, Responder, list]:  # fmt: skip
    calls: list = []

    def gen(call: list[Note], answer_s: float) -> list[Note]:
        calls.append((call, answer_s))
        return list(answer)

    planner = LivePlanner(spec, cal, LiveOptions(min_velocity=64))
    r = Responder(planner, InlineGenerator(gen), RespondOptions(**opts))
    with open_port("sim://", spec, truth_seed=0) as dev:
        perf, session = run_virtual(dev, planner, ev, responder=r, record=True)
        assert dev.energised() == []
    return perf, session, r, calls


def answer_onsets(perf: Any, after_us: int) -> list[int]:
    return sorted(h.t_us for h in perf.heard if h.pitch >= 72 and h.t_us > after_us)


def test_the_pulse_is_the_median_gap_between_onsets_chords_as_one() -> None:
    assert pulse_us([0, 250_000, 260_000, 500_000, 750_000]) == 250_000
    assert pulse_us([0, 50_000, 100_000, 150_000]) == 100_000  # doubled into 0.1..1.5 s
    assert pulse_us([0, 500_000]) is None


def test_the_answer_starts_on_the_coarsest_grid_point_within_reach() -> None:
    # beat 500 ms from the last onset at 0; end of turn at 700 ms; earliest 730 ms:
    # the beat (1000) is past end + 100 ms, the half beat 750 ms is not
    assert start_on_pulse(700_000, 730_000, 0, 500_000, 100_000) == 750_000
    assert start_on_pulse(700_000, 730_000, 0, None, 100_000) == 730_000
    assert start_on_pulse(700_000, 700_010, 0, 350_000, 100_000) == 787_500  # a quarter beat
    assert start_on_pulse(700_000, 700_010, 0, 1_300_000, 100_000) == 700_010  # all past


def test_the_turn_ends_after_the_silence_with_every_key_up_not_in_rests(
    spec: PianoSpec, cal: Calibration
) -> None:
    # rests (240 ms of silence) and a held key over a longer gap: one turn only
    ev = phrase(0.2, [60, 62, None, 64, 65, None, 67, 65, 64], beat=0.2)  # up at 1.96 s
    ev += [(2.1, mido.Message("note_on", note=60, velocity=80)),  # held over a gap ...
           (2.2, mido.Message("note_on", note=64, velocity=80)),
           (2.25, mido.Message("note_off", note=64)),
           (2.8, mido.Message("note_on", note=67, velocity=80)),  # ... of 550 ms
           (2.9, mido.Message("note_off", note=67)),
           (3.0, mido.Message("note_off", note=60))]  # fmt: skip
    ev.sort(key=lambda e: e[0])
    perf, session, r, calls = respond(spec, cal, ev)
    st = r.stats
    assert st.turns == 1 and st.answers == 1 and st.end_of_turn_us == [300_000]
    call, answer_s = calls[-1]  # (the earlier ones: speculation at each all-keys-up)
    assert [n.pitch for n in call][:3] == [60, 62, 64] and len(call) == 10
    # as long as the call by default: first onset (0.2 s) .. last key up (3.0 s)
    assert answer_s == pytest.approx(2.8, abs=0.01)
    # the answer was heard after the end of turn (3.3 s), its first note within 100 ms
    first = answer_onsets(perf, 3_000_000)
    assert len(first) == len(ANSWER)
    assert 3_300_000 < first[0] <= 3_400_000
    assert st.first_note_us[0] <= 100_000


def test_each_answer_note_sounds_at_its_time_whatever_its_velocity(
    spec: PianoSpec, cal: Calibration
) -> None:
    answer = [Note(72 + i, 200_000 * i, 100_000, v) for i, v in enumerate((127, 50, 100, 64))]
    perf, session, r, _ = respond(
        spec, cal, phrase(0.2, [60, 62, 64, 65]), answer, stop_us=None
    )  # (the model's velocities kept)
    heard = answer_onsets(perf, 1_000_000)
    assert len(heard) == 4
    gaps = [b - a for a, b in zip(heard, heard[1:], strict=False)]
    # nominal curves against the simulator's hidden truth: a few ms, not the 30-60 ms
    # between a loud and a soft strike's latency
    assert all(abs(g - 200_000) < 12_000 for g in gaps)


def test_the_answer_stops_when_the_player_plays_again(spec: PianoSpec, cal: Calibration) -> None:
    long = [Note(72 + (i % 8), 120_000 * i, 250_000, 100) for i in range(20)]  # 2.5 s, legato
    ev = phrase(0.2, [60, 62, 64, 65])  # last key up 1.15 s, end of turn 1.45 s
    t_again = 2.0
    ev += [(t_again, mido.Message("note_on", note=55, velocity=100)),
           (t_again + 0.2, mido.Message("note_off", note=55))]  # fmt: skip
    perf, session, r, _ = respond(spec, cal, ev, long)
    assert r.stats.stopped == 1
    t_us = round(t_again * 1e6)
    # (the player's note ends a new call: its answer comes after 2.2 + 0.3 s)
    late = [h for h in perf.heard if h.pitch >= 72 and t_us + 50_000 < h.t_us < 2_500_000]
    assert late == []  # no answer note sounds 50 ms after the player came back
    # every answer key was let go within a frame (lead) of the player's note
    ans_keys = {72 + k for k in range(8)}
    held = [h for h in perf.heard if h.pitch in ans_keys and h.t_us < t_us
            and (h.end_us is None or h.end_us > t_us)]  # fmt: skip
    assert held and all(h.end_us is not None and h.end_us <= t_us + 50_000 for h in held)
    pulse = LivePlanner(spec, cal).limits.pulse_us
    for h in held:
        ch = spec.key(h.pitch).channel
        # released in the next frame, or at the end of its strike pulse (never cut)
        strike = max(c.t_us for c in session.sent
                     if c.actuator == ch and c.op.value == "pulse_hold" and c.t_us < h.t_us)  # fmt: skip
        assert any(c.actuator == ch and h.t_us < c.t_us <= max(t_us + 5_000, strike + pulse)
                   for c in session.sent if c.op.value == "release")  # fmt: skip
    assert any(h.pitch == 55 for h in perf.heard)  # the player's own note plays


def late_answer_onsets(spec: PianoSpec, cal: Calibration, t_again: float, stop_us: int | None
                       ) -> tuple[list[int], Responder]:  # fmt: skip
    """A soft answer (velocity 40: slow keys) cut by the player at ``t_again`` s: the
    answer's onsets later than 50 ms after."""
    soft = [Note(72 + (i % 8), 90_000 * i, 80_000, 40) for i in range(20)]
    ev = phrase(0.2, [60, 62, 64, 65])  # end of turn 1.45 s
    ev += [(t_again, mido.Message("note_on", note=55, velocity=100)),
           (t_again + 0.2, mido.Message("note_off", note=55))]  # fmt: skip
    perf, _, r, _ = respond(spec, cal, ev, soft, stop_us=stop_us)
    t_us = round(t_again * 1e6)
    # (the player's note is a new call: its answer comes 0.5 s after it)
    return [h.t_us - t_us for h in perf.heard
            if h.pitch >= 72 and t_us + 50_000 < h.t_us < t_us + 450_000], r  # fmt: skip


def test_a_soft_answer_stops_within_50_ms_whenever_the_player_comes_back(
    spec: PianoSpec, cal: Calibration
) -> None:
    # the player comes back at every phase of the answer's 90 ms beat (13 ms apart)
    for k in range(7):
        late, r = late_answer_onsets(spec, cal, 1.70 + 0.013 * k, 50_000)
        assert r.stats.stopped == 1
        assert late == [], f"answer onsets {late} µs after the player at phase {k}"
        # the answer's notes were played loud enough for their keys to be quick
        assert r.stats.louder_to_stop > 0


def test_the_model_s_soft_velocities_kept_cannot_stop_in_50_ms(
    spec: PianoSpec, cal: Calibration
) -> None:
    # the same answers at the model's own velocity 40 (stop_us None): a strike handed
    # out before the player came back sounds up to its key's latency (> 100 ms) later
    lates = [late_answer_onsets(spec, cal, 1.70 + 0.013 * k, None)[0] for k in range(7)]
    assert any(lates)


def test_a_call_done_controller_ends_the_turn_at_once(spec: PianoSpec, cal: Calibration) -> None:
    ev = phrase(0.2, [60, 62, 64])  # the last key goes up at 0.9 s
    ev.insert(-1, (0.85, mido.Message("control_change", control=102, value=127)))
    perf, session, r, _ = respond(spec, cal, ev, call_done_cc=102)
    assert r.stats.by_cc == 1 and r.stats.turns == 1
    assert r.stats.end_of_turn_us[0] < 300_000  # before the silence would have ended it
    assert answer_onsets(perf, 850_000)[0] <= 850_000 + 100_000


def test_the_call_is_the_primer_and_the_answer_comes_in_two_parts(
    spec: PianoSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robo_player.live.respond import answer_chunks
    from robo_player.model import generate as gm
    from robo_player.model import tokenizer as tk
    from robo_player.score import Score

    seen: list[dict[str, Any]] = []
    sampled = [tk.TIME_SHIFT + 9, tk.NOTE_ON + 67]  # 100 ms, then G4 (the closing: its off)

    def fake(model: Any, spec_: Any, seconds: float, primer: Any = None, **kw: Any) -> Any:
        seen.append({"primer": list(primer or []), "seconds": seconds, "spec": spec_})
        toks = [*(primer or []), *sampled, tk.TIME_SHIFT, tk.NOTE_OFF + 67]
        return type("G", (), {"score": tk.decode(toks), "tokens": toks, "events": 2})()

    monkeypatch.setattr(gm, "generate", fake)
    call = [
        Note(60, 0, 200_000, 90),
        Note(64, 250_000, 200_000, 90),
        Note(20, 500_000, 100_000, 90),
    ]
    parts = list(answer_chunks(None, spec, call, 2.0, RespondOptions(), first_s=0.8))
    primer = tk.encode(Score(notes=call[:2]))  # the note the robot cannot play left out
    assert seen[0]["primer"] == primer and seen[0]["spec"] is spec  # masked to the spec
    assert seen[0]["seconds"] == pytest.approx(0.45 + 0.8)  # the call, then the first part
    # the rest is sampled on from the call and the first part, to the answer's length
    assert seen[1]["primer"] == primer + sampled
    assert seen[1]["seconds"] == pytest.approx(0.45 + 2.0)
    (n,) = parts[0]  # after the call: the sampled G4, from 0, closed 10 ms later
    assert (n.pitch, n.onset_us, n.duration_us) == (67, 0, 10_000)
    assert len(parts) == 2 and parts[1][0].pitch == 67 and parts[1][0].onset_us == 100_000


@pytest.mark.skipif(not HAS_TORCH or not MODEL.exists(), reason="needs torch and the model")
def test_the_shipped_model_answers_in_range_and_about_as_long_as_the_call(
    spec: PianoSpec,
) -> None:
    from robo_player.model.checkpoint import load_model

    model, _, _ = load_model(MODEL)
    call = [Note(p, 250_000 * i, 200_000, 90) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64])]
    out = continue_phrase(model, spec, call, 1.7, RespondOptions(seed=3))
    assert out and all(spec.has_pitch(n.pitch) for n in out)
    assert out[0].onset_us == 0 and max(n.onset_us for n in out) <= 1_700_000


def test_respond_without_torch_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))  # fmt: skip
    assert main(["live", "--replay", "x.mid", "--respond"]) == 2
    err = capsys.readouterr().err
    assert "robo_player[model]" in err and "Traceback" not in err


@pytest.mark.skipif(not HAS_TORCH or not MODEL.exists(), reason="needs torch and the model")
def test_live_respond_from_the_command_line(tmp_path: Path, capsys: Any) -> None:
    mid = tmp_path / "call.mid"
    mf = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mf.tracks.append(tr)
    for p in [60, 62, 64, 65, 67, 65, 64, 62]:
        tr.append(mido.Message("note_on", note=p, velocity=90, time=0))
        tr.append(mido.Message("note_off", note=p, time=200))
    tr.append(mido.Message("control_change", control=1, value=0, time=480 * 6))  # 3 s rest
    mf.save(str(mid))
    rep = tmp_path / "r.json"
    assert main(["live", "--spec", "piano-61-diy", "--replay", str(mid), "--virtual-time",
                 "--respond", str(MODEL), "--report", str(rep)]) == 0  # fmt: skip
    import json

    doc = json.loads(rep.read_text())
    r = doc["live"]["respond"]
    assert r["turns"] == 1 and r["answers"] == 1 and r["answer_notes"] > 0
    assert doc["live"]["notes_in"] == doc["notes_in"] == 8  # the player's notes only


def test_a_soft_first_note_is_played_louder_so_the_answer_starts_in_time(
    spec: PianoSpec, cal: Calibration
) -> None:
    soft = [Note(72, 0, 150_000, 20), Note(74, 250_000, 150_000, 20)]  # ~300 ms to sound
    ev = phrase(0.2, [60, 62, 64, 65])  # last key up 1.15 s, end of turn 1.45 s
    perf, session, r, _ = respond(spec, cal, ev, soft, stop_us=None)  # (no stop floor)
    assert r.stats.louder >= 1
    (first, *_) = answer_onsets(perf, 1_450_000)
    assert first <= 1_450_000 + 100_000
    assert r.stats.first_note_us[0] <= 100_000


def test_legato_playing_starts_the_model_once_not_at_every_note(
    spec: PianoSpec, cal: Calibration
) -> None:
    ev = phrase(0.2, [60, 62, 64, 65, 67, 65, 64, 62], art=1.0)  # each off with the next on
    _, _, r, calls = respond(spec, cal, ev)
    assert len(calls) == 1 and len(calls[0][0]) == 8  # the whole call, once
    assert r.stats.turns == 1


def test_a_silence_shorter_than_the_speculation_delay_still_gets_an_answer(
    spec: PianoSpec, cal: Calibration
) -> None:
    perf, _, r, calls = respond(spec, cal, phrase(0.2, [60, 62, 64]), silence_us=60_000)
    assert r.stats.turns == 1 and r.stats.answers == 1 and len(calls) == 1
    assert r.stats.end_of_turn_us == [60_000]
    assert answer_onsets(perf, 900_000)
