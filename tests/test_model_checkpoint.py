"""Checkpoints: weights + config + tokenizer version, loadable with weights_only=True;
clear errors for missing, corrupt and incompatible files."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from robo_player.errors import ModelError  # noqa: E402
from robo_player.model.checkpoint import load_model, read_checkpoint, save_checkpoint  # noqa: E402
from robo_player.model.networks import ModelConfig, build_model, count_parameters  # noqa: E402
from robo_player.model.tokenizer import TOKENIZER_VERSION  # noqa: E402


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_save_load_round_trip_with_weights_only(tmp_path: Path, arch: str) -> None:
    cfg = ModelConfig(arch=arch, d_model=32, n_layers=1, n_heads=2, d_ff=64, dropout=0.0)
    torch.manual_seed(0)
    m = build_model(cfg).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, m, cfg, meta={"note": "x"})
    raw = torch.load(path, weights_only=True)  # no pickled code: plain tensors and values
    assert raw["tokenizer"] == TOKENIZER_VERSION and raw["config"]["arch"] == arch
    m2, cfg2, meta = load_model(path)
    assert cfg2 == cfg and meta == {"note": "x"}
    assert count_parameters(m2) == count_parameters(m)
    x = torch.randint(0, 390, (2, 12))
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nope\.pt: no such model checkpoint"):
        load_model(tmp_path / "nope.pt")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02this is not a checkpoint" * 10)
    with pytest.raises(ModelError, match=r"bad\.pt: corrupt or not a robo_player checkpoint"):
        load_model(bad)
    trunc = tmp_path / "trunc.pt"
    cfg = ModelConfig(d_model=16, n_layers=1)
    save_checkpoint(trunc, build_model(cfg), cfg)
    trunc.write_bytes(trunc.read_bytes()[:200])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(trunc)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "robo_player.model", "x": ModelConfig()}, evil)  # a pickled object
    with pytest.raises(ModelError, match="corrupt or not a robo_player checkpoint"):
        read_checkpoint(evil)


def test_other_tokenizer_version(tmp_path: Path) -> None:
    cfg = ModelConfig(d_model=16, n_layers=1)
    path = tmp_path / "old.pt"
    save_checkpoint(path, build_model(cfg), cfg)
    blob = torch.load(path, weights_only=True)
    blob["tokenizer"] = "perf388-v0"
    torch.save(blob, path)
    with pytest.raises(ModelError, match=r"made for tokenizer 'perf388-v0'.*uses 'perf390-v1'"):
        load_model(path)


def test_not_a_model_and_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="not a robo_player model checkpoint"):
        load_model(path)
    cfg = ModelConfig(d_model=16, n_layers=1)
    save_checkpoint(path, build_model(cfg), cfg)
    blob = torch.load(path, weights_only=True)
    blob["config"]["colour"] = "red"
    torch.save(blob, path)
    with pytest.raises(ModelError, match=r"unknown model config keys \['colour'\]"):
        load_model(path)
    blob["config"].pop("colour")
    blob["config"]["d_model"] = 32  # weights no longer fit
    torch.save(blob, path)
    with pytest.raises(ModelError, match="weights do not match the config"):
        load_model(path)


def test_config_bounds() -> None:
    with pytest.raises(ModelError, match="arch 'gru' unknown"):
        ModelConfig(arch="gru")
    with pytest.raises(ModelError, match=r"d_model = 4 out of range \(8\.\.4096\)"):
        ModelConfig(d_model=4)
