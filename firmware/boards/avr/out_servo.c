/* Hobby-servo positioners on the AVR board (OutKind SERVO; docs/guitar.md, "Hobby-servo
 * carriages"): the pulse train of out_servo_gen.h on any direct output.
 *
 * A servo actuator's configuration (robo_player/driver/config.py): out_channel = its
 * direct output (boards/avr/pins.h), out_addr = the presser on its carriage, pwm_max =
 * max_drive = the travel (counts), max_pulse_us = the width at 0 (pulse_min_us),
 * max_on_us = the width at the travel (pulse_max_us).
 *
 * Timing: one compare channel sequences every servo (up to RP_SERVOS, a slot of 2.5 ms
 * each in the 20 ms frame). Timer4 (free: Timer1 is the clock, Timer3 the software PWM,
 * Timer5 the steps) counts the CPU clock. A rise's compare fires RP_SERVO_RISE_LEAD
 * before its tick (a rise entered later is made late: the pulse moves, its width does
 * not); a fall's fires RP_SERVO_LEAD before it; each spins with interrupts off on
 * Timer1's count (the clock's low word) to its tick (a fall's: the rise's actual tick
 * plus the width), as the step pass spins to a step: the width is exact unless the
 * fall's interrupt waits longer than its lead for another's interrupts-off stretch. The
 * spins stay closed: a wait with interrupts on let the core's timer nest into it and
 * hold the edge for as long as the core waited for its own outputs (falls up to 944 us
 * late on bwv66.6, a first version). (Timer4's own compare pins OC4A/B/C would make
 * exact edges without the CPU, but for three servos on three fixed pins: a guitar has
 * six.)
 * All-off: direct_all_off() lowers the pins (every direct output), this stops the
 * train; the next move starts it again.
 * RAM: RP_SERVOS slots of 5 B and the train's 12 B (42 B: the queue lost 2 entries). */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "pins.h"
#include "sched.h"
#include "out_servo_gen.h"

#define RP_SERVOS 6 /* a guitar's six strings (bits of an uint8_t: at most 8) */
/* a fall's compare fires this long before its tick (entry, the pin's look-up, the
 * spin with interrupts off): its width is exact while the interrupt's entry waits less
 * than about this. 40 us left 0.1 % of the pulses 10-34 us long on bwv66.6 (a fall
 * behind the PCA9685 engine's closed spin to its START, up to 80 us); 64 us: none */
#define RP_SERVO_LEAD 1024U /* 64 us */
#define RP_SERVO_FAR 60000U /* a compare further than this: a wake-up that re-arms */
/* a rise's compare fires this long before its tick (its interrupt's entry took ~16 us:
 * rises came that late without it). 20 us left 4 us for another interrupt ahead of it:
 * with run_batch() faster (session 9, fwcpu2) a guitar test's first rise came 12 us
 * late (test_firmware_pulses_equal_the_model); 30 us: on time */
#define RP_SERVO_RISE_LEAD 480U /* 30 us */
/* cycles from the rise's pin write to its TCNT1 read, plus the fall's spin exit to its
 * pin write: measured under simavr, widths came out 16 w + 20..28 cycles without it,
 * 16 w - 4..+1 with 24 */
#define RP_SERVO_TRIM 22

static rp_servo servos[RP_SERVOS];
static rp_servo_train train;

/* interrupts off: output `channel`'s slot (a new one: the pin an output, low until its
 * first pulse); 0 when every slot is taken */
static rp_servo *slot_of(uint8_t channel)
{
    uint8_t fresh;
    rp_servo *s = rp_servo_slot(servos, &train, RP_SERVOS, channel, &fresh);
    if (s && fresh) {
        avr_carriages |= AVR_CARRIAGE_SERVO;
        uint8_t mask;
        volatile uint8_t *port = avr_output_port(channel, &mask);
        *port &= (uint8_t)~mask;
        port[-1] |= mask; /* DDRx: the byte below PORTx */
    }
    return s;
}

/* a direct output with a free slot (or its own: a reconfiguration) */
uint8_t avr_servo_ok(uint8_t addr, uint8_t channel)
{
    (void)addr;
    if (channel >= RP_AVR_DIRECT_OUTPUTS)
        return 0;
    uint8_t sreg = SREG;
    cli();
    rp_servo *s = slot_of(channel);
    if (s)
        rp_servo_unrate(s);
    SREG = sreg;
    return s != 0;
}

/* configure_servo (board_servo_rate): the speed and settle of output `channel`'s servo
 * (its slot: configure_actuator gave it; the train is stopped while configuring) */
__attribute__((noinline)) uint8_t board_servo_rate(uint8_t channel, uint16_t us_per_width_us,
                                                   uint16_t settle_us)
{
    return rp_servo_rate(servos, &train, channel, us_per_width_us, settle_us);
}

/* board_output_busy() for the servos (out_step.c): a carriage of theirs that may move
 * (out of line: the core's decisions, inlined into, paid its registers on every strike) */
__attribute__((noinline)) uint8_t avr_servo_busy(uint16_t actuator, uint32_t clock)
{
    uint8_t sreg = SREG;
    cli();
    uint8_t busy = rp_servo_busy(servos, train.n, actuator, clock);
    SREG = sreg;
    return busy;
}

uint8_t avr_servos(void) { return train.n; }

/* interrupts off: the train stops (the pins: direct_all_off) */
void avr_servo_all_off(void)
{
    TIMSK4 &= (uint8_t)~_BV(OCIE4A);
    train.run = 0;
}

/* interrupts off: the compare for the next edge (a fall RP_SERVO_LEAD early, a rise
 * RP_SERVO_RISE_LEAD; at least 64 ticks ahead) */
static void servo_arm(void)
{
    int32_t ahead = (int32_t)(train.at - board_clock());
    ahead -= (int32_t)((train.edge & 1) ? RP_SERVO_LEAD : RP_SERVO_RISE_LEAD);
    uint16_t t4 = TCNT4;
    uint16_t span = ahead < 64 ? 64U : ahead > (int32_t)RP_SERVO_FAR ? RP_SERVO_FAR : (uint16_t)ahead;
    OCR4A = (uint16_t)(t4 + span);
    TIFR4 = _BV(OCF4A);
    TIMSK4 |= _BV(OCIE4A);
}

/* Interrupts off throughout: an edge spins to its tick (entered RP_SERVO_LEAD before a
 * fall, RP_SERVO_RISE_LEAD before a rise); a rise's width is read at it
 * (out_servo_gen.h) and its fall counted from the tick the pin went up: the width is
 * exact whenever the fall's interrupt is entered less than RP_SERVO_LEAD late,
 * whatever the rise's delay. */
ISR(TIMER4_COMPA_vect)
{
    TIMSK4 &= (uint8_t)~_BV(OCIE4A);
    for (;;) {
        int32_t d = (int32_t)(train.at - board_clock());
        uint8_t e = train.edge;
        if (d > (int32_t)((e & 1) ? RP_SERVO_LEAD + 64U : RP_SERVO_RISE_LEAD + 64U))
            break; /* a wake-up: not yet */
        uint8_t mask;
        rp_servo *s = &servos[e >> 1];
        volatile uint8_t *port = avr_output_port(s->pin, &mask);
        uint16_t tick = (uint16_t)train.at;
        /* read before the spin: after it, the slot's address (14 B a slot since the
         * holds) was worked out again between the tick and the pin (+0.6 us a rise) */
        uint16_t w = s->w;
        __asm__("" : "+r"(w)); /* (in a register now: gcc sank the load past the spin) */
        while ((int16_t)(TCNT1 - tick) < 0)
            ; /* at most RP_SERVO_LEAD (a fall) or RP_SERVO_RISE_LEAD (a rise) */
        if (e & 1) {
            *port &= (uint8_t)~mask;
            rp_servo_next_rise(&train);
        } else if (w) {
            *port |= mask; /* its width at its tick (0: no pulse yet) */
            int16_t late = (int16_t)(TCNT1 - tick) - RP_SERVO_TRIM;
            rp_servo_rise(&train, servos);
            train.at += (uint32_t)(int32_t)late; /* the fall from the tick the pin went up */
        } else {
            rp_servo_rise(&train, servos);
        }
    }
    servo_arm();
}

/* board_output_move() for OutKind SERVO (out_step.c): the width of `position`, from
 * its first pulse rising at or after `clock`, and its hold (out_servo_gen.h); refused
 * past the travel or on an output without a slot. Out of line: in line, the core's
 * decisions (run_batch) took its registers on every batch, a piano's too (driver_load.py
 * --spec piano-88-grand: worst second 10.04-10.14 %, against 9.96-10.00 %) */
__attribute__((noinline)) uint8_t avr_servo_move(uint16_t actuator, uint8_t out_channel,
                                                 uint16_t position, uint32_t clock)
{
    if (actuator >= rp_act_count)
        return 0;
    const rp_limits *lim = RP_LIM(&rp_acts[actuator]);
    if (position > lim->pwm_max)
        return 0; /* past the travel: the carriage stays */
    uint16_t max_us = (uint16_t)(lim->max_on_ticks / RP_TICKS_PER_US);
    uint16_t w = (uint16_t)(rp_servo_width_us(position, lim->pwm_max, lim->max_pulse_us, max_us) *
                            RP_TICKS_PER_US);
    uint8_t sreg = SREG, busy = 0;
    uint16_t from = 0;
    uint32_t first = 0, until = 0, end;
    cli();
    rp_servo *s = slot_of(out_channel); /* (configure gave it) */
    if (s) {
        busy = s->press & RP_SERVO_BUSY;
        until = s->until;
        if (rp_servo_set(&train, servos, s, w, clock, &from, &first)) { /* the frames start */
            if (!TCCR4B) {
                TCCR4A = 0;
                TCCR4B = _BV(CS40);
            }
            servo_arm();
        }
    }
    SREG = sreg;
    /* its hold, worked out with interrupts on (a first rise due now comes in) and stored
     * with them off (the rises read it) */
    uint8_t presser = rp_acts[actuator].out_addr; /* (<= 127: the protocol's range) */
    uint8_t press = presser != actuator ? (uint8_t)(RP_SERVO_BUSY | presser) : 0;
    uint16_t home = (uint16_t)(lim->max_pulse_us * RP_TICKS_PER_US); /* the width at 0 */
    if (s && press && rp_servo_hold(&end, from, w, first, busy, until, s->rate, s->settle, home)) {
        cli();
        s->until = end;
        s->press = press;
        SREG = sreg;
    }
    return s != 0;
}
