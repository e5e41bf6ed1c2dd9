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
 * Timer5 the steps) counts the CPU clock; its compare A fires RP_SERVO_LEAD before each
 * edge; the interrupt waits with interrupts on until RP_SERVO_CLOSE before the edge's
 * tick, then spins closed on Timer1's count (the clock's low word) and writes the pin at
 * the tick, as the step pass does: an edge is late only when the interrupt is entered
 * after its tick (an interrupts-off stretch elsewhere longer than the lead). A width is
 * read at its rise's tick. (Timer4's own compare pins OC4A/B/C would make exact edges
 * without the CPU, but for three servos on three fixed pins; a guitar has six.)
 * All-off: direct_all_off() lowers the pins (every direct output), this stops the
 * train; the next move starts it again.
 * RAM: RP_SERVOS slots of 5 B and the train's 12 B. */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "pins.h"
#include "sched.h"
#include "out_servo_gen.h"

#define RP_SERVOS 6 /* a guitar's six strings (bits of an uint8_t: at most 8) */
/* the compare fires this long before an edge (entry, the pin's look-up, then the open
 * wait); the edge is exact while the interrupt's entry waits less than about this */
#define RP_SERVO_LEAD 1280U  /* 80 us */
#define RP_SERVO_CLOSE 200U  /* 12.5 us: the closed spin to the tick */
#define RP_SERVO_FAR 60000U  /* a compare further than this: a wake-up that re-arms */

static rp_servo servos[RP_SERVOS];
static rp_servo_train train;
static volatile uint8_t servo_stops; /* all-offs: an edge waiting open is dropped */

/* a direct output with a free slot (or its own: a reconfiguration) */
uint8_t avr_servo_ok(uint8_t addr, uint8_t channel)
{
    (void)addr;
    if (channel >= RP_AVR_DIRECT_OUTPUTS)
        return 0;
    uint8_t fresh, sreg = SREG;
    cli();
    rp_servo *s = rp_servo_slot(servos, &train, RP_SERVOS, channel, &fresh);
    if (s && fresh) { /* an output, low until its first pulse */
        uint8_t mask;
        volatile uint8_t *port = avr_output_port(channel, &mask);
        *port &= (uint8_t)~mask;
        port[-1] |= mask; /* DDRx: the byte below PORTx */
    }
    SREG = sreg;
    return s != 0;
}

/* interrupts off: the train stops (the pins: direct_all_off) */
void avr_servo_all_off(void)
{
    TIMSK4 &= (uint8_t)~_BV(OCIE4A);
    train.run = 0;
    servo_stops++;
}

/* interrupts off: the compare for the next edge (at least 64 ticks ahead) */
static void servo_arm(void)
{
    int32_t ahead = (int32_t)(train.at - board_clock()) - (int32_t)RP_SERVO_LEAD;
    uint16_t t4 = TCNT4;
    uint16_t span = ahead < 64 ? 64U : ahead > (int32_t)RP_SERVO_FAR ? RP_SERVO_FAR : (uint16_t)ahead;
    OCR4A = (uint16_t)(t4 + span);
    TIFR4 = _BV(OCF4A);
    TIMSK4 |= _BV(OCIE4A);
}

ISR(TIMER4_COMPA_vect)
{
    TIMSK4 &= (uint8_t)~_BV(OCIE4A);
    for (;;) {
        int32_t d = (int32_t)(train.at - board_clock());
        if (d > (int32_t)(RP_SERVO_LEAD + 64U))
            break; /* a wake-up: not yet */
        uint8_t e = train.edge, stops = servo_stops, mask;
        const uint16_t *w = &servos[e >> 1].w;
        volatile uint8_t *port = avr_output_port(servos[e >> 1].pin, &mask);
        uint16_t tick = (uint16_t)train.at;
        if (d > (int32_t)RP_SERVO_CLOSE) { /* interrupts on until close to the tick */
            uint16_t close = (uint16_t)(tick - RP_SERVO_CLOSE);
            sei();
            while ((int16_t)(TCNT1 - close) < 0)
                ;
            cli();
            if (stops != servo_stops)
                return; /* all-off meanwhile: no edge (the compare is off) */
        }
        while ((int16_t)(TCNT1 - tick) < 0)
            ;
        if (e & 1) {
            *port &= (uint8_t)~mask;
            rp_servo_next_rise(&train);
        } else {
            if (*w)
                *port |= mask; /* its width at its tick (0: no pulse yet) */
            rp_servo_rise(&train, servos);
        }
    }
    servo_arm();
}

/* board_output_move() for OutKind SERVO (out_step.c): the width of `position`, from
 * its first pulse rising at or after `clock` (out_servo_gen.h); refused past the
 * travel or on an output without a slot */
uint8_t avr_servo_move(uint16_t actuator, uint8_t out_channel, uint16_t position,
                       uint32_t clock)
{
    if (actuator >= rp_act_count)
        return 0;
    const rp_limits *lim = RP_LIM(&rp_acts[actuator]);
    if (position > lim->pwm_max)
        return 0; /* past the travel: the carriage stays */
    uint16_t max_us = (uint16_t)(lim->max_on_ticks / RP_TICKS_PER_US);
    uint16_t w = (uint16_t)(rp_servo_width_us(position, lim->pwm_max, lim->max_pulse_us, max_us) *
                            RP_TICKS_PER_US);
    uint8_t fresh, sreg = SREG, ok = 0;
    cli();
    rp_servo *s = rp_servo_slot(servos, &train, RP_SERVOS, out_channel, &fresh);
    if (s) {
        ok = 1;
        if (rp_servo_set(&train, servos, s, w, clock)) { /* the frames start */
            if (!TCCR4B) {
                TCCR4A = 0;
                TCCR4B = _BV(CS40);
            }
            servo_arm();
        }
    }
    SREG = sreg;
    return ok;
}
