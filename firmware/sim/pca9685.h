/* PCA9685 model for the simavr harness: I2C slaves on the AVR's TWI bus.
 *
 * Each board keeps the chip's register file (MODE1/MODE2, LEDn_ON/OFF_L/H, ALL_LED_*,
 * PRE_SCALE, the sub- and all-call addresses) and answers its own 7-bit address, and
 * the all-call/sub-addresses while MODE1 enables them. A channel's effective output
 * (its duty in 1/4096, 4096 = full on) is worked out from the registers they latch at
 * the STOP (MODE2.OCH = 0, the power-on default) or at the ACK of the channel's last
 * register (OCH = 1), and shows at the end of the PWM period running then. Every change
 * is handed to the harness's callback with the cycle it shows at. */
#ifndef RP_SIM_PCA9685_H
#define RP_SIM_PCA9685_H

#include <stdint.h>
#include <stdio.h>

#include "sim_avr.h"

#define PCA9685_MAX_BOARDS 64 /* 7-bit addresses 0x40..0x7F */

/* A channel's effective output changed: duty 0 (off) .. 4096 (full on). */
typedef void (*pca9685_change_fn)(uint8_t addr, uint8_t channel, uint16_t duty, uint64_t cycle);

/* Boards at `addrs` (7-bit) on the TWI bus of `avr`. `log`: when not NULL, one comment
 * line per bus event ("# i2c <cycle> <event> ..."). 0 on success. */
int pca9685_attach(avr_t *avr, const uint8_t *addrs, int n, pca9685_change_fn on_change,
                   FILE *log);

/* Re-arm the period-end timer (an MCU reset drops simavr's cycle timers). */
void pca9685_rearm(void);

/* Exit summary: "# pca9685 ..." lines (transactions, bytes, NACKs, bus errors, per
 * board its MODE1/MODE2, prescale and PWM frequency, channels left on). */
void pca9685_report(FILE *f);

#endif
