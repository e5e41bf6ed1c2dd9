"""The numbers and wiring diagrams of docs/hardware.md, from the shipped specs.

    .venv/bin/python scripts/make_hardware_doc.py          # rewrite tables and PNGs
    .venv/bin/python scripts/make_hardware_doc.py --check  # tables up to date? (a test)

Every figure in the tables between ``<!-- numbers:SPEC -->`` and ``<!-- /numbers -->``
comes from the spec (supply, coil resistance, strike limits, hold duty, boards), by the
same rules the planner uses (robo_player/planner/power.py): a coil draws
``supply_v / coil_ohm`` at full drive, at most ``max_simultaneous_strikes`` pulses run
at once, and a held key draws ``hold_duty`` of its full current. Part ratings are the
usual margins over those: MOSFET and diode voltage >= 2x the supply, MOSFET current
>= 2x a coil's, main fuse 1.25x the supply's limit (rounded up to a standard value).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "hardware.md"
SPECS = ("piano-61-diy", "piano-88-grand")
FUSES_A = (1, 2, 3, 4, 5, 7.5, 10, 15, 20, 25, 30, 35, 40, 50, 60, 70, 80, 100)


def _fuse(a: float) -> float:
    return next(f for f in FUSES_A if f >= a)


def numbers(name: str) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from robo_player.spec import load_spec

    sp = load_spec(name)
    p, s = sp.power, sp.strike
    coil_a = p.supply_v / p.coil_ohm
    peak_a = p.max_simultaneous_strikes * coil_a
    hold_a = s.hold_duty * coil_a
    kinds = sorted({b.kind.value if hasattr(b.kind, "value") else str(b.kind) for b in sp.boards})
    return {
        "spec": sp.name,
        "keys": len(sp.keys),
        "pedal": sp.pedal is not None,
        "boards": len(sp.boards),
        "board_kind": "/".join(kinds),
        "pwm_hz": sp.boards[0].pwm_hz,
        "pwm_bits": sp.boards[0].pwm_bits,
        "i2c": [hex(b.i2c_address) for b in sp.boards if getattr(b, "i2c_address", None)],
        "outputs": len(sp.keys) + (1 if sp.pedal is not None else 0),
        "supply_v": p.supply_v,
        "supply_a": p.supply_a,
        "coil_ohm": p.coil_ohm,
        "coil_a": round(coil_a, 2),
        "coil_w": round(coil_a * p.supply_v, 1),
        "max_strikes": p.max_simultaneous_strikes,
        "peak_a": round(peak_a, 2),
        "hold_duty": s.hold_duty,
        "hold_a": round(hold_a, 2),
        "holds_beside_peak": max(0, math.floor((p.supply_a - peak_a) / hold_a + 1e-9)),
        "supply_w": round(p.supply_v * p.supply_a),
        "mosfet_v": math.ceil(2 * p.supply_v),
        "mosfet_a": math.ceil(2 * coil_a),
        "diode_v": math.ceil(2 * p.supply_v),
        "diode_a": math.ceil(coil_a),
        "fuse_a": _fuse(1.25 * p.supply_a),
        "max_on_s": sp.thermal.max_on_us / 1e6,
        "watchdog_ms": sp.thermal.watchdog_ms,
        "max_pulse_ms": s.max_pulse_us / 1000,
    }


def table(n: dict[str, object]) -> str:
    rows = [
        ("keys (outputs)", f"{n['keys']} ({n['outputs']} with the pedal)" if n["pedal"]
         else f"{n['keys']}"),
        ("driver boards", f"{n['boards']} x {n['board_kind']}"
         + (f" at I2C {', '.join(n['i2c'])}" if n["i2c"] else "")),  # type: ignore[arg-type]
        ("PWM", f"{n['pwm_bits']}-bit at {n['pwm_hz']} Hz"),
        ("supply", f"{n['supply_v']:g} V, {n['supply_a']:g} A ({n['supply_w']} W)"),
        ("coil", f"{n['coil_ohm']:g} ohm: {n['coil_a']:g} A, {n['coil_w']:g} W at full drive"),
        ("strike peak", f"{n['max_strikes']} pulses at once: {n['peak_a']:g} A "
         f"(pulse up to {n['max_pulse_ms']:g} ms)"),
        ("hold", f"{n['hold_duty']:g} duty: {n['hold_a']:g} A per held key; "
         f"{n['holds_beside_peak']} held keys fit beside a full strike peak"),
        ("MOSFET (one per output)", f"logic-level N-channel, >= {n['mosfet_v']} V, "
         f">= {n['mosfet_a']} A"),
        ("flyback diode (one per coil)", f">= {n['diode_v']} V, >= {n['diode_a']} A "
         "(fast/Schottky)"),
        ("main fuse", f"{n['fuse_a']:g} A slow-blow, in the supply's + lead"),
        ("firmware limits", f"max on-time {n['max_on_s']:g} s per coil; all off "
         f"{n['watchdog_ms']} ms after the host goes silent"),
    ]
    out = ["| | " + str(n["spec"]) + " |", "|---|---|"]
    out += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


def render_doc(text: str) -> str:
    for name in SPECS:
        pat = re.compile(rf"(<!-- numbers:{re.escape(name)} -->\n)[^<]*(<!-- /numbers -->)")
        if not pat.search(text):
            raise SystemExit(f"{DOC}: no <!-- numbers:{name} --> ... <!-- /numbers --> block")
        text = pat.sub(lambda m, n=name: m.group(1) + table(numbers(n)) + "\n" + m.group(2), text)
    return text


def _box(ax: object, x: float, y: float, w: float, h: float, label: str, color: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", fc=color,  # type: ignore[attr-defined]
                                ec="black", lw=1.2))  # fmt: skip
    ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.5, wrap=True)  # type: ignore[attr-defined]


def _wire(ax: object, pts: list[tuple[float, float]], color: str, label: str = "") -> None:
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, color=color, lw=2)  # type: ignore[attr-defined]
    if label:
        mx, my = pts[len(pts) // 2]
        ax.text(mx, my + 0.12, label, fontsize=7, color=color, ha="center")  # type: ignore[attr-defined]


def draw(name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = numbers(name)
    pca = "pca9685" in str(n["board_kind"])
    fig, ax = plt.subplots(figsize=(11, 6.2), dpi=110)
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 6.4)
    ax.axis("off")
    ax.set_title(f"{name}: wiring of one output (repeat x{n['outputs']}); numbers from the spec",
                 fontsize=11)  # fmt: skip
    _box(ax, 0.2, 4.6, 1.6, 1.0, "host PC\nrobo-player", "#dde7f5")
    _box(ax, 2.4, 4.4, 2.0, 1.4, "Arduino Mega 2560\n(robo_fw)", "#cfe8cf")
    _wire(ax, [(1.8, 5.1), (2.4, 5.1)], "black", "USB")
    _box(ax, 0.2, 2.8, 1.6, 0.9, "USB microphone\n(calibrate --mic)", "#f5e6c8")
    _wire(ax, [(1.0, 3.7), (1.0, 4.6)], "#8a6d00", "USB")
    if pca:
        _box(ax, 5.0, 4.4, 2.0, 1.4, f"{n['boards']} x PCA9685\nI2C {n['i2c'][0]}..{n['i2c'][-1]}",  # type: ignore[index]
             "#e6d5f0")  # fmt: skip
        _wire(ax, [(4.4, 5.4), (5.0, 5.4)], "#5b2c83", "SDA D20")
        _wire(ax, [(4.4, 5.0), (5.0, 5.0)], "#5b2c83", "SCL D21")
        _wire(ax, [(4.4, 4.6), (5.0, 4.6)], "#b00000", "OE: 10k pull-up to 5V")
        src = (7.0, 5.0)
        ax.text(5.1, 4.15, "outputs 0..15 per board", fontsize=7)
    else:
        src = (4.4, 5.0)
        ax.text(2.5, 4.15, "pins D2..D19, D22..D69 (firmware/boards/avr/pins.h)", fontsize=7)
    # one output stage: +V -> coil (diode across it, cathode to +V) -> drain; source -> ground
    _box(ax, 7.6, 3.6, 1.5, 0.9, f"MOSFET\n>= {n['mosfet_v']} V, {n['mosfet_a']} A", "#f0f0f0")
    _wire(ax, [src, (7.3, src[1]), (7.3, 4.05), (7.6, 4.05)], "#1f5fbf", "gate 220 ohm")
    ax.text(7.55, 3.35, "100k gate to GND", fontsize=7)
    _box(ax, 7.75, 5.0, 1.2, 0.8, f"solenoid\n{n['coil_ohm']:g} ohm, {n['coil_a']:g} A", "#fde2e2")
    _box(ax, 9.4, 5.0, 1.2, 0.8, f"flyback diode\n>= {n['diode_v']} V\ncathode to +V", "#fff6cc")
    _wire(ax, [(8.35, 4.5), (8.35, 5.0)], "black", "")
    _wire(ax, [(8.35, 4.75), (10.0, 4.75), (10.0, 5.0)], "black", "")
    _wire(ax, [(8.35, 5.8), (8.35, 6.1), (10.0, 6.1), (10.0, 5.8)], "#d00000", "")
    # supply and grounds
    _box(ax, 7.6, 0.5, 2.2, 1.2, f"coil supply\n{n['supply_v']:g} V {n['supply_a']:g} A\n"
         f"fuse {n['fuse_a']:g} A in +", "#ffd9b3")  # fmt: skip
    _wire(ax, [(9.8, 1.4), (10.9, 1.4), (10.9, 6.1), (10.0, 6.1)], "#d00000", "+V")
    _box(ax, 3.0, 0.5, 2.6, 1.0, "star ground point\n(one thick return per bank)", "#e0e0e0")
    _wire(ax, [(5.6, 0.8), (7.6, 0.8)], "black", "supply -")
    _wire(ax, [(8.35, 3.6), (8.35, 3.0), (6.5, 3.0), (6.5, 1.2), (5.6, 1.2)], "black",
          "sources")  # fmt: skip
    _wire(ax, [(3.4, 1.5), (3.4, 4.4)], "black", "logic GND")
    if pca:
        _wire(ax, [(6.0, 1.5), (6.0, 4.4)], "black", "")
    ax.text(0.2, 0.15, f"strike peak {n['peak_a']:g} A ({n['max_strikes']} at once); hold "
            f"{n['hold_a']:g} A per key; firmware: all off {n['watchdog_ms']} ms after the host "
            "goes silent, coils cut after max on-time", fontsize=8)  # fmt: skip
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description="docs/hardware.md tables and wiring PNGs")
    ap.add_argument("--check", action="store_true", help="only check the tables are current")
    args = ap.parse_args()
    text = DOC.read_text()
    new = render_doc(text)
    if args.check:
        if new != text:
            print(f"{DOC}: numbers differ from the specs; run scripts/make_hardware_doc.py")
            return 1
        print(f"{DOC}: numbers match the specs")
        return 0
    DOC.write_text(new)
    for name in SPECS:
        out = ROOT / "docs" / f"wiring-{name}.png"
        draw(name, out)
        print(f"wrote {out}")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
