/* AVR build: ATmega2560 (Arduino Mega) at 16 MHz. RAM is 8 KiB: the queue and the
 * actuator table are sized to leave room for the stack (see `make avr`). */
#ifndef RP_BOARD_CONFIG_H
#define RP_BOARD_CONFIG_H

#include <avr/interrupt.h>
#include <avr/io.h>

#define RP_BOARD_NAME "avr-mega2560"

/* The clock (board.h): Timer1's overflows (main.c) << 16 | TCNT1. Inline in every caller
 * (issue 8: CPU load; about 6000 calls in driver_load.py's run, a call and return each). */
extern volatile uint16_t avr_clock_hi;
static inline uint32_t board_clock(void)
{
    uint8_t s = SREG;
    cli();
    union {
        uint32_t v;
        uint16_t w[2]; /* little-endian: w[0] low; no 32-bit shift */
    } c;
    c.w[1] = avr_clock_hi;
    c.w[0] = TCNT1;
    if ((TIFR1 & _BV(TOV1)) && c.w[0] < 0x8000)
        c.w[1]++; /* the overflow happened but its interrupt has not run yet */
    SREG = s;
    return c.v;
}
#define RP_CLOCK_HZ 16000000UL
#define RP_QUEUE_SIZE 104 /* 160 before the software PWM of out_pwm.c took 98 B; 156 before
                           * the step generators of out_step.c took 420 B; 124 before the
                           * deepest stack was measured at 767 B (Makefile:
                           * AVR_STACK_MEASURED); 111 before the servos of out_servo.c
                           * took 43 B (2 entries of 13 B); 109 before their holds
                           * (configure_servo: a press refused while a servo moves) took
                           * 54 B (4 entries) and the carriages' flag 1 B (1 entry) */
#define RP_FW_MAX_ACTUATORS 128 /* a guitar matrix: 126; the 88-key piano: 89 */
#define RP_FW_MAX_PROFILES 8  /* distinct limit sets (a piano uses 2 or 3) */
#define RP_RX_BUFFER 256 /* = the UART receive ring (a power of two) */
#define RP_MAX_ON_US_LIMIT 60000000UL
#define RP_FW_MAX_LEVEL 4095
#define RP_LATE_SLACK_US 500
#define RP_EVENT_RING 8
/* the compare interrupt fires early: 32 us, plus 60 us for each command due at that
 * clock (its decision and output lookups, measured in simavr: about 620 cycles, more
 * with the UART interrupts let in); then the core spins to the exact tick. Was 40 + 60.
 * Shorter leads cut the spin (20 + 62 with 50 us for a deadline: 0.5 points of CPU
 * load at 100 notes/s) but single strikes came up to 16 us late (bench_link's p99). */
/* 64: a three-note chord of soft-PWM levels takes 250-270 us from the interrupt to its
 * wait (simavr, UART traffic in between): 48 + 3 * 80 left 0-8 us, and a chord that
 * missed its wait came up to 9 us later than centred (20 us when each strike cost ~100
 * cycles more, c1ba130's board_output_busy prologue). 48 before; 32 before out_pwm.c
 * (a PWM interrupt may come in the decisions) */
#define RP_TIMER_LEAD_TICKS (64U * 16U)
#define RP_TIMER_LEAD_PER_CMD_TICKS (80U * 16U) /* 60 before out_pwm.c: its strike path (prepare) made 60 late by ~20 us */
/* a coil deadline first (a pulse end or a cutoff: no decision, one output; 50 us made
 * pulse ends 10-16 us late) */
#define RP_TIMER_LEAD_DEADLINE_TICKS (92U * 16U)
/* commands this close to the first one are decided with it: their outputs then need
 * only the wait and the port write (the bookkeeping of each comes after all of them) */
#define RP_BATCH_WINDOW_TICKS (120U * 16U)
/* cycles between two output writes of one clock: the centring's step (measured 127 at
 * e147bf1; the writes are 76 apart now, but 76 put a strike that shares its clock with
 * an earlier release 2.4 us late, not 0.8: driver_load.py's p99 2.8 us against 1.1) */
#define RP_OUTPUT_SPACING_TICKS 127U

/* PCA9685 boards on the TWI bus (I2C master, SCL on D21, SDA on D20).
 *
 * RP_TWI_HZ: the SCL rate (build constant, -DRP_TWI_HZ=...). 400 kHz is Fast-mode, what
 * both the ATmega2560 (its TWI characteristics stop at 400 kHz) and the PCA9685 are
 * specified for, with the usual 2.2-4.7 kOhm pull-ups on a short bus. The PCA9685 also
 * does Fast-mode Plus (1 MHz); the ATmega2560's TWI runs at 1 MHz with TWBR = 0 (SCL =
 * F_CPU / (16 + 2 TWBR)), outside its data sheet's rating: it takes strong pull-ups
 * (about 1 kOhm to 5 V: the 120 ns rise time of Fm+ with up to about 100 pF of bus,
 * six boards on short wires) and a check on a scope. */
#ifndef RP_TWI_HZ
#define RP_TWI_HZ 400000UL
#endif
#define RP_TWBR ((RP_CLOCK_HZ / RP_TWI_HZ - 16UL) / 2UL)
#if RP_CLOCK_HZ / RP_TWI_HZ < 16UL || RP_TWBR > 255UL
#error "RP_TWI_HZ: 31 kHz .. 1 MHz at 16 MHz (TWBR 0..255, no prescaler)"
#endif
#define RP_TWI_SCL_TICKS (16UL + 2UL * RP_TWBR) /* one SCL period, in CPU cycles */

/* A channel changes at the STOP of its write (MODE2.OCH = 0): every board written since
 * the last STOP takes its values at the next. The firmware chains each group of writes
 * due at one clock (a chord, a strike and another note's release) by repeated STARTs
 * into one STOP, and starts it early by the bus time it needs, so that the STOP comes
 * on that clock; the core queues PCA9685 commands RP_PCA_LEAD_TICKS early for it. The planner's model of a transaction of n data bytes,
 * from its start (or the end of the one before) to its STOP: START, SLA+W, register,
 * n bytes with their ACK, STOP, one interrupt per step (RP_TWI_STEP_TICKS, measured
 * under simavr), and between two transactions the bus-free time and the restart
 * (RP_TWI_GAP_TICKS). */
#define RP_TWI_STEP_TICKS 56UL
#define RP_TWI_GAP_TICKS (2UL * RP_TWI_SCL_TICKS + 720UL)
/* ... and in a chain (one STOP for a group, below) from a transaction's last ACK to the
 * next one's repeated START: compare B, its interrupt and the next transaction's build.
 * Fitted under simavr (firmware/sim/pca_check.py 64 12000 2 and 4: the mean error of
 * chords' changes near 0; RP_TWI_GAP_TICKS and a STOP per link put them 20 us early
 * per link, 400 ticks 17 us late) */
#define RP_TWI_CHAIN_GAP_TICKS 600UL
#define RP_PCA_XFER_TICKS(n) \
    ((20UL + 9UL * (n)) * RP_TWI_SCL_TICKS + (3UL + (n)) * RP_TWI_STEP_TICKS + 64UL)
/* enough to chain 8 two-byte writes (a chord of 8 on one bus) to one STOP, plus the
 * planning (one compare interrupt after the commit): 1.33 ms at 400 kHz, 0.6 ms at 1 MHz
 * (was half of that: the STOPs of a group were centred on its clock) */
#define RP_PCA_LEAD_TICKS \
    (800UL + RP_PCA_XFER_TICKS(2) + 7UL * (RP_PCA_XFER_TICKS(2) + RP_TWI_GAP_TICKS))
/* (the chain's own gap is shorter: the lead leaves it about 200 us to spare) */
/* A channel shows a new value only at the end of the PWM period running at its STOP
 * (0 .. 4096 (PRE_SCALE + 1) / 25 MHz later; the chip's own oscillator sets the grid,
 * which the firmware cannot see), so the STOPs are aimed half a period early: the
 * change then lands within half a period of its clock, either side (+-492 us at
 * 1017 Hz, +-328 us at 1526 Hz), plus how far the STOP misses its tick (the planner's
 * bus-time model against the bus: tens of us). */
extern uint8_t avr_pca_prescale;
#define RP_PCA_HALF_PERIOD_STEP_TICKS (RP_CLOCK_HZ / 1000000UL * 4096UL / 50UL) /* a PRE_SCALE step's */
#define RP_PCA_HALF_PERIOD_TICKS ((uint32_t)(avr_pca_prescale + 1U) * RP_PCA_HALF_PERIOD_STEP_TICKS)
#include "outputs.h"
/* direct pins change at their commit; other kinds: their hook (the PCA9685's lead) */
#define RP_OUTPUT_LEAD_TICKS(out_kind) ((out_kind) == RP_OUT_DIRECT ? 0U : avr_out_lead(out_kind))
uint32_t avr_pca_lead_ticks(void);
extern uint32_t avr_out_clock;
uint16_t board_output_errors(void);
#define RP_OUTPUT_ERRORS() board_output_errors()
#define RP_OUTPUT_AT(clock) (avr_out_clock = (clock))

void avr_pca_configured(uint8_t prescale);
#define RP_BOARD_CONFIGURED(pca_prescale) avr_pca_configured(pca_prescale)
#define AVR_OUT_PCA9685 1 /* = RP_OUT_PCA9685 (protocol_gen.h comes later; main.c checks) */
static inline void board_output_commit(const rp_out_t *o)
{
    if (!o->port) {
        if (o->kind != AVR_OUT_PCA9685) /* (a PCA9685 write was queued at its prepare) */
            avr_out_commit(o);          /* the kind's hook */
    }
    else if (o->on)
        *o->port |= o->mask;
    else
        *o->port &= (uint8_t)~o->mask;
}

typedef uint8_t rp_irq_t;
static inline rp_irq_t rp_irq_save(void)
{
    rp_irq_t s = SREG;
    cli();
    return s;
}
#define RP_IRQ_SAVE() rp_irq_save()
#define RP_IRQ_RESTORE(s) (SREG = (s))
/* The compare interrupt lets the UART and overflow interrupts in while it decides (they
 * touch none of the core's state; its own compare stays masked until it re-arms with
 * interrupts shut), so a batch of commands does not stall the line; the wait and the
 * port writes run with interrupts off. */
/* ... and the software PWM's interrupts (out_pwm.c) wait while the core waits for an
 * exact tick and writes: none delays an edge (a PWM edge comes late by up to the wait) */
/* (inline: every call of the timer context opens and closes a few times) */
#define AVR_PWM_HELD 0x80U
extern uint8_t avr_pwm_held; /* AVR_PWM_HELD, and TIMSK3's bits while held */
static inline void avr_pwm_hold(void)
{
    if (avr_pwm_held & AVR_PWM_HELD)
        return;
    avr_pwm_held = (uint8_t)(TIMSK3 | AVR_PWM_HELD);
    TIMSK3 = 0;
}
static inline void avr_pwm_release(void)
{
    if (!(avr_pwm_held & AVR_PWM_HELD))
        return;
    /* a match meanwhile: its flag waits */
    TIMSK3 = TCCR3B ? (uint8_t)(avr_pwm_held & ~AVR_PWM_HELD) : 0;
    avr_pwm_held = 0;
}
#define RP_TIMER_OPEN() do { avr_pwm_release(); sei(); } while (0)
#define RP_TIMER_CLOSE() do { cli(); avr_pwm_hold(); } while (0)

/* constant tables stay in flash */
#include <avr/pgmspace.h>
#define RP_TABLE PROGMEM
#define RP_TABLE_READ16(p) pgm_read_word(p)
#define RP_TABLE_READ8(p) pgm_read_byte(p)

#endif
