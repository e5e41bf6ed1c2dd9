"""Rule-based expressive rendering: deterministic per seed, each rule does its job,
timing deviations of ~10 ms with a 1/f (not white) spectrum. No torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.errors import UsageError
from robo_player.midi import read_midi, write_midi
from robo_player.model.render import RenderRules, perform, pink_noise, spectral_slope
from robo_player.score import Note, Score

OFF = dict(phrase_arch=0.0, high_loud=0.0, duration_contrast=0.0, melodic_charge=0.0, final_ritard=0.0)


def _scale_score(n: int = 64, ioi_us: int = 250_000) -> Score:
    pitches = [60, 62, 64, 65, 67, 69, 71, 72]
    return Score(notes=[Note(pitches[i % 8] + 12 * ((i // 8) % 2), i * ioi_us, ioi_us - 20_000, 64)
                        for i in range(n)])


def test_all_rules_off_and_no_noise_is_identity() -> None:
    s = _scale_score()
    out = perform(s, RenderRules(**OFF, noise_ms=0.0))
    assert out.notes == s.notes


def test_deterministic_per_seed() -> None:
    s = _scale_score()
    a = perform(s, RenderRules(seed=3))
    b = perform(s, RenderRules(seed=3))
    c = perform(s, RenderRules(seed=4))
    assert a.notes == b.notes
    assert [n.onset_us for n in a.notes] != [n.onset_us for n in c.notes]


def test_timing_noise_is_about_10ms_and_one_over_f() -> None:
    s = _scale_score(n=2048, ioi_us=300_000)
    slopes, sds = [], []
    for seed in range(4):
        out = perform(s, RenderRules(**OFF, noise_ms=10.0, seed=seed))
        dev = np.array([o.onset_us - n.onset_us for o, n in zip(out.notes, s.notes, strict=True)]) / 1000.0
        sds.append(dev.std())
        slopes.append(spectral_slope(dev))
    assert 8.0 < np.mean(sds) < 12.0  # ms
    assert -1.4 < np.mean(slopes) < -0.6  # 1/f, where white noise gives ~0
    white = np.random.default_rng(0).standard_normal(2048)
    assert abs(spectral_slope(white)) < 0.3
    assert abs(spectral_slope(pink_noise(4096, np.random.default_rng(1))) + 1.0) < 0.3


def test_high_loud_makes_high_notes_louder() -> None:
    s = Score(notes=[Note(48, 0, 400_000, 64), Note(72, 500_000, 400_000, 64)])
    out = perform(s, RenderRules(**{**OFF, "high_loud": 1.0}, noise_ms=0.0))
    low, high = sorted(out.notes, key=lambda n: n.pitch)
    assert high.velocity - low.velocity == 6  # 3 units/octave, 2 octaves apart
    out2 = perform(s, RenderRules(**{**OFF, "high_loud": 2.0}, noise_ms=0.0))
    low2, high2 = sorted(out2.notes, key=lambda n: n.pitch)
    assert high2.velocity - low2.velocity == 12


def test_final_ritard_slows_the_end() -> None:
    s = _scale_score(n=40)
    out = perform(s, RenderRules(**{**OFF, "final_ritard": 1.0}, noise_ms=0.0))
    on = np.array([n.onset_us for n in out.notes])
    ioi = np.diff(on)
    assert ioi[:10].max() == 250_000  # the start is untouched
    assert ioi[-1] > 1.3 * 250_000 and np.all(np.diff(ioi[-10:]) >= 0)  # slower and slower


def test_phrase_arch_swells_in_the_middle() -> None:
    s = _scale_score(n=16)  # one phrase (no gaps, under 8 s)
    out = perform(s, RenderRules(**{**OFF, "phrase_arch": 1.0}, noise_ms=0.0))
    vel = [n.velocity for n in out.notes]
    assert vel[8] > vel[0] and vel[8] > vel[-1]
    ioi = np.diff([n.onset_us for n in out.notes])
    assert ioi[7] < ioi[0] and ioi[7] < ioi[-1]  # faster in the middle


def test_duration_contrast_and_melodic_charge() -> None:
    s = Score(notes=[Note(60, i * 150_000, 140_000, 64) for i in range(8)]
              + [Note(66, 1_200_000, 1_500_000, 64)])
    out = perform(s, RenderRules(**{**OFF, "duration_contrast": 1.0}, noise_ms=0.0))
    assert out.notes[1].onset_us - out.notes[0].onset_us < 150_000  # short notes shortened
    assert out.notes[-1].velocity > out.notes[0].velocity  # long note louder
    scale = [60, 62, 64, 65, 67, 69, 71, 72] * 2 + [66]  # C major, then F#
    s = Score(notes=[Note(p, i * 500_000, 450_000, 64) for i, p in enumerate(scale)])
    out = perform(s, RenderRules(**{**OFF, "melodic_charge": 1.0}, noise_ms=0.0))
    vel = {n.pitch: n.velocity for n in out.notes}
    assert vel[60] == 64 and vel[67] == 65 and vel[66] == 69  # 0, 1 and 6 fifths from C


def test_rule_quantities_are_bounded() -> None:
    with pytest.raises(UsageError, match="--k-high-loud 9"):
        RenderRules(high_loud=9)
    with pytest.raises(UsageError, match="--noise-ms"):
        RenderRules(noise_ms=-1)


def test_perform_cli_writes_a_performed_file(tmp_path: Path) -> None:
    from robo_player.model import cli as model_cli

    src = tmp_path / "plain.mid"
    write_midi(_scale_score(n=32), src)
    import argparse

    ap = argparse.ArgumentParser()
    model_cli.register(ap.add_subparsers())
    args = ap.parse_args(["perform", str(src), "--out", str(tmp_path / "out.mid"), "--seed", "1",
                          "--k-final-ritard", "2"])
    assert args.func(args) == 0
    out = read_midi(tmp_path / "out.mid")
    assert len(out.notes) == 32
    assert out.duration_s > 32 * 0.25


def test_cli_and_rule_based_perform_do_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "plain.mid"
    write_midi(_scale_score(n=8), src)
    code = (
        "import sys\n"
        "from robo_player.cli import build_parser, main\n"
        "build_parser()\n"
        f"assert main(['perform', {str(src)!r}, '--out', {str(tmp_path / 'o.mid')!r}]) == 0\n"
        "import robo_player.model.corpus, robo_player.model.tokenizer\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
