"""The planner and the calibrator never read the simulator's hidden truth.

Static: no module of ``robo_player/planner/``, ``robo_player/driver/`` nor
``robo_player/calibrator/`` imports ``robo_player.sim`` or anything named ``truth``
(the driver reaches the simulated devices only through the port registry's names).

Dynamic: the calibrator and the planner run against a real ``sim://`` device behind a
wrapper that exposes only ``play``, while every attribute read on a ``Truth`` or
``KeyTruth`` object from outside ``robo_player/sim/`` raises, and importing
``robo_player.sim`` (or any submodule) raises. Control tests show the guard catches a
calibrator that peeks, so the dynamic test can fail.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import robo_player
from robo_player.calibrator import calibrate_session
from robo_player.driver import Performance, open_port
from robo_player.plan import Plan
from robo_player.score import Note, Score
from robo_player.spec import load_spec
from robo_player.spec.calibration import Calibration

PKG = Path(robo_player.__file__).resolve().parent
SIM_DIR = PKG / "sim"


# the command lines may open a simulated device (``--truth-seed``): they are the app
APP_MODULES = {PKG / "cli.py", PKG / "__main__.py"}


def _guarded_modules() -> list[Path]:
    """Every module of every package but ``sim/`` (and the command lines): the planner,
    the driver, the calibrator, the hearing, live, the model, the spec, ... (issue 11)."""
    return sorted(
        p for p in PKG.glob("**/*.py")
        if SIM_DIR not in p.parents and p not in APP_MODULES
    )


def _bad_imports(path: Path, source: str | None = None) -> list[str]:
    """Imports of robo_player.sim or of anything named truth in the module at ``path``."""
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = ".".join(rel.parts[:-1])
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # resolve a relative import against this module's package
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(
            node.func, "attr", getattr(node.func, "id", "")
        ) in (
            "import_module",
            "__import__",
        ):
            names = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        for n in names:
            if n == "robo_player.sim" or n.startswith("robo_player.sim.") or "truth" in n.lower():
                found.append(f"{path.name}:{node.lineno}: {n}")
    return found


def test_guarded_modules_exist() -> None:
    mods = _guarded_modules()
    assert PKG / "calibrator" / "session.py" in mods
    assert any(p.parent.name == "planner" for p in mods)
    assert PKG / "driver" / "device.py" in mods and PKG / "driver" / "stream.py" in mods
    assert PKG / "hearing" / "detector.py" in mods and PKG / "calibrator" / "listening.py" in mods
    assert PKG / "live" / "cli.py" in mods and not any(SIM_DIR in p.parents for p in mods)


@pytest.mark.parametrize("path", _guarded_modules(), ids=lambda p: p.name)
def test_no_truth_import(path: Path) -> None:
    assert _bad_imports(path) == []


def test_static_check_catches_a_peeking_module() -> None:
    # parsed as if it were a planner module, so the relative imports resolve there
    src = "from ..sim.truth import Truth\nimport robo_player.sim\nfrom . import truthful\n"
    found = _bad_imports(PKG / "planner" / "probe.py", src)
    assert {f.split(":")[1] for f in found} == {"1", "2", "3"}, found
    assert "robo_player.sim.truth" in found[0]


# --- dynamic ------------------------------------------------------------------------------


class TruthAccessedError(AssertionError):
    pass


class OnlyPlay:
    """Exposes ``play`` (and records the calls) and nothing of the device behind it."""

    __slots__ = ("url", "calls", "__play")

    def __init__(self, device: Any) -> None:
        self.url = "only-play://"
        self.calls: list[int] = []
        self.__play: Callable[[Plan], Performance] = device.play

    def play(self, plan: Plan, progress: Any = None) -> Performance:
        self.calls.append(len(plan))
        return self.__play(plan)

    def close(self) -> None:
        pass


@contextmanager
def truth_sealed() -> Iterator[None]:
    """Inside: reading a Truth/KeyTruth attribute from outside robo_player/sim raises, and
    importing robo_player.sim.* raises (modules already loaded keep working for the sim)."""
    from robo_player.sim import truth as truth_mod

    def guard(cls: type) -> Callable[[Any, str], Any]:
        base = object.__getattribute__

        def getattribute(self: Any, name: str) -> Any:
            caller = Path(sys._getframe(1).f_code.co_filename).resolve()
            if SIM_DIR not in caller.parents and not name.startswith("__"):
                raise TruthAccessedError(f"{cls.__name__}.{name} read from {caller}")
            return base(self, name)

        return getattribute

    names = [n for n in sys.modules if n == "robo_player.sim" or n.startswith("robo_player.sim.")]
    with pytest.MonkeyPatch.context() as mp:
        for cls in (truth_mod.Truth, truth_mod.KeyTruth):
            mp.setattr(cls, "__getattribute__", guard(cls))
        for n in names:
            mp.setitem(sys.modules, n, None)  # `import robo_player.sim...` -> ImportError
        yield


@pytest.fixture(scope="module")
def spec():  # noqa: ANN201
    return load_spec("piano-88-grand")


def _small_score() -> Score:
    notes = [Note(60 + (i % 12), 200_000 * i, 150_000, 30 + 7 * (i % 12)) for i in range(24)]
    return Score(notes=notes)


def test_calibrator_and_planner_never_touch_truth(opened, spec) -> None:  # noqa: ANN001
    from robo_player.planner.piano import plan_piano

    # sim://'s default sensor, the room microphone: the calibration hears through the
    # detector (issue 11: truth isolation extends to the audio path)
    dev = opened(open_port("sim://", spec, truth_seed=5))
    wrapped = OnlyPlay(dev)
    with truth_sealed():
        cal, rep = calibrate_session(wrapped, spec, pitches=list(range(60, 72)), seed=5)
        plan, report = plan_piano(_small_score(), spec, cal)
        perf = wrapped.play(plan)  # the sim itself may read its truth
    assert wrapped.calls and rep.play_calls == len(wrapped.calls) - 1
    assert len(perf.heard) == len([o for o in report.outcomes if o.velocity_target is not None])
    assert isinstance(cal, Calibration) and cal.keys[60].strikes > 0


def test_guard_catches_a_calibrator_that_peeks(opened, spec) -> None:  # noqa: ANN001
    # sim://'s default sensor, the room microphone: the calibration hears through the
    # detector (issue 11: truth isolation extends to the audio path)
    dev = opened(open_port("sim://", spec, truth_seed=5))
    wrapped = OnlyPlay(dev)

    def peeking_via_device(device: Any) -> float:
        inner = device._OnlyPlay__play.__self__  # the bound method leads to the sim device
        return inner._truth.key(60).threshold

    def peeking_via_import(device: Any) -> float:
        from robo_player.sim.truth import Truth  # noqa: F401

        return 0.0

    with truth_sealed():
        with pytest.raises(TruthAccessedError, match="read from"):
            peeking_via_device(wrapped)
        with pytest.raises(ImportError):
            peeking_via_import(wrapped)
    # outside the guard the same peek works: the guard is what failed it
    assert 0.15 <= peeking_via_device(wrapped) <= 0.30


def test_sim_still_plays_under_the_guard(opened, spec) -> None:  # noqa: ANN001
    # the guard must not stop the simulator from reading its own truth
    from robo_player.plan import Command, Op

    dev = OnlyPlay(opened(open_port("sim://", spec, truth_seed=1)))
    with truth_sealed():
        key = spec.key(60)
        plan = Plan(
            [
                Command(0, Op.STRIKE, key.channel, key.pwm_max, spec.strike.default_pulse_us, 0, 0),
                Command(spec.strike.default_pulse_us, Op.RELEASE, key.channel),
            ],
            spec_name=spec.name,
            spec_hash=spec.spec_hash,
        )
        perf = dev.play(plan)
    assert [h.pitch for h in perf.heard] == [60]
