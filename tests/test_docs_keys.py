"""Issue 9 §2 and §8: the README lists every extra pyproject.toml declares, and
docs/report.md names every key the report writes inside its objects (``plan``,
``link``, ``reconciliation``...), not only the top-level ones (tests/test_cli.py)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from robo_player.cli import main
from robo_player.midi import bundled_pieces

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    assert extras, "pyproject.toml declares no extras"
    missing = sorted(name for name in extras if f"`.[{name}]`" not in readme)
    assert not missing, f"README.md does not list the extras {missing}"


def _row(doc: str, key: str) -> str:
    """The docs/report.md table row whose first cell names ``key``."""
    for line in doc.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and f"`{key}`" in cells[1]:
            return line
    raise AssertionError(f"docs/report.md has no row for `{key}`")


def test_report_md_names_the_keys_inside_each_object(tmp_path: Path) -> None:
    small_piece = min(bundled_pieces(), key=lambda p: p.stat().st_size)
    doc = (ROOT / "docs" / "report.md").read_text()
    rep = tmp_path / "r.json"
    assert main(["-q", "play", str(small_piece), "--port", "vmcu://", "--report", str(rep)]) == 0
    report = json.loads(rep.read_text())
    objects = {k: v for k, v in report.items() if isinstance(v, dict)}
    assert {"plan", "link", "reconciliation", "firmware_counts"} <= set(objects)
    missing = []
    for parent, value in objects.items():
        row = _row(doc, parent)
        missing += [f"{parent}.{k}" for k in value if not re.search(rf"\b{k}\b", row)]
    assert not missing, f"docs/report.md does not name {missing}"
