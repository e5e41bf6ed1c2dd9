"""docs/hardware.md: its numbers are the specs' (issue 9 §9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from robo_player.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hardware.md"


def test_hardware_doc_tables_match_the_specs() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_hardware_doc.py"), "--check"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_hardware_doc_names_the_spec_figures_and_shows_the_diagrams() -> None:
    text = DOC.read_text()
    for name in ("piano-61-diy", "piano-88-grand"):
        sp = load_spec(name)
        p = sp.power
        coil_a = p.supply_v / p.coil_ohm
        assert f"{p.supply_v:g} V, {p.supply_a:g} A" in text
        assert f"{p.coil_ohm:g} ohm: {coil_a:g} A" in text
        assert f"{p.max_simultaneous_strikes} pulses at once: {p.max_simultaneous_strikes * coil_a:g} A" in text
        png = ROOT / "docs" / f"wiring-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(wiring-{name}.png)" in text
    for word in ("flyback", "fuse", "MOSFET", "star", "OE", "microphone", "Flash", "Identify",
                 "One key", "Calibrate", "Play"):  # fmt: skip
        assert word in text, word


def test_bring_up_names_a_command_that_lists_serial_ports() -> None:
    """`robo-player ports` lists MIDI inputs (for `live`), not the board's serial port."""
    text = " ".join(DOC.read_text().split())
    assert "`robo-player ports` lists the serial ports" not in text
    assert "python -m serial.tools.list_ports" in text
    r = subprocess.run([sys.executable, "-m", "serial.tools.list_ports"], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr  # 1: no ports found; the command exists either way
