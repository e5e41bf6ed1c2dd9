"""The firmware's step profile (firmware/boards/avr/out_step_profile.h) against
robo_player/motion.py: every step of random moves within 1 µs (they are one formula)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from robo_player.motion import move_steps

HEADER = Path(__file__).resolve().parents[1] / "firmware" / "boards" / "avr" / "out_step_profile.h"
CC = shutil.which("cc") or shutil.which("gcc")

MAIN = r"""
#include <stdio.h>
#include "out_step_profile.h"
int main(void) {
    unsigned n, v; unsigned long a;
    while (scanf("%u %u %lu", &n, &v, &a) == 3) {
        rp_step_profile p;
        rp_step_profile_init(&p, (uint16_t)n, (uint16_t)v, (uint32_t)a);
        for (unsigned k = 1; k <= n; k++)
            printf("%llu ", (unsigned long long)rp_step_time_us(&p, (uint16_t)k));
        printf("\n");
    }
    return 0;
}
"""


@pytest.mark.skipif(CC is None, reason="no C compiler")
def test_c_step_profile_equals_motion_py(tmp_path: Path) -> None:
    src = tmp_path / "prof.c"
    src.write_text(MAIN)
    exe = tmp_path / "prof"
    subprocess.run(
        [str(CC), "-std=c99", "-O2", "-Wall", "-Werror", f"-I{HEADER.parent}", str(src), "-o", str(exe)],
        check=True,
    )
    rng = random.Random(7)
    moves = [(4095, 27_920, 465_000), (1, 100, 1000), (2, 65535, (1 << 24) - 1), (65535, 65535, 3)]
    moves += [(rng.randint(0, 5000), rng.randint(1, 65535), rng.randint(1, (1 << 24) - 1)) for _ in range(60)]
    out = subprocess.run(
        [str(exe)], input="".join(f"{n} {v} {a}\n" for n, v, a in moves),
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(out) == len(moves)
    for (n, v, a), line in zip(moves, out, strict=True):
        c_times = np.array([int(x) for x in line.split()], dtype=np.int64)
        py_times = move_steps(0, n, 0, v, a)
        assert len(c_times) == n
        if n:
            assert np.max(np.abs(c_times - py_times)) <= 1, (n, v, a)
