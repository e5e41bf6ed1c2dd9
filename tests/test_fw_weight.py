"""The firmware's duty weight (``firmware/core/sched.c`` ``weight_of``): its fast paths
for pwm_max 255 and 4095 (``level >> (k - 8)`` and an 8 x 8 multiply, no long division;
issue 8, CPU load) give the 8-step long division's weight for every pwm_max and level,
so the duty bucket, and the model in ``robo_player/sim/vmcu.py`` that it must agree
with, see the same weights as before."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FW = Path(__file__).resolve().parents[1] / "firmware"

# sched.c built on its own with the host board's configuration: its board hooks stubbed
HARNESS = r"""
#include <stdio.h>
#include "sched.c"

uint32_t board_clock(void) { return 0; }
void board_timer_arm(uint32_t clock) { (void)clock; }
void board_wait_until(uint32_t clock) { (void)clock; }
void board_all_off(void) {}
void host_output_write(uint16_t actuator, uint16_t level) { (void)actuator, (void)level; }
void board_output_prepare(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t level, uint16_t pwm_max, rp_out_t *o)
{
    (void)actuator, (void)out_kind, (void)out_addr, (void)out_channel, (void)level;
    (void)pwm_max, (void)o;
}

/* the weight as the firmware computed it before the fast paths: r = level * 256 /
 * pwm_max by an 8-step long division, (r * r) >> 8, at most 255, at least 1 */
static uint8_t long_division(uint16_t den, uint16_t level)
{
    if (!level)
        return 0;
    uint16_t rem = level, r;
    if (rem >= den) {
        r = 256;
    } else {
        r = 0;
        for (uint8_t i = 0; i < 8; i++) {
            rem <<= 1;
            r <<= 1;
            if (rem >= den) {
                rem -= den;
                r |= 1;
            }
        }
    }
    uint16_t w = (uint16_t)(((uint32_t)r * r) >> 8);
    return (uint8_t)(w > 255 ? 255 : (w ? w : 1));
}

int main(void)
{
    long checked = 0, differ = 0;
    for (uint32_t den = 1; den <= 4095; den++)
        for (uint32_t level = 0; level <= 4200; level++) {
            uint8_t got = weight_of((uint16_t)den, (uint16_t)level);
            uint8_t want = long_division((uint16_t)den, (uint16_t)level);
            checked++;
            if (got != want && differ++ < 5)
                printf("pwm_max %u level %u: %u, long division %u\n", (unsigned)den,
                       (unsigned)level, got, want);
        }
    /* rp_weight (the main loop's, cached) gives the same */
    for (uint32_t level = 0; level <= 4095; level++)
        if (rp_weight(255, (uint16_t)(level & 255)) != long_division(255, (uint16_t)(level & 255)) ||
            rp_weight(4095, (uint16_t)level) != long_division(4095, (uint16_t)level) ||
            rp_weight(1000, (uint16_t)level) != long_division(1000, (uint16_t)level))
            differ++;
    printf("checked %ld differ %ld\n", checked, differ);
    return differ != 0;
}
"""


def test_duty_weight_fast_paths_equal_the_long_division(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc)")
    src = tmp_path / "weight.c"
    src.write_text(HARNESS)
    exe = tmp_path / "weight"
    subprocess.run(
        [cc, "-std=c99", "-O2", f"-I{FW / 'core'}", f"-I{FW / 'boards' / 'host'}", "-o", str(exe),
         str(src)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert "checked 17203095 differ 0" in out.stdout, out.stdout
