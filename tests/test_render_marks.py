"""What the score itself marks, for rendering: the velocities (dynamics) and tempo marks of
a score MIDI, paired with a match file's score notes; the features that read them; the
tempo target as the deviation from the marks; renderings that follow the marks; the flat
baseline as written; and training on one row per score (the mean over its performances)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_player.midi import write_midi
from robo_player.model import asap
from robo_player.model import score_features as sf
from robo_player.model.asap import Performance
from robo_player.score import Note, Score, TempoChange

US_FAST, US_SLOW = 500_000, 1_000_000  # quarters 0..15 at 120 bpm, then 16..31 at 60


def marked_score() -> Score:
    """32 quarter notes, a scale; piano (velocity 40) in the first half, forte (96) after;
    the tempo halves at quarter 16."""
    notes = []
    for k in range(32):
        t = k * US_FAST if k < 16 else 16 * US_FAST + (k - 16) * US_SLOW
        notes.append(Note(60 + k % 12, t, US_FAST // 2, 40 if k < 16 else 96))
    return Score(notes=notes, tempo_map=[TempoChange(0, 0, US_FAST), TempoChange(16 * 480, 16 * US_FAST, US_SLOW)],
                 ticks_per_beat=480)


def performance(pitch: np.ndarray, onset_q: np.ndarray, p_on: np.ndarray, folder: str = "C/P",
                vel: np.ndarray | None = None) -> Performance:
    m = len(pitch)
    vel = np.full(m, 64, np.int16) if vel is None else vel.astype(np.int16)
    played = np.stack([pitch, np.round(p_on * 1e6), np.full(m, 200_000), vel], 1).astype(np.int64)
    return Performance(folder, "X", pitch.astype(np.int16), onset_q, np.full(m, 1.0), np.mod(onset_q, 4),
                       np.full(m, 4.0), np.ones(m, np.int16), np.ones(m, np.int16), np.zeros(m, np.int16),
                       np.arange(m, dtype=np.int64), p_on, np.full(m, 0.2), vel, played, np.zeros((0, 2), np.int64))


def test_score_midi_marks_pair_notes_despite_an_upbeat_offset_and_a_missing_note(tmp_path: Path) -> None:
    path = tmp_path / "midi_score.mid"
    write_midi(marked_score(), path)
    pitch = np.array([60 + k % 12 for k in range(32)])
    keep = np.ones(32, bool)
    keep[5] = False  # the match file lacks one note (its quarters also start at -1: an upbeat)
    got = asap.score_midi_marks(path, pitch[keep])
    assert got is not None
    vel, spq = got
    assert np.array_equal(vel, np.where(np.arange(32) < 16, 40, 96)[keep])
    np.testing.assert_allclose(spq, np.where(np.arange(32) < 16, 0.5, 1.0)[keep])
    assert asap.score_midi_marks(tmp_path / "none.mid", pitch) is None  # no file: None, no error


def test_attach_score_marks_caches_and_features_read_the_marks(tmp_path: Path) -> None:
    root = tmp_path / "asap"
    (root / "C" / "P").mkdir(parents=True)
    write_midi(marked_score(), root / "C" / "P" / "midi_score.mid")
    pitch = np.array([60 + k % 12 for k in range(32)])
    q = np.arange(32.0)
    perf = performance(pitch, q, q * 0.5)
    bare = performance(pitch, q, q * 0.5, folder="C/None")
    c = asap.AsapCorpus(str(root), [perf, bare])
    asap.attach_score_marks(c, cache_dir=tmp_path / "cache")
    assert perf.score_vel is not None and bare.score_vel is None
    again = asap.AsapCorpus(str(root), [performance(pitch, q, q * 0.5), performance(pitch, q, q * 0.5, "C/None")])
    asap.attach_score_marks(again, cache_dir=tmp_path / "cache")  # from the cache file
    assert len(list((tmp_path / "cache").glob("asap-marks-*.npz"))) == 1
    assert again.performances[0].score_vel is not None
    assert np.array_equal(again.performances[0].score_vel, perf.score_vel)
    assert again.performances[1].score_spq is None
    f = sf.features(sf.from_performance(perf))
    assert f.shape[1] == sf.N_FEATURES == 36
    assert np.all(f[:16, 32] < 0) and np.all(f[16:, 32] > 0) and np.all(f[:, 33] == 1)  # piano, then forte
    assert np.all(f[16:, 34] > f[:16, 34] + 0.6)  # log 2 slower
    assert f[13, 35] > 0.6 and f[0, 35] == 0 and f[20, 35] == 0  # the change ahead, four quarters before
    g = sf.features(sf.from_performance(bare))
    assert np.all(g[:, 32:] == 0)  # unknown marks read as none


def test_tempo_target_is_the_deviation_from_the_marks_and_rendering_follows_them() -> None:
    pitch = np.array([60 + k % 12 for k in range(32)])
    q = np.arange(32.0)
    marks = sf.from_score(marked_score())
    as_marked = np.where(q < 16, q * 0.5, 8 + (q - 16) * 1.0)
    p = performance(pitch, q, as_marked)
    p.score_vel, p.score_spq = marks.score_vel, marks.score_spq
    y, ok = sf.targets(p)
    assert ok.all() and np.abs(y[:, 1]).max() < 1e-6  # played as marked: no deviation
    p.score_spq = None  # without the marks, the same playing is a tempo change
    y0, _ = sf.targets(p)
    assert y0[20:, 1].mean() > y0[:12, 1].mean() + 0.6
    # a rendering with no predicted deviation plays the marks and keeps the notated duration
    on, _, _, _ = sf.render_notes(marks, np.zeros((32, 5)))
    ioi = np.diff(on)
    assert ioi[20] == pytest.approx(2 * ioi[5], rel=1e-6)
    assert on[-1] - on[0] == pytest.approx(as_marked[-1] - as_marked[0], rel=0.03)
    assert marks.sec_per_q == pytest.approx((as_marked[-1] - as_marked[0]) / 31)  # the average, not the first


def test_flat_plays_the_score_as_written() -> None:
    from robo_player.model import eval_render as er

    marks = sf.from_score(marked_score())
    on, _, vel, _ = er.flat(marks)
    assert np.array_equal(vel, np.where(np.arange(32) < 16, 40, 96))
    np.testing.assert_allclose(np.diff(on), np.where(np.arange(31) < 16, 0.5, 1.0), atol=1e-9)
    plain = sf.ScoreNotes(marks.pitch, marks.onset_q, marks.dur_q, marks.bar_pos_q, marks.bar_len_q,
                          marks.voice, marks.staff, marks.flags, 0.5)
    assert np.all(er.flat(plain)[2] == er.FLAT_VELOCITY)


def test_training_rows_are_one_per_score_with_the_mean_targets() -> None:
    pytest.importorskip("torch")
    import torch

    from robo_player.model import render_net as rn

    pitch = np.array([60 + k % 12 for k in range(32)])
    q = np.arange(32.0)
    rng = np.random.default_rng(0)
    perfs = [performance(pitch, q, q * 0.5 + rng.normal(0, 0.01, 32), vel=rng.integers(30, 100, 32))
             for _ in range(3)]
    perfs[2].p_vel[4] = -1  # one pianist left a note out
    perfs[2].p_onset_s[4] = np.nan
    rows = rn.prepare(perfs)
    assert len(rows) == 1 and len(rn.prepare(perfs, by_piece=False)) == 3
    x, y, w = rows[0]
    assert w[4] == 2 and w[0] == 3
    ys = [sf.targets(p) for p in perfs]
    np.testing.assert_allclose(y[0], np.mean([t[0][0] for t in ys], axis=0), atol=1e-6)
    np.testing.assert_allclose(y[4, 0], np.mean([ys[0][0][4, 0], ys[1][0][4, 0]]), atol=1e-6)
    # the squared errors: the per-performance loss is the mean-target loss plus the pianists'
    # own spread, so both have the same gradient
    pred = torch.zeros(1, 32, 5, requires_grad=True)
    sep = torch.stack([rn.loss_fn(pred, torch.from_numpy(t[0])[None], torch.from_numpy(t[1])[None]) * float(t[1].sum())
                       for t in ys]).sum() / float(sum(t[1].sum() for t in ys))
    agg = rn.loss_fn(pred, torch.from_numpy(y)[None], torch.from_numpy(w)[None])
    g1 = torch.autograd.grad(sep, pred)[0]
    g2 = torch.autograd.grad(agg, pred)[0]
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-4)
    assert float(agg.detach()) < float(sep.detach())
