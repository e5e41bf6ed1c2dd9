# ruff: noqa: T201  (a command-line script: it prints its results)
"""Busy cycles per function from a ``robo_sim --profile`` file.

    .venv/bin/python firmware/sim/profile.py PROFILE_FILE [ELF] [TOP]

Maps every program address to the function that holds it (``avr-nm`` of the ELF,
default ``build/avr/robo_fw.elf``) and prints the functions by busy cycles, with their
share of all busy cycles, the calls (about: the cycles at the function's first
instruction over that instruction's cycles, from ``avr-objdump``; a loop back to the
entry counts as a call) and the cycles per call.
"""

from __future__ import annotations

import bisect
import re
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


# cycles of the instructions a function starts with (ATmega2560: 22-bit PC)
FIRST_CYCLES = {"push": 2, "lds": 2, "ld": 2, "ldd": 2, "mul": 2, "movw": 1, "mov": 1, "in": 1,
                "ldi": 1, "clr": 1, "eor": 1, "cli": 1, "sbrc": 1, "sbis": 1, "cpi": 1, "cp": 1,
                "tst": 1, "add": 1, "subi": 1, "sbiw": 2, "rjmp": 2, "jmp": 3, "call": 5,
                "reti": 5}


def first_instructions(elf: Path, starts: set[int]) -> dict[int, str]:
    """The mnemonic at each of ``starts``."""
    dis = subprocess.run(["avr-objdump", "-d", str(elf)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    out: dict[int, str] = {}
    for m in re.finditer(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*\t(\w+)", dis, re.M):
        a = int(m.group(1), 16)
        if a in starts and a not in out:
            out[a] = m.group(2)
    return out


def main() -> None:
    prof = Path(sys.argv[1])
    elf = Path(sys.argv[2]) if len(sys.argv) > 2 else FW / "build/avr/robo_fw.elf"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    syms = symbols(elf)
    starts = [s[0] for s in syms]
    per: dict[str, int] = {}
    entry: dict[str, float] = {}  # calls, from the cycles at the first instruction
    first = first_instructions(elf, set(starts))
    total = 0
    for line in prof.read_text().splitlines():
        pc_s, cyc_s = line.split()
        pc, cyc = int(pc_s, 16), int(cyc_s)
        total += cyc
        j = bisect.bisect_left(starts, pc)
        if j < len(starts) and starts[j] == pc and pc in first:
            entry[syms[j][2]] = cyc / FIRST_CYCLES.get(first[pc], 2)
        i = bisect.bisect_right(starts, pc) - 1
        name = "?"
        if i >= 0 and pc < syms[i][0] + max(syms[i][1], 2):
            name = syms[i][2]
        per[name] = per.get(name, 0) + cyc
    print(f"{total} busy cycles")
    print("  share      cycles   calls≈  cycles/call  function")
    for name, cyc in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        n = entry.get(name, 0.0)
        per_call = f"{cyc / n:11.0f}" if n >= 1 else f"{'-':>11}"
        print(f"{100 * cyc / total:6.2f}%  {cyc:>10}  {n:7.0f}  {per_call}  {name}")


if __name__ == "__main__":
    main()
