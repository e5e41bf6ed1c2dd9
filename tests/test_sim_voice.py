"""The simulator's piano voices (robo_player/sim/audio.py ``Voice``; ``sim://?voice=rich``):
the plain voice unchanged sample for sample, and the rich voice's physics (unison beating,
double decay, the hammer's thump, a weak bass fundamental at the level law's power)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.driver import open_port
from robo_player.errors import TransportError
from robo_player.performance import HeardNote, Performance
from robo_player.planner.piano import plan_piano
from robo_player.score import Note, Score
from robo_player.sim import audio
from robo_player.sim.audio import Voice, render_audio, render_audio_rich
from robo_player.sim.room import LiveTake, Room, RoomTake
from robo_player.spec import load_spec

SR = 16_000
GOLDEN = Path(__file__).parent / "golden" / "plain_voice_16k.npy"


def _golden_performance() -> Performance:
    """Four notes (low bass, middle C, a soft treble note, the top), damped, a half pedal."""
    return Performance(heard=[HeardNote(0, 33, 90.0, 150_000), HeardNote(20_000, 60, 64.0, 140_000),
                              HeardNote(40_000, 84, 30.0, 120_000), HeardNote(60_000, 100, 110.0, 130_000)],
                       pedal=[(0, 0), (125_000, 8)])


def test_plain_voice_is_unchanged() -> None:
    """The default voice renders what main 1ef0d30 rendered (tests/golden/plain_voice_16k.npy,
    written by that commit's render_audio): every cached take and test depends on it. On
    this project's machine the samples are bit-identical (checked when the golden was
    written); the bound leaves room only for another BLAS rounding the block product
    differently (float32, 16 terms), orders under any change of the voice."""
    y = render_audio(_golden_performance(), sample_rate=SR)
    golden = np.load(GOLDEN)
    assert y.dtype == golden.dtype and y.shape == golden.shape
    np.testing.assert_allclose(y, golden, rtol=0, atol=1e-6 * float(np.abs(golden).max()))
    assert audio.render_audio(_golden_performance(), sample_rate=SR, voice=Voice.PLAIN).tobytes() == y.tobytes()


def _note(pitch: int, velocity: float = 80.0, voice: Voice = Voice.RICH, end_us: int | None = None) -> np.ndarray:
    perf = Performance(heard=[HeardNote(0, pitch, velocity, end_us)], pedal=[])
    return render_audio(perf, sample_rate=SR, voice=voice).astype(np.float64)


def _partial_hz(pitch: int, k: int) -> float:
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    b = 1e-4 * 2.0 ** ((pitch - 21) / 20.0)  # the voices' inharmonicity
    return k * f0 * float(np.sqrt(1.0 + b * k * k))


def _envelope(y: np.ndarray, f_hz: float, win_s: float = 0.1, hop_s: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(frame centres s, dB re the peak) of the partial at ``f_hz``: a Hann-windowed
    heterodyne (its leakage from the neighbouring partials is far under -70 dB)."""
    w, h = int(win_s * SR), int(hop_s * SR)
    win = np.hanning(w) * np.exp(-2j * np.pi * f_hz * np.arange(w) / SR)
    idx = np.arange(0, len(y) - w, h)
    e = np.abs(np.array([np.dot(y[i : i + w], win) for i in idx]))
    return idx / SR + win_s / 2, 20.0 * np.log10(e / e.max() + 1e-30)


def _largest_rise_db(y: np.ndarray, f_hz: float, t0: float = 0.1, t1: float = 4.0) -> float:
    """How far the partial's envelope climbs back after a dip (0 for a pure decay)."""
    t, e = _envelope(y, f_hz)
    e = e[(t > t0) & (t < t1) & (e > -70.0)]
    return float(np.max(e - np.minimum.accumulate(e)))


def _slope_db_s(y: np.ndarray, f_hz: float, t0: float, t1: float) -> float:
    t, e = _envelope(y, f_hz)
    m = (t > t0) & (t < t1)
    return float(np.polyfit(t[m], e[m], 1)[0])


def test_rich_voice_unisons_beat() -> None:
    """Middle C's trichord, mistuned by a cent or so: its 2nd and 3rd partials' envelopes
    dip and recover (beats); the plain voice's only decay; a perfectly tuned, evenly
    struck unison (the rule off) does not beat."""
    for k in (2, 3):
        assert _largest_rise_db(_note(60), _partial_hz(60, k)) > 3.0
        assert _largest_rise_db(_note(60, voice=Voice.PLAIN), _partial_hz(60, k)) < 0.1


def test_a_tuned_unison_does_not_beat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "DETUNE_CENTS", (0.0, 0.0))
    monkeypatch.setattr(audio, "HAMMER_UNEVEN", 0.0)
    monkeypatch.setattr(audio, "BRIDGE_REACTANCE", 0.0)
    for k in (2, 3):
        assert _largest_rise_db(_note(60), _partial_hz(60, k)) < 0.1


def test_rich_voice_decays_twice() -> None:
    """The prompt sound decays several times faster than the aftersound (Weinreich's double
    decay); the plain voice's partial decays at one rate. With the strings' own loss
    as large as the bridge's (AFTERSOUND_X 1) the knee is gone."""
    f = _partial_hz(60, 1)
    rich = _slope_db_s(_note(60), f, 0.05, 0.5) / _slope_db_s(_note(60), f, 2.0, 5.0)
    plain = _slope_db_s(_note(60, voice=Voice.PLAIN), f, 0.05, 0.5) / _slope_db_s(_note(60, voice=Voice.PLAIN), f, 2.0, 5.0)
    assert rich > 3.0
    assert 0.9 < plain < 1.1


def test_no_double_decay_without_the_bridge_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "AFTERSOUND_X", 1.0)
    f = _partial_hz(60, 1)
    assert _slope_db_s(_note(60), f, 0.05, 0.5) / _slope_db_s(_note(60), f, 2.0, 5.0) < 1.5


def _hf_share_db(y: np.ndarray, i0: int, i1: int, above_hz: float = 5000.0) -> float:
    spec = np.abs(np.fft.rfft(y[i0:i1] * np.hanning(i1 - i0))) ** 2
    f = np.fft.rfftfreq(i1 - i0, 1.0 / SR)
    return 10.0 * np.log10(float(spec[f > above_hz].sum()) / float(spec.sum()) + 1e-30)


def test_rich_voice_has_a_hammer_thump() -> None:
    """C3's partials stop under 3 kHz: what sounds above 5 kHz in its first 10 ms is the
    hammer's broadband thump; more of it when loud; gone after THUMP_S; none in the plain
    voice, nor with the thump off."""
    n = int(0.01 * SR)
    loud, soft = _note(48, 110.0), _note(48, 40.0)
    assert _hf_share_db(loud, 0, n) > -25.0
    assert _hf_share_db(loud, 0, n) > _hf_share_db(soft, 0, n) + 3.0
    assert _hf_share_db(_note(48, 110.0, Voice.PLAIN), 0, n) < -45.0
    late = int(audio.THUMP_S * SR) + 160
    assert _hf_share_db(loud, late, late + n) < -60.0


def test_no_thump_when_it_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "THUMP_DB", -300.0)
    assert _hf_share_db(_note(48, 110.0), 0, int(0.01 * SR)) < -45.0


def _onset_level_db(y: np.ndarray, f_hz: float) -> float:
    """The partial's level 20-120 ms after the onset (dB, arbitrary reference)."""
    i0, i1 = int(0.02 * SR), int(0.12 * SR)
    ph = np.exp(-2j * np.pi * f_hz * np.arange(i1 - i0) / SR) * np.hanning(i1 - i0)
    return 20.0 * np.log10(abs(np.dot(y[i0:i1], ph)))


def test_rich_voice_bass_fundamental_is_weak() -> None:
    """The soundboard radiates A0's fundamental poorly: against its 3rd partial it is
    >= 12 dB weaker than in the plain voice; middle C's is about as in the plain voice;
    the note's power at onset stays the level law's (the spectrum changes, not loudness)."""
    for pitch, lo, hi in ((21, -40.0, -12.0), (60, -1.5, 1.5)):
        rich, plain = _note(pitch), _note(pitch, voice=Voice.PLAIN)
        f1, f3 = _partial_hz(pitch, 1), _partial_hz(pitch, 3)
        drop = (_onset_level_db(rich, f1) - _onset_level_db(rich, f3)) - (
            _onset_level_db(plain, f1) - _onset_level_db(plain, f3))
        assert lo < drop < hi, (pitch, drop)
    a, b = int(0.02 * SR), int(0.32 * SR)  # many periods of A0 (36 ms)
    for pitch in (21, 33, 60):
        p_rich, p_plain = np.mean(_note(pitch)[a:b] ** 2), np.mean(_note(pitch, voice=Voice.PLAIN)[a:b] ** 2)
        assert abs(10.0 * np.log10(p_rich / p_plain)) < 1.5, pitch


def test_rich_live_take_is_the_drains_take() -> None:
    """The live take (blocks while a stream runs) renders the rich voice the drain's take
    renders (the same samples within float error)."""
    room = Room(sample_rate=48000, offset_s=0.1, drift_ppm=20.0)
    notes = [HeardNote(0, 48, 100.0, 400_000), HeardNote(150_000, 72, 50.0, None), HeardNote(300_000, 30, 80.0, 350_000)]
    drain = RoomTake(room, notes, [], 0, render=render_audio_rich).samples()
    live = LiveTake(room, 0, render_audio_rich)
    blocks = live.blocks(notes, [], [], 3_000_000)
    got = np.concatenate([b for b, _ in blocks])
    assert len(got) > 48000
    np.testing.assert_allclose(got, drain[: len(got)], rtol=0, atol=1e-5)
    plain = LiveTake(room, 0).blocks(notes, [], [], 3_000_000)
    assert np.max(np.abs(np.concatenate([b for b, _ in plain]) - got)) > 1e-3  # a different voice


def test_sim_url_voice_option() -> None:
    spec = load_spec("piano-88-grand")
    plan, _ = plan_piano(Score(notes=[Note(60, 100_000, 300_000, 80)]), spec, None)
    takes = {}
    for url in ("sim://", "sim://?voice=plain", "sim://?voice=rich"):
        with open_port(url, spec, truth_seed=1) as dev:
            perf = dev.play(plan)
        assert perf.audio is not None
        takes[url] = perf.audio.samples()
    assert np.array_equal(takes["sim://"], takes["sim://?voice=rich"])  # the default since session 19
    assert not np.array_equal(takes["sim://"], takes["sim://?voice=plain"])
    with pytest.raises(TransportError, match="voice='loud'"):
        open_port("sim://?voice=loud", spec)
    with pytest.raises(TransportError, match="needs sensor=audio"):
        open_port("sim://?sensor=notes&voice=rich", spec)


def test_the_guitar_refuses_a_piano_voice() -> None:
    with pytest.raises(TransportError, match="voice= is the piano's"):
        open_port("sim://?voice=rich", load_spec("guitar-slider"))


def test_detector_bench_keeps_one_voice_per_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/detector_takes.py: a cache folder's takes are of one voice (its VOICE file; a
    folder of takes without one holds plain takes, cached before voices existed); the other
    voice is refused, never mixed in."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import detector_takes as dt

    assert dt.check_cache_voice(tmp_path / "new", "rich") is True  # nothing there yet
    old = tmp_path / "old"
    old.mkdir()
    (old / "random_1.npz").write_bytes(b"")
    assert dt.check_cache_voice(old, "plain") is True
    with pytest.raises(SystemExit, match="not rich"):
        dt.check_cache_voice(old, "rich")
    rich = tmp_path / "rich"
    rich.mkdir()
    (rich / dt.VOICE_FILE).write_text("rich\n")
    assert dt.check_cache_voice(rich, "rich") is False
    with pytest.raises(SystemExit, match="in the rich voice, not plain"):
        dt.check_cache_voice(rich, "plain")
    take = dt.Take("t", np.zeros(8, np.float32), 48000, np.zeros((0, 3)), [], [], voice="rich")
    dt._save(take, rich / "t.npz")
    assert dt._load("t", rich / "t.npz", "rich").voice == "rich"
    with pytest.raises(SystemExit, match="in the rich voice, not plain"):
        dt._load("t", rich / "t.npz", "plain")
