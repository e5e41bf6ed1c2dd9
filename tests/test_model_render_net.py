"""The rendering network and the rendering evaluation: score features, expression
targets, a tiny BiGRU trained for seconds on synthetic performances whose expression
follows known rules, ``perform --model`` with a rendering checkpoint, and the metrics
``eval-model`` prints (all on generated data)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest

from robo_player.midi import read_midi, write_midi
from robo_player.model import score_features as sf
from robo_player.model.asap import Performance
from robo_player.score import Note, Score

torch = pytest.importorskip("torch")

from robo_player.model import eval_render as er  # noqa: E402
from robo_player.model import render_net as rn  # noqa: E402


def synthetic(seed: int, folder: str = "Comp/P", bars: int = 16) -> Performance:
    """A two-hand 4/4 piece of eighth-note and quarter-note bars, performed by rules the
    network can learn: downbeats +20 velocity, left hand -15, pitch +0.5 a semitone;
    quarter-note bars 35 % slower, eighth-note bars faster; legato (0.95) in quarter bars,
    detached (0.5) in eighth bars; pedal down in quarter bars."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(bars):
        kind = int(rng.integers(0, 2))  # 0: eighths, 1: quarters
        step = 0.5 if kind == 0 else 1.0
        for k in range(int(4 / step)):
            q = b * 4 + k * step
            rows.append((int(rng.integers(64, 80)), q, step, 1, kind))  # right hand
            if k % 2 == 0:
                rows.append((int(rng.integers(40, 55)), q, 2 * step, 2, kind))  # left hand
    rows.sort(key=lambda r: (r[1], r[0]))
    pitch = np.array([r[0] for r in rows], np.int16)
    onset_q = np.array([r[1] for r in rows])
    dur_q = np.array([r[2] for r in rows])
    staff = np.array([r[3] for r in rows], np.int16)
    kinds = np.array([r[4] for r in rows])
    bar_pos = np.mod(onset_q, 4.0)
    # performance: a tempo per bar, integrated over the onsets
    spq_bar = np.array([0.5 * (1.35 if kinds[np.flatnonzero(np.floor(onset_q / 4) == b)[0]] else 0.85)
                        for b in range(bars)])
    qs = np.unique(onset_q)
    t = np.r_[0.0, np.cumsum(np.diff(qs) * spq_bar[np.floor(qs[:-1] / 4).astype(int)])]
    t_of = dict(zip(qs.tolist(), t.tolist(), strict=True))
    spq = spq_bar[np.floor(onset_q / 4).astype(int)]
    p_on = np.array([t_of[q] for q in onset_q]) + rng.normal(0, 0.005, len(rows))
    p_dur = dur_q * spq * np.where(kinds == 1, 0.95, 0.5)
    vel = 50 + 20 * (bar_pos == 0) - 15 * (staff == 2) + 0.5 * (pitch - 60) + rng.normal(0, 3, len(rows))
    vel = np.clip(np.round(vel), 1, 127).astype(np.int16)
    pedal = []
    for b in range(bars):
        if spq_bar[b] > 0.5:
            pedal += [(round((t_of[b * 4.0] + 0.02) * 1e6), 127), (round((t_of[b * 4.0] + 4 * spq_bar[b] - 0.05) * 1e6), 0)]
    played = np.stack([pitch, np.round(p_on * 1e6), np.round(p_dur * 1e6), vel], 1).astype(np.int64)
    m = len(rows)
    return Performance(folder, f"S{seed}", pitch, onset_q, dur_q, bar_pos, np.full(m, 4.0),
                       np.where(staff == 1, 1, 2).astype(np.int16), staff, np.zeros(m, np.int16),
                       np.arange(m, dtype=np.int64), p_on, p_dur, vel, played,
                       np.array(pedal, np.int64).reshape(-1, 2))


def test_features_and_targets_are_finite_and_meaningful() -> None:
    p = synthetic(0)
    s = sf.from_performance(p)
    f = sf.features(s)
    assert f.shape == (len(p.pitch), sf.N_FEATURES) and np.isfinite(f).all()
    y, ok = sf.targets(p)
    assert ok.all() and np.isfinite(y).all()
    v = p.p_vel.astype(float)
    z = (v - v.mean()) / v.std()  # velocity: z-scored within the performance, on a common scale
    assert np.allclose(y[:, 0], np.clip((sf.VEL_MEAN + sf.VEL_STD * z - 64) / 32, -2, 2), atol=1e-5)
    louder = sf.targets(Performance(**{**{k: getattr(p, k) for k in p.__slots__}, "p_vel": p.p_vel + 20}))[0]
    assert np.allclose(louder[:, 0], y[:, 0], atol=1e-5)  # a louder day is not in the target
    assert np.all(f[p.staff == 2, 24] > 0) and np.mean(f[p.staff == 1, 24] == 0) > 0.3  # melody = the top
    slow = p.dur_q[p.staff == 1] == 1.0
    assert y[p.staff == 1][slow, 1].mean() > y[p.staff == 1][~slow, 1].mean() + 0.3  # tempo target
    assert y[p.staff == 1][slow, 3].mean() > y[p.staff == 1][~slow, 3].mean() + 0.4  # legato vs detached
    assert 0.2 < y[:, 4].mean() < 0.8  # pedal in some bars


def test_render_notes_keeps_the_average_tempo() -> None:
    p = synthetic(1)
    s = sf.from_performance(p, sec_per_q=0.5)
    rng = np.random.default_rng(0)
    pred = np.zeros((len(p.pitch), 5))
    pred[:, 1] = rng.normal(0, 0.3, len(p.pitch))
    on, dur, vel, pedal = sf.render_notes(s, pred)
    assert on.max() == pytest.approx((p.onset_q.max() - p.onset_q.min()) * 0.5, rel=0.06)
    assert np.all(np.diff(np.unique(on)) > 0)
    pred[:, 4] = 1.0
    _, _, _, pedal = sf.render_notes(s, pred)
    assert pedal and pedal[0][1] == 127 and pedal[-1][1] == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Performance]]:
    """One tiny network for the module (a few seconds of CPU)."""
    torch.set_num_threads(1)
    train = [synthetic(i, f"Comp/T{i}") for i in range(16)]
    valid = [synthetic(100 + i, f"Comp/V{i}") for i in range(3)]
    out = tmp_path_factory.mktemp("render") / "render.pt"
    s = rn.train_renderer(train, valid, out, rn.RenderConfig(hidden=24, layers=1, dropout=0.0),
                          epochs=18, batch_size=8, seq_len=128, lr=1e-2, progress=False)
    assert s["best_valid_loss"] < s["history"][0]["valid"]
    return out, [synthetic(200 + i, "Comp/X") for i in range(3)]


def test_tiny_renderer_learns_dynamics_and_tempo_beyond_the_rules(
        trained: tuple[Path, list[Performance]]) -> None:
    out, test = trained
    model, meta = rn.load(out)
    r = er.evaluate_rendering(test, {"model": er.model_renderer(model), "rules": er.rules,
                                     "flat": er.flat})
    rend = r["rendering"]
    assert rend["model"]["velocity_r"] > 0.6 and rend["model"]["velocity_r"] > rend["rules"]["velocity_r"]
    assert rend["model"]["tempo_r"] > 0.5 and rend["model"]["tempo_r"] > rend["rules"]["tempo_r"]
    assert rend["model"]["articulation_r"] > 0.5
    assert rend["model"]["velocity_mae"] < rend["flat"]["velocity_mae"]
    assert math.isnan(rend["flat"]["velocity_r"]) and math.isnan(rend["flat"]["tempo_r"])  # constants
    assert rend["human"]["performances"] == 3 and rend["human"]["velocity_r"] > 0.8  # same rules
    d = r["distributions"]
    assert d["model"]["overall"] < d["flat"]["overall"]
    assert set(d["model"]) == {"velocity", "duration", "ioi", "pedal", "overall"}


def test_widened_network_predicts_as_before_and_reads_24_feature_checkpoints(
        trained: tuple[Path, list[Performance]]) -> None:
    torch.manual_seed(0)
    narrow = rn.RenderGRU(rn.RenderConfig(n_features=24, hidden=16, layers=1, dropout=0.0))
    s = sf.from_performance(synthetic(5))
    wide = rn.widen(narrow)
    assert wide.cfg.n_features == sf.N_FEATURES
    np.testing.assert_allclose(rn.predict(wide, s), rn.predict(narrow, s), atol=1e-6)
    assert np.abs(rn.predict(rn.load(trained[0])[0], s) - rn.predict(wide, s)).max() > 1e-3
    with pytest.raises(rn.ModelError, match="cannot narrow"):
        rn.widen(wide, 24)


def test_perform_cli_with_a_rendering_checkpoint(tmp_path: Path,
                                                trained: tuple[Path, list[Performance]]) -> None:
    from robo_player.errors import UsageError
    from robo_player.model import cli as model_cli

    out, _ = trained
    notes = []
    for b in range(8):
        for k in range(8):
            notes.append(Note(64 + (k % 5), (b * 8 + k) * 250_000, 240_000, 80, track=0))
        notes.append(Note(43, b * 2_000_000, 1_900_000, 80, track=1))
    src = tmp_path / "plain.mid"
    write_midi(Score(notes=notes), src)
    ap = argparse.ArgumentParser()
    model_cli.register(ap.add_subparsers())
    args = ap.parse_args(["perform", str(src), "--model", str(out), "--out", str(tmp_path / "o.mid")])
    assert args.func(args) == 0
    got = read_midi(tmp_path / "o.mid")
    assert len(got.notes) == len(notes)
    vel = np.array([n.velocity for n in got.notes])
    assert vel.std() > 3  # dynamics, not one level
    assert got.duration_s == pytest.approx(Score(notes=notes).duration_s, rel=0.35)
    args = ap.parse_args(["perform", str(src), "--model", str(out), "--temperature", "0.5",
                          "--out", str(tmp_path / "o2.mid")])
    with pytest.raises(UsageError, match="deterministic"):
        args.func(args)


def test_pearson_is_undefined_for_constants() -> None:
    assert math.isnan(sf.pearson(np.ones(10), np.arange(10.0)))
    assert sf.pearson(np.arange(10.0), 2 * np.arange(10.0) + 1) == pytest.approx(1.0)
    assert math.isnan(sf.pearson(np.array([1.0, np.nan]), np.array([1.0, 2.0])))


def test_eval_model_on_an_asap_folder_prints_json_with_rendering(
        tmp_path: Path, trained: tuple[Path, list[Performance]],
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from test_model_asap import make_asap

    from robo_player.model import cli as model_cli
    from robo_player.model.cli import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no shipped model")
    root = make_asap(tmp_path / "asap", [f"Comp/Piece_{i}" for i in range(30)])
    out, _ = trained
    ap = argparse.ArgumentParser()
    model_cli.register(ap.add_subparsers())
    args = ap.parse_args(["eval-model", "--corpus", f"asap:{root}", "--cache", str(tmp_path / "c"),
                          "--lstm", str(DEFAULT_MODEL), "--transformer", str(DEFAULT_MODEL),
                          "--render-model", str(out), "--ngram-order", "2", "--samples", "1",
                          "--sample-seconds", "1", "--json"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    res = json.loads(text)
    assert set(res["models"]) >= {"shipped", "ngram2"}
    assert res["models"]["shipped"]["nll_per_event"] > 0
    assert set(res["rendering"]) == {"model", "rules", "flat", "human"}
    for m in res["rendering"].values():
        assert set(m) == {"velocity_r", "tempo_r", "articulation_r", "velocity_mae", "performances", "defined"}
        assert m["velocity_r"] is None  # four-note scores: too short to compare (null, not NaN)
    assert res["alignment_rate"] == pytest.approx(0.6)
    assert "velocity_spread" in res["samples"]["shipped"] and "pedal_use" in res["samples"]["shipped"]


def test_ensemble_checkpoint_predicts_the_mean_of_its_networks(
        tmp_path: Path, trained: tuple[Path, list[Performance]], capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(1)
    other = rn.RenderGRU(rn.RenderConfig(hidden=16, layers=1, dropout=0.0))
    rn.save(tmp_path / "b.pt", other, {"valid_loss": 1.0})
    s = sf.from_performance(synthetic(7))
    a = rn.load(trained[0])[0]
    assert rn.main(["combine", str(tmp_path / "ab.pt"), str(trained[0]), str(tmp_path / "b.pt")]) == 0
    assert "2 rendering networks" in capsys.readouterr().out
    ens, meta = rn.load(tmp_path / "ab.pt")
    assert isinstance(ens, rn.RenderEnsemble) and len(ens.members) == 2
    assert meta["members_from"] == ["render.pt", "b.pt"]
    mean = (rn.predict(a, s)[:, :4] + rn.predict(other, s)[:, :4]) / 2
    np.testing.assert_allclose(rn.predict(ens, s)[:, :4], mean, atol=1e-5)
    assert np.abs(rn.predict(ens, s)[:, :4] - rn.predict(a, s)[:, :4]).max() > 1e-3
    # an ensemble joins another as its members; a missing file is one line and exit 2
    assert len(rn.combine([tmp_path / "ab.pt", tmp_path / "b.pt"]).members) == 3
    assert rn.main(["combine", str(tmp_path / "x.pt"), str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: no such model checkpoint" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    narrow = rn.RenderGRU(rn.RenderConfig(n_features=24, hidden=16, layers=1, dropout=0.0))
    with pytest.raises(rn.ModelError, match="as many features"):
        rn.RenderEnsemble([other, narrow])
    # widening an ensemble widens every member, predictions unchanged
    e24 = rn.RenderEnsemble([narrow, rn.RenderGRU(rn.RenderConfig(n_features=24, hidden=8, layers=1))])
    wide = rn.widen(e24)
    assert wide.cfg.n_features == sf.N_FEATURES
    np.testing.assert_allclose(rn.predict(wide, s), rn.predict(e24, s), atol=1e-6)


def test_format_1_checkpoints_still_load(tmp_path: Path) -> None:
    from dataclasses import asdict

    torch.manual_seed(2)
    net = rn.RenderGRU(rn.RenderConfig(hidden=16, layers=1, dropout=0.0))
    torch.save({"format": rn.FORMAT, "format_version": 1, "config": asdict(net.cfg),
                "state_dict": net.state_dict(), "meta": {"epoch": 3}}, tmp_path / "old.pt")
    got, meta = rn.load(tmp_path / "old.pt")
    s = sf.from_performance(synthetic(8))
    assert isinstance(got, rn.RenderGRU) and meta["epoch"] == 3
    np.testing.assert_allclose(rn.predict(got, s), rn.predict(net, s), atol=1e-6)


def test_correlation_loss_ignores_offset_and_scale_and_punishes_the_opposite() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 50, 5, generator=g)
    m = torch.ones(3, 50)
    same = y * 3.0 + 1.5  # another scale and offset: r = 1
    assert float(rn.corr_loss(same, y, m)) < 1e-4
    assert float(rn.corr_loss(-y, y, m)) == pytest.approx(2 * sum(rn.CORR_WEIGHTS), abs=1e-3)
    noisy = y + torch.randn(3, 50, 5, generator=g)
    assert 0.1 < float(rn.corr_loss(noisy, y, m)) < float(rn.corr_loss(-y, y, m))
    # masked notes do not count: scrambling them leaves the loss unchanged
    m[:, 40:] = 0
    scrambled = same.clone()
    scrambled[:, 40:] = torch.randn(3, 10, 5, generator=g)
    assert float(rn.corr_loss(scrambled, y, m)) < 1e-4


def test_fine_tuning_an_ensemble_trains_its_members_together(tmp_path: Path) -> None:
    torch.manual_seed(3)
    head = rn.BeatTempoGRU(rn.BeatConfig(hidden=8, layers=1, dropout=0.0))
    ens = rn.RenderEnsemble([rn.RenderGRU(rn.RenderConfig(hidden=8, layers=1, dropout=0.0)) for _ in range(2)],
                            [head], beat_blend=0.4)
    rn.save(tmp_path / "ens.pt", ens, {})
    train = [synthetic(300 + i, f"Comp/F{i}") for i in range(4)]
    s = rn.train_renderer(train, [], tmp_path / "tuned.pt", epochs=2, batch_size=4, seq_len=64, lr=1e-2,
                          progress=False, init_from=tmp_path / "ens.pt")
    tuned, _ = rn.load(tmp_path / "tuned.pt")
    assert isinstance(tuned, rn.RenderEnsemble) and len(tuned.members) == 2 and s["epochs"] == 2
    x = sf.from_performance(train[0])
    for before, after in zip(rn._members(ens), rn._members(tuned), strict=True):
        assert np.abs(rn.predict(after, x) - rn.predict(before, x)).max() > 1e-3  # each member moved
    # the beat-level tempo head rides along unchanged (the note networks' loss does not reach it)
    assert len(tuned.beat) == 1 and tuned.beat_blend == 0.4
    for k, v in head.state_dict().items():
        assert torch.equal(tuned.beat[0].state_dict()[k], v)


def test_beat_features_and_targets_follow_the_beat_grid_eval_model_measures() -> None:
    p = synthetic(9)
    s = sf.from_performance(p)
    beats = sf.beat_grid(p.onset_q)
    f = sf.beat_features(s)
    y, known = sf.beat_targets(p)
    assert f.shape == (len(beats) - 1, sf.N_BEAT_FEATURES) and np.isfinite(f).all()
    assert y.shape == known.shape == (len(beats) - 1,) and known.all()
    # the target is what eval-model correlates: the performed log inter-beat interval
    # (the notated one is constant here), up to the performance's median
    human = sf.measures(p.onset_q, p.dur_q, p.p_onset_s, p.p_dur_s, p.p_vel, p.p_vel >= 0, beats).beat_log_ibi
    assert sf.pearson(y, human) == pytest.approx(1.0, abs=1e-6)
    slow_bar = np.array([p.dur_q[(p.staff == 1) & (np.floor(p.onset_q / 4) == b // 4)].min() == 1.0
                         for b in beats[:-1]])
    assert y[slow_bar].mean() > y[~slow_bar].mean() + 0.3  # quarter-note bars 35 % slower
    assert np.all(f[::4, sf.N_FEATURES + 9] == 1) and not f[1::4, sf.N_FEATURES + 9].any()  # downbeats
    # each note reads the beat its onset falls in (a pickup the first, the last beat's the last)
    np.testing.assert_array_equal(sf.beat_of(np.array([-0.5, 0.0, 0.99, 1.0, 3.0]), np.arange(4.0)),
                                  [0, 0, 0, 1, 2])
    assert sf.beat_features(sf.from_performance(Performance(**{**{k: getattr(p, k) for k in p.__slots__},
                                                               "onset_q": p.onset_q * 0}))).shape[0] == 0


def test_beat_tempo_head_learns_the_tempo_and_joins_the_note_networks(
        tmp_path: Path, trained: tuple[Path, list[Performance]], capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    train = [synthetic(i, f"Comp/T{i}") for i in range(16)]
    valid = [synthetic(100 + i, f"Comp/V{i}") for i in range(3)]
    head = tmp_path / "beat.pt"
    got = rn.train_beat_tempo(train, valid, head, rn.BeatConfig(hidden=16, layers=1, dropout=0.0), epochs=12,
                              batch_size=8, seq_len=32, lr=1e-2, progress=False)
    assert got["best"] > 0.8 and got["best"] > got["history"][0]["valid_tempo_r"]
    with pytest.raises(rn.ModelError, match="beat-level tempo heads only"):
        rn.load(head)
    assert rn.main(["combine", str(tmp_path / "both.pt"), str(trained[0]), str(head)]) == 0
    assert "1 rendering networks" in capsys.readouterr().out
    both, _ = rn.load(tmp_path / "both.pt")
    notes_only, _ = rn.load(trained[0])
    assert isinstance(both, rn.RenderEnsemble) and len(both.beat) == 1 and both.beat_blend == 1.0
    test = trained[1]
    s = sf.from_performance(test[0])
    d = rn.beat_tempo(list(both.beat), s)
    assert d is not None
    a, b = rn.predict(both, s), rn.predict(notes_only, s)
    np.testing.assert_allclose(a[:, 1], d, atol=1e-6)  # the head's tempo, at each note's beat
    np.testing.assert_allclose(a[:, [0, 2, 3, 4]], b[:, [0, 2, 3, 4]], atol=1e-6)  # the rest unchanged
    half = rn.combine([trained[0], head], beat_blend=0.5)
    np.testing.assert_allclose(rn.predict(half, s)[:, 1], (a[:, 1] + b[:, 1]) / 2, atol=1e-6)
    rn.save(tmp_path / "half.pt", half, {})
    assert rn.load(tmp_path / "half.pt")[0].beat_blend == 0.5  # type: ignore[union-attr]
    r = er.evaluate_rendering(test, {"model": er.model_renderer(both)})["rendering"]["model"]
    assert r["tempo_r"] > 0.8
    # the selection measure is the metric's beat level: rendered, the head scores about the same
    assert r["tempo_r"] == pytest.approx(rn.beat_tempo_r(list(both.beat), rn.prepare_beat_check(test)), abs=0.02)
    with pytest.raises(rn.ModelError, match="beat_blend must be in 0..1"):
        rn.combine([trained[0], head], beat_blend=1.5)


def test_format_2_checkpoints_still_load(tmp_path: Path) -> None:
    from dataclasses import asdict

    torch.manual_seed(4)
    nets = [rn.RenderGRU(rn.RenderConfig(hidden=8, layers=1, dropout=0.0)) for _ in range(2)]
    rows = [{"config": asdict(n.cfg), "state_dict": n.state_dict()} for n in nets]
    torch.save({"format": rn.FORMAT, "format_version": 2, "members": rows, "meta": {}}, tmp_path / "v2.pt")
    got, _ = rn.load(tmp_path / "v2.pt")
    s = sf.from_performance(synthetic(10))
    assert isinstance(got, rn.RenderEnsemble) and not got.beat
    np.testing.assert_allclose(rn.predict(got, s), rn.predict(rn.RenderEnsemble(nets), s), atol=1e-6)


def test_train_beat_needs_an_asap_corpus(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert rn.main(["train-beat", "--corpus", "pair:a.mid,b.mid", "--out", str(tmp_path / "b.pt")]) == 2
    assert "give asap:PATH" in capsys.readouterr().err and not (tmp_path / "b.pt").exists()
