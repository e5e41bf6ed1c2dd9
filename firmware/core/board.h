/* The hooks a board gives the portable core. Only boards/ touch registers, files,
 * or the clock source. Each board also provides board_config.h with:
 *   RP_BOARD_NAME        "host" / "avr-mega2560"
 *   RP_CLOCK_HZ          clock ticks per second (a multiple of 1 MHz)
 *   RP_QUEUE_SIZE        command-queue slots
 *   RP_FW_MAX_ACTUATORS  actuators this build holds state for (<= RP_MAX_ACTUATORS)
 *   RP_FW_MAX_PROFILES   distinct limit sets a configuration may use (optional, 8)
 *   RP_RX_BUFFER         bytes the host may have in flight
 *   RP_MAX_ON_US_LIMIT   largest max_on_us a config may ask for
 *   RP_FW_MAX_LEVEL      highest PWM level the outputs take
 *   RP_LATE_SLACK_US     dispatch later than this after its clock = late
 *   RP_EVENT_RING        queued events (a power of two)
 *   RP_TIMER_LEAD_TICKS  the timer fires this early (plus RP_TIMER_LEAD_PER_CMD_TICKS
 *                        per command due at that clock); the core decides, then waits
 *   rp_out_t, board_output_commit(const rp_out_t *): a prepared output write
 *   rp_irq_t, RP_IRQ_SAVE(), RP_IRQ_RESTORE(s): critical sections against the timer
 *   RP_OUTPUT_LEAD_TICKS(out_kind) (optional, 0): how long after its commit an output
 *                        of that kind changes (a PCA9685 write over I2C): its commands
 *                        are queued that much early
 *   RP_OUTPUT_AT(clock) (optional): called before each board_output_commit() with the
 *                        queue clock it was due at (its command's clock, which is
 *                        RP_OUTPUT_LEAD_TICKS before the output's own time; for an
 *                        output the main loop writes at once: now minus that lead)
 *   RP_OUTPUT_ERRORS() (optional, 0): the output bus's faults since boot (a PCA9685
 *                        NACK, bus error, stuck bus, write-queue overflow; 16 bits,
 *                        saturating), reported in status.i2c_errors
 *   RP_TIMER_OPEN(), RP_TIMER_CLOSE() (optional): let the board's other interrupts in
 *                        while the timer context decides, and shut them out again
 *                        for its waits, port writes and re-arming
 *   RP_BOARD_CONFIGURED(pca_prescale) (optional): a configuration was applied; its
 *                        PCA9685 PRE_SCALE (boards of that kind: set up with it)
 *   RP_TABLE, RP_TABLE_READ16(p), RP_TABLE_READ8(p): where constant tables live and how
 *   to read them
 */
#ifndef RP_BOARD_H
#define RP_BOARD_H

#include <stdint.h>
#include "board_config.h"

/* The free-running clock, low 32 bits. Callable from the timer context too. */
uint32_t board_clock(void);

/* Call rp_timer() once the clock reaches `clock` (at once if it already has).
 * A later call replaces the earlier request. */
void board_timer_arm(uint32_t clock);

/* Busy-wait until the clock reaches `clock` (timer context; at most
 * RP_TIMER_LEAD_TICKS, which board_config.h sets: 0 where the timer is exact enough). */
void board_wait_until(uint32_t clock);

/* Drive one output in two steps: prepare (all the lookups) and, at the exact time,
 * board_output_commit(&o) (board_config.h: static inline, a few cycles). `level` 0 =
 * off, pwm_max = full on. Timer context, or the main loop in a critical section.
 * `out_kind` is the protocol's OutKind: a board keeps one entry of hooks per kind it
 * drives (boards/avr/outputs.h), so a new kind of output is a new entry there and a new
 * OutKind value in robo_player/protocol/messages.py; the core is not touched. */
/* RP_OUTPUT_AT(clock) (board_config.h, optional) gives the output's clock before its
 * prepare and again before its commit: a kind whose change is queued ahead anyway (the
 * AVR's PCA9685 writes) may queue it at prepare, outside the commit's interrupts-off
 * stretch (a prepared output is always committed). */
void board_output_prepare(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t level, uint16_t pwm_max, rp_out_t *o);

/* Every output off at once, as fast as the board can (interrupts off, a few
 * microseconds): the first step of all-off, watchdog and shutdown. The core then turns
 * each energised output off through board_output_commit() as well, so a board may
 * leave out the kinds it cannot switch quickly (or do nothing at all). */
void board_all_off(void);

/* 1 if this board can drive that output (0 for a kind it has no hooks for). */
uint8_t board_output_ok(uint8_t out_kind, uint8_t out_addr, uint8_t out_channel);

/* Positioners (protocol 5: schedule_move, RP_OP_MOVE). Timer context, when the move is
 * decided (up to the timer's lead before `clock`): start the actuator's output moving
 * to `position` (steps or counts of its travel) at `clock`. 1: taken (counted played);
 * 0: refused (counted refused, event REFUSED_MOVE). The core's default (a weak symbol
 * in core/sched.c) refuses every move: a board without positioners needs nothing. */
uint8_t board_output_move(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t position, uint32_t clock);

/* 1 if the board says this actuator must not start a strike pulse at `clock` (a press
 * whose carriage is still moving): the core refuses the strike (counted refused, event
 * REFUSED_BUSY). Timer context, when the strike is decided. Default (weak, sched.c): 0. */
uint8_t board_output_busy(uint16_t actuator, uint32_t clock);

/* configure_servo: the speed (us per us of pulse width) and settle (us) of the hobby
 * servo on direct output `channel` (configured as OutKind SERVO before): 1 taken, 0
 * refused (BAD_OUTPUT). Main loop, while configuring. Default (weak, sched.c): 0. */
uint8_t board_servo_rate(uint8_t channel, uint16_t us_per_width_us, uint16_t settle_us);

/* Queue bytes for the host (main-loop context only). */
void board_write(const uint8_t *data, uint16_t len);

/* u * w in full, in line (the duty bucket's weight, the AVR's PCA9685 lead): on the AVR
 * two MULs, where avr-gcc calls its 16x16 routine for the 32-bit C form. */
static inline uint32_t rp_mul_16x8(uint16_t u, uint8_t w)
{
#ifdef __AVR__
    uint32_t r;
    __asm__("clr %C0\n\t"
            "clr %D0\n\t"
            "mul %A1, %2\n\t"
            "mov %A0, r0\n\t"
            "mov %B0, r1\n\t"
            "mul %B1, %2\n\t"
            "add %B0, r0\n\t"
            "adc %C0, r1\n\t"
            "clr r1"
            : "=&r"(r)
            : "r"(u), "r"(w));
    return r;
#else
    return (uint32_t)u * w;
#endif
}

#endif
