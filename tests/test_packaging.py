"""A built wheel carries what the commands need: specs, pieces and the shipped model.

The wheel is built from this checkout and installed into a folder of its own, then the
commands run from another directory with only that folder on the path: a spec or piece
found through the checkout would not count.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    wheel_dir, target = base / "dist", base / "site"
    def pip(*argv: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", *argv], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]

    pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT))
    pip("install", "-q", "--no-deps", "--target", str(target), *map(str, wheel_dir.glob("*.whl")))
    return target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-m", "robo_player", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_wheel_ships_specs_pieces_and_model(installed: Path) -> None:
    pkg = installed / "robo_player"
    assert sorted(p.name for p in (pkg / "_shipped" / "hardware_specs").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "hardware_specs").glob("*.yaml"))
    assert (pkg / "_shipped" / "models" / "performance.pt").stat().st_size > 1_000_000
    assert (pkg / "data" / "pieces" / "bwv66.6.mid").is_file()


def test_installed_inspect_and_play_from_another_directory(installed: Path, tmp_path: Path) -> None:

    done = _run(installed, tmp_path, "inspect", "bwv66.6")
    assert done.returncode == 0, done.stderr
    assert "bwv66.6" in done.stdout or "notes" in done.stdout
    done = _run(installed, tmp_path, "play", "bwv66.6", "--spec", "piano-61-diy", "--report", "r.json")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["notes_in"] > 100
    # the code that ran is the installed copy, not the checkout
    probe = subprocess.run([sys.executable, "-c", "import robo_player; print(robo_player.__file__)"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                           capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(installed))


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler to build it")
def test_the_wheel_carries_the_c_fingering_search(installed: Path, tmp_path: Path) -> None:
    """With a compiler at build time the wheel holds the guitar search in C, built from
    the source it ships (their SHA-256 agree, so ``fingering`` loads it)."""
    probe = "from robo_player.planner import fingering as f; print(f._fingering_c and f._fingering_c.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "ROBO_PLAYER_PURE_PYTHON"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(installed)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(installed / "robo_player" / "planner" / "_fingering_c")), done.stdout
