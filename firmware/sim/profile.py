# ruff: noqa: T201  (a command-line script: it prints its results)
"""Busy cycles per function from a ``robo_sim --profile`` file.

    .venv/bin/python firmware/sim/profile.py PROFILE_FILE [ELF] [TOP]

Maps every program address to the function that holds it (``avr-nm`` of the ELF,
default ``build/avr/robo_fw.elf``) and prints the functions by busy cycles, with their
share of all busy cycles.
"""

from __future__ import annotations

import bisect
import subprocess
import sys
from pathlib import Path

FW = Path(__file__).resolve().parents[1]


def symbols(elf: Path) -> list[tuple[int, int, str]]:
    """(start, size, name) of the text symbols, sorted by address."""
    out = subprocess.run(
        ["avr-nm", "-S", "-C", "--defined-only", str(elf)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            syms.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    return sorted(syms)


def main() -> None:
    prof = Path(sys.argv[1])
    elf = Path(sys.argv[2]) if len(sys.argv) > 2 else FW / "build/avr/robo_fw.elf"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    syms = symbols(elf)
    starts = [s[0] for s in syms]
    per: dict[str, int] = {}
    total = 0
    for line in prof.read_text().splitlines():
        pc_s, cyc_s = line.split()
        pc, cyc = int(pc_s, 16), int(cyc_s)
        total += cyc
        i = bisect.bisect_right(starts, pc) - 1
        name = "?"
        if i >= 0 and pc < syms[i][0] + max(syms[i][1], 2):
            name = syms[i][2]
        per[name] = per.get(name, 0) + cyc
    print(f"{total} busy cycles")
    for name, cyc in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * cyc / total:6.2f}%  {cyc:>10}  {name}")


if __name__ == "__main__":
    main()
