"""The import graph runs one way (issue 8, §6).

Source (``score``, ``midi``, ``model``) → ``planner`` → ``plan`` → ``driver`` → firmware
(``protocol``), with ``sim/`` on the device side. A module may import the stages before
it, never the ones after it: the planner never imports a driver or the simulator, the
driver never imports the simulator, the planner, MIDI or the model, the protocol imports
nothing of the others, a spec imports nothing above it, and the simulator (a device, on
the far side of the driver) sees the plan, the spec, the neutral types (``performance``,
``actuation``), the protocol and the driver, never the planner, a source, the report or
the CLI.

Every ``import`` in every module of ``robo_player/`` counts, inside functions and
``TYPE_CHECKING`` blocks too, and ``importlib.import_module("...")`` with a literal name.
Each module belongs to a *unit*: its top-level module or subpackage of ``robo_player``
(``robo_player.driver.fw`` is in ``driver``). :data:`ALLOWED` says which units each unit
may import; a unit not in the table fails the test until it is placed in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import robo_player

PKG = Path(robo_player.__file__).resolve().parent
ROOT = "robo_player"

# Small utilities any unit may import; they import only each other.
UTIL = frozenset(
    {"errors", "pitch", "fileio", "progress", "matching", "resources", "motion", "voicing", "servo",
     ROOT}
)

ALLOWED: dict[str, frozenset[str]] = {
    # utilities and neutral types
    ROOT: frozenset(),  # the package itself: __version__ only, so importing it is cheap
    "errors": frozenset(),
    "pitch": frozenset(),
    "progress": frozenset(),
    "matching": frozenset(),
    "resources": frozenset(),  # where the shipped specs, pieces and model are
    "motion": frozenset(),  # a positioner's step profile (planner, simulator, driver)
    "voicing": frozenset(),  # how loud a note of a velocity sounds (synthesis and hearing)
    "servo": frozenset(),  # a hobby servo's pulse rule (spec, simulator, firmware model)
    "fileio": frozenset({"errors"}),
    "performance": UTIL,  # what a device reports: neutral ground for host and device side
    # sources
    "score": UTIL,
    "midi": UTIL | {"score"},
    "spec": UTIL,
    # the model is a source; it asks the planner what is playable while it generates
    "model": UTIL | {"score", "midi", "spec", "plan", "planner"},
    # planning
    "plan": UTIL | {"spec"},
    "rules": UTIL | {"spec", "plan"},
    "planner": UTIL | {"score", "spec", "plan", "rules"},
    "actuation": UTIL | {"spec", "plan", "performance"},  # what a plan op does to an output
    # the calibrator plans test strikes and plays them through the Device interface
    "calibrator": UTIL | {"spec", "plan", "rules", "planner", "performance", "driver", "hearing"},
    # hearing: onsets and loudness in audio, clock alignment, microphones, verify (host side)
    "hearing": UTIL | {"spec", "plan", "performance", "driver", "report", "planner", "fileio"},
    # live input is a source next to the planner: it plans each MIDI message as it arrives
    # and streams the commands through the Device interface (driver.ports), never sim;
    # call and response generates with the model, --report writes the file report's keys
    "live": UTIL
    | {"score", "midi", "spec", "plan", "rules", "planner", "performance", "driver", "model"}
    | {"report"},
    # device side
    "protocol": UTIL,
    "driver": UTIL | {"spec", "plan", "rules", "performance", "actuation", "protocol"},
    # the simulator is a device: it implements the driver's interfaces and may put the
    # driver's host side in front of a simulated MCU (fw-host://, vmcu://); the driver
    # never imports it (the registry names it by string), nor does anything above
    "sim": UTIL | {"spec", "plan", "rules", "performance", "actuation", "motion", "protocol",
                   "driver"},
    # host application: judges a performance, runs everything
    "report": UTIL | {"spec", "plan", "planner", "performance", "driver"},
    # pieces of the command line kept out of cli.py (help, sensor check, simulated piano)
    "cli_options": UTIL | {"driver"},
    "cli": frozenset(),  # filled in below: the command line may import every unit
}
ALLOWED["cli"] = frozenset(ALLOWED) - {"cli"}
ALLOWED["__main__"] = frozenset({"cli"})  # ``python -m robo_player``

# Known edges against the direction, allowed for now and only these: pairs of
# (importing module, imported module). None remain: the driver's firmware ports used to
# run the simulator's physics themselves (driver/fw.py imported sim.physics, sim.sensor
# and sim.truth) until the simulated instrument moved to sim/ (issue 8 §4). The test
# fails on an entry that no longer exists, so the list only shrinks.
TEMPORARY: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel).is_dir()


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, imported robo_player module) for every import in the module at ``path``."""
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: against this module's package
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond {ROOT}")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                names.append(sub if _is_module(sub) else base)  # a submodule, or a name in base
        elif isinstance(node, ast.Call) and getattr(
            node.func, "attr", getattr(node.func, "id", "")
        ) in ("import_module", "__import__"):
            names = [
                a.value for a in node.args[:1]
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        found += [(node.lineno, n) for n in names if n == ROOT or n.startswith(ROOT + ".")]
    return list(dict.fromkeys(found))  # one entry per (line, module)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def violations(path: Path, source: str | None = None) -> list[str]:
    """Imports in ``path`` against :data:`ALLOWED`, less the :data:`TEMPORARY` edges."""
    me = module_name(path)
    mine = unit_of(me)
    if mine not in ALLOWED:
        return [f"{me}: unit {mine!r} is not in tests/test_imports.py's ALLOWED table; "
                "place it in the import direction there"]
    bad = []
    for line, target in imports_of(path, source):
        theirs = unit_of(target)
        if theirs == mine or theirs in ALLOWED[mine] or (me, target) in TEMPORARY:
            continue
        bad.append(f"{path.relative_to(PKG.parent)}:{line}: {me} ({mine}) imports {target} "
                   f"({theirs}); {mine} may import only: {', '.join(sorted(ALLOWED[mine]))}")
    return bad


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_run_one_way(path: Path) -> None:
    assert violations(path) == []


def test_temporary_edges_still_exist() -> None:
    # a removed edge must leave the list, so the list only shrinks
    edges = {(module_name(p), t) for p in MODULES for _, t in imports_of(p)}
    stale = sorted(TEMPORARY - edges)
    assert stale == [], f"remove from TEMPORARY (no longer imported): {stale}"


def test_the_table_has_no_cycle() -> None:
    # "one way": no unit can reach itself through the allowed edges
    def reach(u: str, seen: set[str]) -> set[str]:
        for v in ALLOWED[u] - {u}:
            if v not in seen:
                seen.add(v)
                reach(v, seen)
        return seen

    for u in ALLOWED:
        assert u not in reach(u, set()), f"{u} can reach itself through ALLOWED"
    assert all(v in ALLOWED for vs in ALLOWED.values() for v in vs)


@pytest.mark.parametrize(
    ("unit", "forbidden"),
    [
        ("planner", {"driver", "sim", "cli", "model", "midi", "report", "calibrator"}),
        ("driver", {"sim", "planner", "midi", "model", "score", "cli", "report", "calibrator"}),
        ("sim", {"planner", "cli", "model", "midi", "score", "report", "calibrator"}),
        ("protocol", set(ALLOWED) - UTIL - {"protocol"}),
        ("spec", set(ALLOWED) - UTIL - {"spec"}),
        ("plan", {"planner", "driver", "sim", "protocol", "score", "midi", "model"}),
        ("calibrator", {"sim", "cli", "model", "midi", "report"}),
    ],
)
def test_the_direction_the_issue_names(unit: str, forbidden: set[str]) -> None:
    assert not (ALLOWED[unit] & forbidden)


def test_every_module_is_in_a_known_unit() -> None:
    units = {unit_of(module_name(p)) for p in MODULES}
    assert units <= set(ALLOWED), sorted(units - set(ALLOWED))
    assert {"planner", "driver", "sim", "protocol", "spec", "plan", "calibrator"} <= units


@pytest.mark.parametrize(
    ("where", "source", "expect"),
    [
        # a planner that reaches for the driver, at module level and inside a function
        ("planner/probe.py", "from ..driver.ports import Device\n", ["robo_player.driver.ports"]),
        ("planner/probe.py", "def f():\n    from ..sim import physics\n", ["robo_player.sim.physics"]),
        ("planner/probe.py", "import robo_player.sim.truth as t\n", ["robo_player.sim.truth"]),
        ("planner/probe.py", "import importlib\nimportlib.import_module('robo_player.driver.fw')\n",
         ["robo_player.driver.fw"]),
        # the driver may not import the simulator, the planner or MIDI
        ("driver/probe.py", "from .. import midi\nfrom ..planner import plan_piano\n",
         ["robo_player.midi", "robo_player.planner"]),
        ("driver/probe.py", "from ..sim.vmcu import VMcu\n", ["robo_player.sim.vmcu"]),
        # the protocol imports nothing of the others; a spec nothing above it
        ("protocol/probe.py", "from ..plan import Plan\n", ["robo_player.plan"]),
        ("spec/probe.py", "from ..planner.piano import x\n", ["robo_player.planner.piano"]),
        # the simulator may not import the planner, the model or the CLI
        ("sim/probe.py", "from ..model.generate import x\n", ["robo_player.model.generate"]),
        ("sim/probe.py", "from ..planner import plan\nfrom ..cli import main\n",
         ["robo_player.planner", "robo_player.cli"]),
        # allowed: the driver reads plans and specs, the simulator the neutral types
        ("driver/probe.py", "from ..plan import Plan\nfrom ..spec.model import PianoSpec\n", []),
        ("sim/probe.py", "from ..performance import Performance\nfrom ..fileio import write_text\n",
         []),
    ],
)
def test_the_check_catches_imports_against_the_direction(
    where: str, source: str, expect: list[str]
) -> None:
    found = violations(PKG / where, source)
    assert len(found) == len(expect), found
    for line, target in zip(found, expect, strict=True):
        assert f"imports {target} " in line and "may import only" in line


def test_the_package_root_imports_nothing() -> None:
    # everyone may import robo_player itself because it pulls in nothing
    assert imports_of(PKG / "__init__.py") == []
