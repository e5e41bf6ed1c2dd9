"""Hearing: the detector on audio with known onsets, the clock alignment with a known
offset and drift, and bad input (issue 11). The calibration through audio is in
tests/test_hearing_calibration.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from robo_player.errors import HearingError
from robo_player.hearing.align import PATTERN_US, align_take, fit_clock
from robo_player.hearing.detector import RELATED, TIGHT_MIN_FRACTION, Detector, Onset, check_audio
from robo_player.hearing.listen import check_take
from robo_player.hearing.recording import Recording, input_devices, read_wav, write_wav
from robo_player.performance import HeardNote
from robo_player.sim.audio import render_audio, render_audio_rich
from robo_player.sim.room import Room, RoomTake

OFFSET_S = 0.2


def _take(notes: list[HeardNote], **room: object) -> np.ndarray:
    kw = {"offset_s": OFFSET_S, "drift_ppm": 0.0, **room}
    return RoomTake(Room(**kw), notes, [], 0).samples()  # type: ignore[arg-type]


def _isolated(n: int, seed: int) -> list[HeardNote]:
    rng = np.random.default_rng(seed)
    t = 0.1 + np.cumsum(rng.uniform(0.3, 0.45, n))
    return [
        HeardNote(int(ti * 1e6), int(rng.integers(36, 100)), float(rng.uniform(30, 120)), int(ti * 1e6) + 60_000)
        for ti in t
    ]


def test_detector_finds_known_onsets_and_loudness() -> None:
    notes = _isolated(40, seed=3)
    det = Detector(_take(notes), 48000)
    err, verr = [], []
    for h in notes:
        t = h.t_us / 1e6 + OFFSET_S
        o = det.find(h.pitch, t - 0.03, t + 0.03)
        assert o is not None, f"missed {h}"
        err.append(o.t_s - t)
        verr.append(o.velocity - h.velocity)
    e = np.abs(np.array(err)) * 1e3
    # the onset itself, not a delay after it (the fit's own delay on the reference tone is
    # taken off); measured: median 0.11 ms, p90 0.44 ms (docs/hearing.md)
    assert np.median(e) < 0.3 and np.percentile(e, 90) < 1.0, np.round(np.sort(e)[-8:], 2)
    assert np.mean(np.abs(verr)) < 2.5
    # a louder note reads louder
    v = np.array([h.velocity for h in notes])
    assert np.corrcoef(v, v + np.array(verr))[0, 1] > 0.95


def _unrelated_strikes(n: int, seed: int) -> list[HeardNote]:
    """Calibration-like strikes: keys 48..96, 0.3 s apart, no key related to the last
    three (the calibrator's schedule keeps related keys apart), loud and soft."""
    rng = np.random.default_rng(seed)
    out: list[HeardNote] = []
    t = 0.2
    while len(out) < n:
        q = int(rng.integers(48, 97))
        if any(q - h.pitch in (0, 12, -12, 24, -24, *RELATED) for h in out[-3:]):
            continue
        out.append(HeardNote(int(t * 1e6), q, float(rng.uniform(40, 160)), int(t * 1e6) + 60_000))
        t += float(rng.uniform(0.3, 0.32))
    return out


@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_calibration_strikes_to_a_millisecond(sample_rate: int) -> None:
    notes = _unrelated_strikes(60, seed=7)
    det = Detector(_take(notes, sample_rate=sample_rate), sample_rate)
    err = []
    for h in notes:
        t = h.t_us / 1e6 + OFFSET_S
        o = det.find(h.pitch, t - 0.03, t + 0.03)
        assert o is not None, f"missed {h}"
        err.append(abs(o.t_s - t) * 1e3)
    # measured (120 strikes): p90 0.35-0.53 ms, p99 0.8 ms at both rates
    assert np.percentile(err, 90) < 0.7 and max(err) < 1.5, np.round(np.sort(err)[-5:], 2)


def _bass_strikes(seed: int) -> list[HeardNote]:
    """Calibration-like strikes of F1..B1 (keys 29..35), two each, 0.25 s apart, an
    unrelated key struck between them, moderate to loud (the notes a piece plays)."""
    rng = np.random.default_rng(seed)
    out: list[HeardNote] = []
    t = 0.3
    for p in range(29, 36):
        for _ in range(2):
            out.append(HeardNote(int(t * 1e6), p, float(rng.uniform(50, 110)), int(t * 1e6) + 80_000))
            t += 0.25
            q = p + int(rng.choice([30, 32, 34, 37, 39]))
            out.append(HeardNote(int(t * 1e6), q, float(rng.uniform(40, 110)), int(t * 1e6) + 80_000))
            t += 0.25
    return out


@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_a_low_key_under_the_rooms_reverb_is_timed_from_its_direct_sound(sample_rate: int) -> None:
    # each take draws its own reverb tail (reflections from 4 ms): the energy fit of a
    # low key (its Gaussian bands smooth over 10-25 ms) read F1..B1 1-3 ms late or early
    # for a whole take (the 88-key calibration's p99: docs/hearing.md); timed from the
    # direct sound's rise: measured |error| p90 0.26 / 0.20 ms, max 0.54 / 0.60 ms, a
    # key's mean over a take within 0.35 / 0.29 ms at 48 / 44.1 kHz (the energy fit alone:
    # p90 2.52 / 1.75, max 2.93 / 3.16, 2.88 / 3.16 ms)
    errs, biases = [], []
    for seed in (1, 2, 3, 4):
        notes = _bass_strikes(seed)
        det = Detector(_take(notes, seed=seed, sample_rate=sample_rate), sample_rate)
        by_key: dict[int, list[float]] = {}
        for i in range(0, len(notes), 2):
            h = notes[i]
            t = h.t_us / 1e6 + OFFSET_S
            o = det.find(h.pitch, t - 0.012, t + 0.012, others=[notes[i - 1].pitch] if i else [])
            assert o is not None, f"missed {h}"
            by_key.setdefault(h.pitch, []).append((o.t_s - t) * 1e3)
        for e in by_key.values():
            errs += [abs(x) for x in e]
            biases.append(abs(float(np.mean(e))))
    assert np.percentile(errs, 90) < 0.5 and max(errs) < 1.0, np.round(np.sort(errs)[-5:], 2)
    assert max(biases) < 0.6, np.round(np.sort(biases)[-5:], 2)


def test_a_louder_related_key_struck_with_it_does_not_hide_a_key() -> None:
    # C2 loud and C4 soft at once: C2's 4th and 8th partials are C4's 1st and 2nd. Asked
    # as a performance asks (the plan-known pass; the plan asks for the C4 again at the
    # second C2, which nobody strikes): measured C4 +1.3..+8.0 ms on 12 of 12 room draws
    # (seeds 0-5, per take and fixed), the unstruck C4 heard on 1 of the 12 (fixed seed
    # 5). Before session 26 this asked Detector.find(60, others=[36]) at the lone C2,
    # which no caller asks (calibration keeps related keys apart): a C4 there on 7 of the
    # 12, and the find at the chord +11.1 ms on 1 (docs/hearing.md, "Session 26, fixedroom")
    notes = [HeardNote(300_000, 36, 120.0, 700_000), HeardNote(300_000, 60, 50.0, 700_000),
             HeardNote(1_200_000, 36, 120.0, 1_600_000)]
    det = Detector(_take(notes), 48000)
    heard = det.detect_intended([(0.5, 36), (0.5, 60), (1.4, 36), (1.4, 60)], 0.08, 0.08)
    assert [o.pitch for o in heard if o.pitch == 60 and abs(o.t_s - 0.5) < 0.010] == [60], heard
    assert not any(o.pitch == 60 and o.t_s > 1.0 for o in heard), heard  # C2 alone: no C4


def test_detector_says_none_where_the_key_did_not_sound() -> None:
    notes = [HeardNote(300_000, 60, 90.0, 400_000), HeardNote(900_000, 72, 90.0, 1_000_000)]
    det = Detector(_take(notes), 48000)
    assert det.find(60, 0.45, 0.55) is not None
    assert det.find(67, 0.45, 0.65) is None  # nothing of 67's there
    assert det.find(60, 1.05, 1.25) is None  # 72 sounds there, not 60


def test_the_energy_fit_past_the_takes_end_says_nothing_heard() -> None:
    """y_onset asked past the take's end (a second fit from a first's far onset, seen
    once in the live ear's windows) gives no onset, not a ZeroDivisionError."""
    det = Detector(_take([HeardNote(300_000, 60, 90.0, 400_000)]), 48000)
    end_s = len(det.y) / 48000
    t, p = det.y_onset(60, end_s + 1.0)
    assert t == end_s + 1.0 and np.isnan(p)
    # where the note is (its strike at 0.3 s of the performance, OFFSET_S later in the
    # take), it fits; asked at 0.3 s of the take (before session 26), where nothing
    # sounds, it held only where the room's tail and noise happened to rise there (1 of
    # 6 per-take draws, 0 of 6 fixed: docs/hearing.md, "Session 26, fixedroom")
    assert np.isfinite(det.y_onset(60, 0.3 + OFFSET_S)[1])


def test_detector_tells_neighbours_and_octaves_apart() -> None:
    # 64 then 65 a semitone up 80 ms later, 60 an octave below 72. Asked as real use asks:
    # the key-unknown pass over the take, the plan-known pass, and calibration's find in
    # its +-30 ms window; 64 still rings: a later read (measured +2.4..+7.7 ms over 12
    # room draws, seeds 0-5 per take and fixed). Before session 26 this asked find(65)
    # over 0.45-0.70 s, a window holding 64's strike: that read 64's onset (-80 ms) on
    # 10 of the 12 draws, named as ``others`` or not (docs/hearing.md, "Session 26, fixedroom")
    notes = [
        HeardNote(300_000, 64, 100.0, 500_000),
        HeardNote(380_000, 65, 100.0, 580_000),
        HeardNote(1_200_000, 72, 100.0, 1_400_000),
    ]
    det = Detector(_take(notes), 48000)
    o65 = det.find(65, 0.55, 0.61, others=[64])
    assert o65 is not None and abs(o65.t_s - 0.58) < 0.010
    for heard in (det.detect(), det.detect_intended([(0.5, 64), (0.58, 65), (1.4, 72)], 0.08, 0.08)):
        t65 = [o.t_s for o in heard if o.pitch == 65]
        assert len(t65) == 1 and abs(t65[0] - 0.58) < 0.010, heard
        assert [round(o.t_s, 2) for o in heard if o.pitch == 64] == [0.5], heard
        assert not any(o.pitch == 60 for o in heard)  # 72's partials are 60's even ones
    assert det.find(60, 1.35, 1.45) is None


def _unknown_key_run() -> tuple[int, int, int]:
    notes = _isolated(25, seed=5)
    found = Detector(_take(notes), 48000).detect()
    hits = 0
    for h in notes:
        t = h.t_us / 1e6 + OFFSET_S
        hits += any(o.pitch == h.pitch and abs(o.t_s - t) < 0.02 for o in found)
    return hits, len(found), len(notes)


def test_key_unknown_detection_finds_isolated_notes() -> None:
    hits, _, n = _unknown_key_run()
    assert hits >= 0.9 * n


def test_key_unknown_detection_is_precise() -> None:
    # measured: 26 onsets for 25 notes (before the template fit's owner test: 163)
    _, found, n = _unknown_key_run()
    assert found <= 1.1 * n


@pytest.mark.parametrize("drift_ppm", [-100.0, 0.0, 100.0])
def test_alignment_recovers_offset_and_drift(drift_ppm: float) -> None:
    # the sync pattern at 0 and 20 s on key 72, each onset 18 ms after its command
    lat_us = 18_000
    starts = [0, 20_000_000]
    notes = [HeardNote(s + d + lat_us, 72, 110.0, s + d + 100_000) for s in starts for d in PATTERN_US]
    notes.append(HeardNote(9_000_000, 50, 80.0, 9_100_000))  # something in between
    y = RoomTake(Room(offset_s=0.37, drift_ppm=drift_ppm), notes, [], 0).samples()
    clock = align_take(Detector(y, 48000), 72, starts, "test")
    assert clock.drift_ppm == pytest.approx(drift_ppm, abs=1.0)  # measured: within 0.13 ppm
    # a command's onset maps back to command + latency + one constant (the sync key's
    # latency is not told apart from the offset): the same over the whole take
    shift = [clock.to_mcu_us(((t + lat_us) * 1e-6 + 0.37) * (1 + drift_ppm * 1e-6)) - t for t in (0, 10_000_000, 20_000_000)]
    assert max(shift) - min(shift) < 50.0  # measured: 1-3 us over 20 s
    assert max(abs(x) for x in shift) < 200.0  # the sync onsets read to ~40 us


def test_fit_clock_needs_two_points() -> None:
    with pytest.raises(HearingError, match="need >= 2"):
        fit_clock([1.0], [1.0])


def test_alignment_error_says_what_it_heard() -> None:
    y = _take([HeardNote(300_000, 50, 90.0, 400_000)])
    with pytest.raises(HearingError, match=r"sync pattern .* was not heard.*heard \d of its strikes"):
        align_take(Detector(y, 48000), 72, [0], "take.wav")


# ---------------------------------------------------------------- bad input
def test_silent_recording() -> None:
    y = np.random.default_rng(0).normal(0, 1e-5, 48000).astype(np.float32)
    with pytest.raises(HearingError, match=r"take.wav: silent recording: its loudest sample is -\d+ dBFS"):
        check_take(y, "take.wav")


def test_clipped_recording() -> None:
    notes = [HeardNote(200_000 + 150_000 * i, 40 + i, 127.0, 500_000 + 150_000 * i) for i in range(12)]
    y = RoomTake(Room(gain_db=0.0, offset_s=0.1, drift_ppm=0.0), notes, [], 0).samples()
    with pytest.raises(HearingError, match=r"clipped recording: [\d.]+ % of its samples are at full scale"):
        check_take(y, "take.wav")


def test_unsupported_sample_rate() -> None:
    with pytest.raises(HearingError, match="sample rate 22050 Hz is not taken .allowed: 44100, 48000"):
        check_audio(np.zeros(22050), 22050, "take.wav")
    with pytest.raises(ValueError, match="sample_rate 32000"):
        Room(sample_rate=32000)


def test_missing_sound_card_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import -> ImportError
    with pytest.raises(HearingError, match="sounddevice is not installed"):
        input_devices()


def test_wav_round_trip(tmp_path) -> None:  # noqa: ANN001
    y = (0.5 * np.sin(np.arange(4800) / 10.0)).astype(np.float32)
    path = write_wav(tmp_path / "a.wav", Recording(y, 44100))
    back = read_wav(path)
    assert back.sample_rate == 44100 and np.max(np.abs(back.data - y)) < 1e-4
    with pytest.raises(HearingError, match="no such recording"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(HearingError, match="not a PCM WAV"):
        read_wav(tmp_path / "bad.wav")


def test_detect_intended_hears_the_plan_and_not_what_was_not_played() -> None:
    notes = _unrelated_strikes(12, seed=11)
    det = Detector(_take(notes), 48000)
    intended = [(h.t_us / 1e6 + OFFSET_S + 0.015, h.pitch) for h in notes]  # 15 ms off plan
    intended.append((notes[5].t_us / 1e6 + OFFSET_S + 0.1, 100))  # planned, never played
    heard = det.detect_intended(intended, 0.08, 0.08)
    for h in notes:
        t = h.t_us / 1e6 + OFFSET_S
        assert any(o.pitch == h.pitch and abs(o.t_s - t) < 0.002 for o in heard), h
    assert not any(o.pitch == 100 for o in heard)


def test_plan_known_onset_not_moved_by_a_neighbour_struck_just_after() -> None:
    # a key, then a louder key sharing its partials (a semitone, a tone, an octave and a
    # semitone or a tone) 15-40 ms later: the second's rise moved the first one's
    # salience top, and its onset, to the second strike (docs/hearing.md); measured
    # within 10 ms: 11 of 12 (before: 7)
    rng = np.random.default_rng(4)
    notes: list[HeardNote] = []
    t = 0.2
    for _ in range(12):
        p, d = int(rng.integers(50, 80)), int(rng.choice([1, 13, 2, 14]))
        gap = float(rng.uniform(0.015, 0.04))
        notes.append(HeardNote(int(t * 1e6), p, float(rng.uniform(40, 70)), int((t + 0.3) * 1e6)))
        notes.append(HeardNote(int((t + gap) * 1e6), p + d, float(rng.uniform(90, 115)), int((t + 0.3) * 1e6)))
        t += 0.6
    det = Detector(_take(notes), 48000)
    heard = det.detect_intended([(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes], 0.08, 0.08, [])
    close = 0
    for h in notes[::2]:
        t0 = h.t_us / 1e6 + OFFSET_S
        close += any(o.pitch == h.pitch and abs(o.t_s - t0) < 0.010 for o in heard)
    assert close >= 10


def test_own_partials_leave_out_those_another_key_reaches() -> None:
    det = Detector(np.random.default_rng(0).normal(0.0, 1e-3, 48000), 48000)
    assert det.own_partials(60, [72]) == (0, 2, 4, 6)  # 72's partials are 60's even ones
    assert det.own_partials(60, []) is None  # all its own
    assert det.own_partials(60, [61]) == ()  # a semitone reaches every band: none left
    kept = det.own_partials(60, [67])  # a fifth: 67's 2nd is 60's 3rd, its 4th our 6th
    assert kept is not None and 2 not in kept and 5 not in kept and 0 in kept


@pytest.mark.parametrize("pitch", [33, 45, 60, 84])
def test_fine_pitch_tells_a_note_from_its_semitones(pitch: int) -> None:
    # a semitone at A1 is a third of a bin of the long window: the peak's position,
    # interpolated, still tells it (measured: within 0.12 semitone)
    det = Detector(_take([HeardNote(300_000, pitch, 70.0, 700_000)]), 48000)
    t = 0.3 + OFFSET_S
    est = det.fine_pitch(pitch, t)
    assert est is not None and abs(est - pitch) < 0.25
    for q in (pitch - 1, pitch + 1):
        other = det.fine_pitch(q, t)
        assert other is None or abs(other - q) > 0.75  # what a neighbour would hear is ours


@pytest.mark.parametrize("df_hz", [-1.5, 0.5, 2.0])
def test_plan_known_onset_of_a_partial_struck_in_anti_phase_with_a_ringing_one(df_hz: float) -> None:
    # a ringing partial (another key's) in the bins of our fundamental, and our key struck
    # in anti-phase with it: the salience first falls, its top comes 30-400 ms late; the
    # power the ringing sound does not explain (Detector.new_power) rises at the strike
    sr, pitch, t0 = 48000, 57, 0.5
    f = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    t = np.arange(sr) / sr
    y = 0.02 * np.exp(-t / 2.0) * np.sin(2 * np.pi * (f + df_hz) * t)
    on = t >= t0
    a = 1.3 * 0.02 * np.exp(-t0 / 2.0)
    anti = 2 * np.pi * (f + df_hz) * t0 + np.pi
    for k in (1, 2, 3):
        phase = anti if k == 1 else 0.0
        y[on] += a / k * np.sin(2 * np.pi * k * f * (t[on] - t0) + phase) * np.minimum(1.0, (t[on] - t0) / 0.002)
    y += np.random.default_rng(0).normal(0.0, 1e-5, len(y))
    det = Detector(y, sr)
    i = int(round(t0 * sr / det.hop))
    assert abs(det._midpoint(pitch, i) - t0) > 0.02  # the salience's midpoint: late
    assert abs(det._midpoint(pitch, i, predicted=True) - t0) < 0.005  # measured +1.9..+2.2 ms


def test_a_stray_a_semitone_off_its_sound_is_not_kept() -> None:
    # the key-unknown pass gave a strike to the semitone above the key that sounded (a
    # low neighbour): with the plan known and nothing planned there, a stray is kept only
    # where its fine pitch is its key's (within STRAY_PITCH_TOL)
    det = Detector(_take([HeardNote(300_000, 40, 80.0, 700_000)]), 48000)
    t = 0.3 + OFFSET_S
    kept = det.detect_intended([], 0.08, 0.08, [Onset(t, 40, 80.0, 20.0), Onset(t, 41, 60.0, 20.0)])
    assert [o.pitch for o in kept] == [40]


@pytest.mark.parametrize("held, struck", [(60, 62), (64, 62)])
def test_plan_known_onset_of_a_legato_step_not_late(held: int, struck: int) -> None:
    # a key a tone away released as ours is struck (legato): its damper's fade in our
    # bins is power the new power's prediction (one steady, decaying sinusoid per bin)
    # does not explain, so the new power's top, and the coarse onset, came 10-35 ms late
    # (1 and 3 of 6 within 8 ms before); the earlier of its and the salience's midpoints is
    # taken (measured 5 and 6 of 6)
    close = 0
    for k in range(6):
        t1, t2 = 0.3, 0.55 + 0.01 * k
        notes = [HeardNote(int(t1 * 1e6), held, 90.0, int(t2 * 1e6) - 2000 * k),
                 HeardNote(int(t2 * 1e6), struck, 50.0, int((t2 + 0.3) * 1e6))]
        det = Detector(_take(notes), 48000)
        t = t2 + OFFSET_S
        heard = det.detect_intended([(t1 + OFFSET_S, held), (t, struck)], 0.08, 0.08, [])
        close += any(o.pitch == struck and abs(o.t_s - t) < 0.008 for o in heard)
    assert close >= 5


def test_a_stray_that_is_a_planned_notes_partial_is_not_kept_and_a_wrong_note_is() -> None:
    # a loud planned A2 (45): its 5th partial is C#5 (73)'s fundamental, 4 Hz apart, and
    # the key-unknown pass gave C#5 a strike. With the plan known the planned note takes
    # nearly all of that new sound (the blind pass's own BLIND_RELATIVE rule, with the
    # plan's keys as rivals: measured 3 % on the takes); kept before. A wrong note struck
    # alone (D4, never planned) stays a stray.
    notes = [HeardNote(300_000, 45, 115.0, 900_000), HeardNote(1_300_000, 62, 70.0, 1_700_000)]
    det = Detector(_take(notes), 48000)
    t1, t2 = 0.3 + OFFSET_S, 1.3 + OFFSET_S
    blind = [Onset(t1, 45, 115.0, 20.0), Onset(t1, 73, 40.0, 20.0, 0.75), Onset(t2, 62, 70.0, 20.0)]
    kept = det.detect_intended([(t1, 45)], 0.08, 0.08, blind)
    assert sorted(o.pitch for o in kept) == [45, 62]


def test_plan_known_onset_of_a_semitone_step_under_a_chord_not_late() -> None:
    # bwv66.6's A3 struck with E4 and C#5 as the chord G#3 B3 E4 B4 is released: G#3's
    # partials, half a bin from A3's, fade in A3's bins as A3's rise, and its loud
    # fundamental dips then rises late; both midpoints of the summed partials read
    # +10..+25 ms (5 of 8 within 8 ms here). The median of the partials' own midpoints
    # (Detector.partial_midpoints) is not moved by one ringing partial (measured 8 of 8).
    close = 0
    for k in range(8):
        t1, t2 = 0.3, 1.2 + 0.0013 * k
        notes = [HeardNote(int(t1 * 1e6), p, 80.0, int(t2 * 1e6)) for p in (56, 59, 64, 71)]
        notes += [HeardNote(int(t2 * 1e6), p, 80.0, int((t2 + 0.5) * 1e6)) for p in (57, 64, 73)]
        det = Detector(_take(notes), 48000)
        t = t2 + OFFSET_S
        plan = [(t1 + OFFSET_S, p) for p in (56, 59, 64, 71)] + [(t, p) for p in (57, 64, 73)]
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        close += any(o.pitch == 57 and abs(o.t_s - t) < 0.008 for o in heard)
    assert close >= 7


def test_a_bass_stray_a_semitone_from_a_heard_planned_note_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # below MIN_OWNER_PITCH a semitone is under a bin of the long window, and under a
    # ringing bass note the fine pitch wanders (random 3: a struck C#2 read as D2, 37.78;
    # here 37.0..38.6 over these takes): it is made to agree with the stray, as there, so
    # only the semitone rule can drop it. A D2 stray at the time of a heard planned C#2,
    # an A1 ringing: that note's sound (kept before in 5 of 6; 5 such on random 3); a
    # lone D2 where nothing is planned a semitone away stays a stray.
    kept_d2 = 0
    for k in range(6):
        t2 = 0.78 + 0.0017 * k
        notes = [HeardNote(300_000, 33, 99.0, 1_300_000), HeardNote(int(t2 * 1e6), 37, 105.0, 1_300_000),
                 HeardNote(1_700_000, 38, 90.0, 2_200_000)]
        det = Detector(_take(notes), 48000)
        monkeypatch.setattr(det, "fine_pitch", lambda pitch, t_s: float(pitch))
        t1, t, t3 = 0.3 + OFFSET_S, t2 + OFFSET_S, 1.7 + OFFSET_S
        blind = [Onset(t1, 33, 99.0, 20.0), Onset(t, 37, 105.0, 20.0), Onset(t + 0.002, 38, 100.0, 15.0, 0.75),
                 Onset(t3, 38, 90.0, 20.0)]
        kept = det.detect_intended([(t1, 33), (t, 37)], 0.08, 0.08, blind)
        kept_d2 += any(o.pitch == 38 and abs(o.t_s - t) < 0.01 for o in kept)
        assert any(o.pitch == 38 and abs(o.t_s - t3) < 0.002 for o in kept)
    assert kept_d2 == 0


@pytest.mark.parametrize("rich", [False, True])
def test_a_stray_at_a_bass_notes_octave_or_twelfth_is_not_kept_and_a_wrong_note_there_is(rich: bool) -> None:
    # a piano's bass fundamental radiates weakly (the rich voice: RADIATION_HZ): the
    # planned bass key's template, fundamental-heavy, left its 2nd and 3rd partials'
    # sound to a key-unknown onset an octave or twelfth up, kept as a stray (most of the
    # rich voice's false onsets on the tuning rows, session 19). The stray's owner test
    # fits each rival's fundamental apart (STRAY_FREE_FUNDAMENTAL; off: 4 of these 6
    # kept on the rich voice). A wrong note struck there with the bass key stays a stray.
    render = render_audio_rich if rich else render_audio
    t = 0.3 + OFFSET_S

    def kept(notes: list[HeardNote], q: int, d: int) -> bool:
        y = RoomTake(Room(offset_s=OFFSET_S, drift_ppm=0.0), notes, [], 0, render=render).samples()
        blind = [Onset(t, q, notes[0].velocity, 20.0), Onset(t + 0.001, q + d, 60.0, 20.0, 0.88)]
        heard = Detector(y, 48000).detect_intended([(t, q)], 0.08, 0.08, blind)
        return any(o.pitch == q + d for o in heard)

    fakes = [(q, d) for q in (28, 34, 43) for d in (12, 19) if kept([HeardNote(300_000, q, 105.0, 900_000)], q, d)]
    assert not fakes
    assert kept([HeardNote(300_000, 34, 105.0, 900_000), HeardNote(300_000, 46, 70.0, 900_000)], 34, 12)


def test_a_key_struck_instead_of_the_planned_one_is_not_heard_as_it() -> None:
    # the planned key not struck, a related key struck alone instead (a semitone either
    # side, a fifth, an octave, a twelfth): its sound passed the plan-known owner test
    # with the related key taking 95-100 % of it (9 of 35 heard as the planned key); our
    # share must be >= UNPLANNED_RELATIVE of an unplanned rival's (measured 1 of 35: D3
    # planned, D#3 struck, below a bin apart). The planned key itself, soft or loud, is heard.
    wrong, missed = 0, []
    for p in (50, 53, 57, 62, 69):
        for d in (0, -1, 1, -7, 7, -12, 12, 19):
            for v in ((30.0, 80.0, 115.0) if d == 0 else (80.0,)):
                det = Detector(_take([HeardNote(300_000, p + d, v, 900_000)]), 48000)
                t = 0.3 + OFFSET_S
                heard = any(o.pitch == p for o in det.detect_intended([(t, p)], 0.08, 0.08, []))
                if d == 0 and not heard:
                    missed.append((p, v))
                wrong += d != 0 and heard
    assert not missed, missed
    assert wrong <= 1, wrong


def _soft_bass_strikes(seed: int) -> list[HeardNote]:
    """Soft strikes of E1..D3 (keys 28..50, a calibration's near the threshold),
    0.25 s apart, a louder unrelated key struck between them."""
    rng = np.random.default_rng(seed)
    out: list[HeardNote] = []
    t = 0.3
    for p in range(28, 51):
        out.append(HeardNote(int(t * 1e6), p, float(rng.uniform(15, 25)), int(t * 1e6) + 100_000))
        t += 0.25
        q = p + int(rng.choice([30, 32, 34, 37, 39]))
        out.append(HeardNote(int(t * 1e6), q, float(rng.uniform(20, 110)), int(t * 1e6) + 100_000))
        t += 0.25
    return out


def test_a_soft_bass_strike_timed_without_its_direct_sound_is_marked_doubtful() -> None:
    # a soft low note in the room's noise: where its direct sound gives no onset near the
    # energy fit's, the energy fit alone is 1-15 ms off (88 keys seed 4: key 40's soft
    # strikes +2.2 and -5.1 ms, a probe -6.9 ms, bending its curves); the calibrator
    # weighs such an onset less (``Onset.sure``). Measured over 69 strikes: 34 sure,
    # 2 of them > 1 ms off; 35 doubtful, 28 of them > 1 ms off
    sure, doubt = [], []
    for seed in (1, 2, 3):
        notes = _soft_bass_strikes(seed)
        det = Detector(_take(notes, seed=seed), 48000)
        for i in range(0, len(notes), 2):
            h = notes[i]
            t = h.t_us / 1e6 + OFFSET_S
            o = det.find(h.pitch, t - 0.012, t + 0.012, others=[notes[i - 1].pitch] if i else [])
            if o is not None:
                (sure if o.sure else doubt).append(abs(o.t_s - t) * 1e3)
    sure_bad, doubt_bad = np.mean(np.array(sure) > 1.0), np.mean(np.array(doubt) > 1.0)
    assert len(sure) >= 20 and len(doubt) >= 10, (len(sure), len(doubt))
    assert sure_bad < 0.15 and doubt_bad > 0.5, (sure_bad, doubt_bad)


def test_the_informed_stage_hears_a_planned_note_the_search_rejects() -> None:
    # random 2's F3 (53) struck with E2 (40) and D#3 (51), both louder: the search finds no
    # candidate the owner test gives to F3 (its partials are E2's 13th semitone and a tone
    # from D#3's). The score-informed decomposition (the plan's keys and F3's unplanned
    # related keys as templates) gives F3 the rise (measured: 2 of 8 within 5 ms
    # without the stage, 7 of 8 with it)
    with_stage = without = 0
    for k in range(8):
        t = 0.4 + 0.0013 * k
        chord = [(40, 107.0), (51, 107.0), (53, 60.0 + 5 * k)]
        det = Detector(_take([HeardNote(int(t * 1e6), p, v, int(t * 1e6) + 800_000) for p, v in chord]), 48000)
        plan = [(t + OFFSET_S, p) for p, _ in chord]
        for inf in (True, False):
            heard = det.detect_intended(plan, 0.08, 0.08, [], informed=inf)
            close = any(o.pitch == 53 and abs(o.t_s - t - OFFSET_S) < 0.005 for o in heard)
            with_stage += inf and close
            without += not inf and close
    assert with_stage >= 6 and without <= 3, (with_stage, without)


def test_the_informed_stage_does_not_hear_planned_notes_that_were_not_played() -> None:
    # three loud keys ringing, a soft unrelated key struck 0.25-0.6 s later; planned with
    # it, never played: a semitone, octave, fifth or twelfth of each ringing key and a
    # semitone or octave of the soft one. Their partials lie in the ringing keys' bins (or
    # the soft key's): the informed stage hears none (measured 0 of 29 over 8 takes), and
    # with it the plan-known search hears no more of them than without (the search alone
    # heard 2 of 29, an octave below a ringing key and a semitone of the soft key; 1 with
    # the stage's veto). The soft key under the ringing ones: over 12 room draws (seeds
    # 0-5, per take and fixed) heard on 60 of 60, within 10 ms on 60 (max 9.0 ms), within 5
    # ms on 46 (3-5 of 5 a draw; "5 of 5 within 5 ms" held by this draw, docs/hearing.md,
    # "Session 26, fixedroom"); the unplayed keys held on every draw
    unplayed_heard, soft_heard, soft_close = 0, 0, 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ring = sorted(int(q) for q in rng.choice(np.arange(40, 80), 3, replace=False))
        t1, t2 = 0.3, 0.3 + float(rng.uniform(0.25, 0.6))
        soft = int(rng.choice([q for q in range(45, 85)
                               if all(abs(q - r) > 2 and abs(q - r) not in (7, 12, 19, 24) for r in ring)]))
        notes = [HeardNote(int(t1 * 1e6), q, float(rng.uniform(100, 125)), 2_000_000) for q in ring]
        notes.append(HeardNote(int(t2 * 1e6), soft, float(rng.uniform(25, 45)), int(t2 * 1e6) + 600_000))
        unplayed = {r + int(rng.choice([-1, 1, 12, -12, 7, 19])) for r in ring} | {soft + int(rng.choice([-1, 1, 12]))}
        unplayed -= {*ring, soft}
        det = Detector(_take(notes), 48000)
        t = t2 + OFFSET_S
        plan = [(t1 + OFFSET_S, q) for q in ring] + [(t, q) for q in (soft, *sorted(unplayed))]
        keys = [q for _, q in plan]
        for q in unplayed:
            assert det.informed(q, t - 0.08, t + 0.08, keys, [k for k in keys if k != q]) is None, (seed, q)
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        alone = det.detect_intended(plan, 0.08, 0.08, [], informed=False)
        unplayed_heard += sum(o.pitch in unplayed for o in heard) - sum(o.pitch in unplayed for o in alone)
        soft_heard += any(o.pitch == soft and abs(o.t_s - t) < 0.010 for o in heard)
        soft_close += any(o.pitch == soft and abs(o.t_s - t) < 0.005 for o in heard)
    assert unplayed_heard <= 0
    assert soft_heard == 5 and soft_close >= 3, (soft_heard, soft_close)


def test_a_planned_octave_below_a_struck_key_never_played_is_not_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    # a planned key an octave below a struck one, never played: every partial of the struck
    # key is one of its partials, and the search's owner test (the struck key a planned
    # rival) left it >= MIN_NEW noise units (heard in 7 of 8 takes here without
    # PLANNED_MIN_NEW). In the score-informed decomposition its activation does not rise (<
    # INFORMED_VETO_RISE): the struck key's template explains that sound (measured 0 of 8
    # with the stage). Since session 13 the search's own owner test gives it none either
    # (under PLANNED_MIN_NEW and under the struck key's new sound). The struck keys are
    # heard either way
    from robo_player.hearing import detector as det_mod

    without, with_stage, search = 0, 0, 0
    for chord, fake in (((55, 70), 43), ((49, 52), 40), ((50, 62), 38), ((53, 69), 41)):
        for v in (70.0, 100.0):
            det = Detector(_take([HeardNote(400_000, q, v, 900_000) for q in chord]), 48000)
            t = 0.4 + OFFSET_S
            plan = [(t, q) for q in (*chord, fake)]
            heard = det.detect_intended(plan, 0.08, 0.08, [])
            with_stage += any(o.pitch == fake for o in heard)
            search += any(o.pitch == fake for o in det.detect_intended(plan, 0.08, 0.08, [], informed=False))
            with monkeypatch.context() as m:
                m.setattr(det_mod, "PLANNED_MIN_NEW", 0.0)
                alone = det.detect_intended(plan, 0.08, 0.08, [], informed=False)
                without += any(o.pitch == fake for o in alone)
                with_stage += any(o.pitch == fake for o in det.detect_intended(plan, 0.08, 0.08, []))
            assert all(any(o.pitch == q and abs(o.t_s - t) < 0.005 for o in heard) for q in chord), (chord, v)
    assert with_stage == 0 and search == 0 and without >= 5, (with_stage, search, without)


def test_a_planned_neighbour_of_a_struck_key_never_played_is_not_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    # two keys struck together (v 40-115, keys 40-89); planned with them and never played:
    # a semitone, tone, fifth, octave or twelfth of one of them (verify's honesty: a plan
    # that asks for a key nobody struck). The search's owner test weighs the struck key as
    # a planned rival, and what its template does not explain was left to ours: >= MIN_NEW
    # noise units, heard. Now a new sound under PLANNED_MIN_NEW and under a planned related
    # key's (PLANNED_CROWD x) is not ours: seeds 0-39, 18 of 39 fakes heard before, 5
    # after, the struck keys 76 of 78 within 5 ms either way (docs/hearing.md)
    from robo_player.hearing import detector as det_mod

    before, after, struck = 0, 0, 0
    for seed in range(16, 24):
        rng = np.random.default_rng(seed)
        keys = sorted(int(q) for q in rng.choice(np.arange(40, 90), 2, replace=False))
        notes = [HeardNote(400_000, q, float(rng.uniform(40, 115)), 900_000) for q in keys]
        fake = int(rng.choice(keys)) + int(rng.choice([-1, 1, -2, 2, 7, -12, 12, 19]))
        assert fake not in keys
        det = Detector(_take(notes), 48000)
        t = 0.4 + OFFSET_S
        plan = [(t, q) for q in (*keys, fake)]
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        after += any(o.pitch == fake for o in heard)
        struck += sum(any(o.pitch == q and abs(o.t_s - t) < 0.005 for o in heard) for q in keys)
        with monkeypatch.context() as m:
            m.setattr(det_mod, "PLANNED_MIN_NEW", 0.0)
            before += any(o.pitch == fake for o in Detector(_take(notes), 48000).detect_intended(plan, 0.08, 0.08, []))
    assert after == 0 and before >= 4, (after, before)
    assert struck == 16


def test_a_planned_bass_neighbour_never_played_is_not_heard() -> None:
    # below D3 a planned key a semitone, tone or octave from a struck one, never played:
    # the search's owner test (long windows of 4096 samples, bins wider than a bass
    # semitone) heard 6 of 24 such; on windows of 8192 samples (Detector.bass) the struck
    # key's template takes that sound and the search's onset is dropped (measured 1 of
    # 24), the struck keys still heard (24 of 24)
    struck_heard, fakes_heard, n = 0, 0, 0
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        notes, fakes = [], []
        t = 0.3
        for _ in range(12):
            p, d = int(rng.integers(33, 51)), int(rng.choice([-1, 1, -2, 2, 12, -12]))
            notes.append(HeardNote(int(t * 1e6), p, float(rng.uniform(50, 110)), int((t + 0.4) * 1e6)))
            fakes.append((t + OFFSET_S, p + d))
            t += 0.7
        det = Detector(_take(notes), 48000)
        plan = sorted([(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes] + fakes)
        heard = det.detect_intended(plan, 0.08, 0.08, [])
        struck_heard += sum(any(o.pitch == h.pitch and abs(o.t_s - h.t_us / 1e6 - OFFSET_S) < 0.02 for o in heard)
                            for h in notes)
        fakes_heard += sum(any(o.pitch == q and abs(o.t_s - tq) < 0.08 for o in heard) for tq, q in fakes)
        n += len(notes)
    assert struck_heard == n
    assert fakes_heard <= 2


def test_a_soft_bass_key_struck_with_a_louder_tone_is_heard() -> None:
    # C#2 (v 31) struck with D#2 (v 80), a tone up, C#3 (v 96) ringing from 0.25 s
    # before: the short window's partial bins of C#2 (70-95 Hz of spectrum each) hold its
    # neighbours' sound, the 4096-sample windows cannot tell it from its semitones, so
    # neither the search nor the informed stage heard it; on 8192-sample windows
    # (Detector.bass) the informed stage does, timed at its own rise (measured +2.8 ms).
    # One chord of a scratch family (soft bass key, a louder key a tone or ninth away, a
    # loud one ringing): over 30 such, heard within 20 ms 11 before, 10 after (the veto
    # drops as many as the rescue adds there; docs/hearing.md)
    notes = [HeardNote(50_000, 49, 96.0, 600_000), HeardNote(300_000, 37, 31.0, 700_000),
             HeardNote(300_000, 39, 80.0, 700_000)]
    det = Detector(_take(notes), 48000)
    heard = det.detect_intended([(h.t_us / 1e6 + OFFSET_S, h.pitch) for h in notes], 0.08, 0.08, [])
    t = 0.3 + OFFSET_S
    assert any(o.pitch == 37 and abs(o.t_s - t) < 0.01 for o in heard)


def _restrikes(seed: int, struck: bool) -> tuple[Detector, list[tuple[float, int, float]]]:
    """Eight keys struck softly, each again 100-300 ms later (or, not ``struck``, not
    again), held through both (the calibrator's soft-end round on one key, session 13's
    cause (c)): the take and each second strike's (audio s, key, the first's audio s)."""
    rng = np.random.default_rng(seed)
    notes, second = [], []
    t = 0.2
    for _ in range(8):
        p, gap = int(rng.integers(40, 80)), float(rng.uniform(0.1, 0.3))
        v1, v2 = float(rng.uniform(15, 40)), float(rng.uniform(15, 40))
        notes.append(HeardNote(int(t * 1e6), p, v1, int((t + gap + 0.3) * 1e6)))
        if struck:
            notes.append(HeardNote(int((t + gap) * 1e6), p, v2, int((t + gap + 0.3) * 1e6)))
        second.append((t + gap + OFFSET_S, p, t + OFFSET_S))
        t += 0.9
    return Detector(_take(notes), 48000), second


def test_a_second_soft_strike_of_a_ringing_key_is_heard_on_time() -> None:
    # looked for as the calibration's clicked windows do (hear_strikes -> Detector.find,
    # TIGHT_MIN_FRACTION, +-30 ms), the first strike ringing: the two strikes' partials add
    # with any phase, so the salience's rise and the owner test's gained magnitude are
    # small or nothing; the step fit in the key's bands (Detector.restrike) times it.
    # Measured: 8 of 8 within 2 ms (without ringing=: 1 of 8, 6 not heard; session 18)
    det, second = _restrikes(0, struck=True)
    close = 0
    for t2, p, t1 in second:
        o = det.find(p, t2 - 0.03, t2 + 0.03, min_risen=TIGHT_MIN_FRACTION, ringing=[(t1, p)])
        close += o is not None and abs(o.t_s - t2) < 0.002
    assert close >= 7


def test_a_ringing_key_not_struck_again_is_not_heard() -> None:
    # the same keys, the second strike silent (a calibration strike under the key's
    # threshold): the step fit must not take the ringing's own envelope for a strike
    # (measured 0 of 8; seeds 3-14, soft and loud: 0 of 192 at 100-300 ms)
    det, second = _restrikes(1, struck=False)
    heard = [det.find(p, t2 - 0.03, t2 + 0.03, min_risen=TIGHT_MIN_FRACTION, ringing=[(t1, p)]) for t2, p, t1 in second]
    assert sum(o is not None for o in heard) == 0
