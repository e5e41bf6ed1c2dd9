/* Software PWM on the AVR's direct pins (out_pwm.c). */
#ifndef RP_AVR_OUT_PWM_H
#define RP_AVR_OUT_PWM_H

#include <stdint.h>

#include "outputs.h"

/* The period: Timer3 at 2 MHz (clk/8), CTC at RP_SOFT_PWM_TOP: 2e6 / 4082 = 489.95 Hz
 * (what piano-61-diy's direct board says: pwm_hz 490). A level L of pwm_max is on for
 * floor(L * floor(TOP * 256 / pwm_max) / 256) ticks of each period.
 * robo_player/driver/trace.py SOFT_PWM_HZ mirrors RP_SOFT_PWM_HZ (a test reads it). */
#define RP_SOFT_PWM_HZ 490
#define RP_SOFT_PWM_TOP (2000000UL / RP_SOFT_PWM_HZ - 1UL)
#define AVR_PWM_GROUPS 5  /* distinct partial levels at once: 4 strikes + a hold (then: the nearest) */
#define AVR_PWM_PENDING 5 /* strikes prepared and not yet seen high (then: joined at once) */

/* direct_prepare(): after the port (number `port`), mask and on of the pin are filled in. If
 * the pin is (or was) at a partial level: its group changed (and, for a change between
 * partial levels, o->port points at a spare register: no edge at the clock). Timer
 * context or the main loop. */
void avr_pwm_prepare(uint8_t channel, uint8_t port, uint16_t level, uint16_t pwm_max, rp_out_t *o);
/* A pin at a partial level, or a strike waiting to join: avr_pwm_prepare() is needed
 * for every level (direct_prepare asks first; off and full on need nothing else). */
extern uint8_t avr_pwm_used, avr_pwm_npend;
#define avr_pwm_running() (avr_pwm_used | avr_pwm_npend)
/* Interrupts off: the timer stops and no pin is at a partial level any more (the
 * caller switches the pins off). */
void avr_pwm_all_off(void);
/* RP_TIMER_CLOSE() / RP_TIMER_OPEN() (board_config.h): the PWM's interrupts wait while
 * the core waits for an exact tick and writes its outputs, so that none delays an edge
 * (a PWM edge comes late by up to that wait: the trace shows it, the period grid
 * absorbs it): avr_pwm_hold() and avr_pwm_release(), inline there. Both may be called
 * again: a second hold or release does nothing. */
extern uint16_t avr_pwm_merges; /* levels that found no free group (took the nearest) */

#endif
