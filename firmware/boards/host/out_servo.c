/* Hobby-servo positioners on the host board: the pulse train of boards/avr/
 * out_servo_gen.h (the AVR's rule: out_servo.c there) run from the host loop. The host
 * has no pins: each pulse is a trace line "<rise clock> <actuator> <width us>", written
 * once its fall has come (a loop pass late at most), with the clocks it was due at; a
 * pulse an all-off cuts short: its width to the all-off. */
#include "board.h"
#include "sched.h"
#include "../avr/out_servo_gen.h"

#define RP_SERVOS 8 /* a frame's slots */

static rp_servo servos[RP_SERVOS];
static uint8_t servo_act[RP_SERVOS]; /* the actuator of each slot (its trace lines) */
static rp_servo_train train;

void host_trace_line(uint32_t clock, uint16_t actuator, uint16_t level);

/* the pulse of slot k rising at frame + k slot, `w` ticks long */
static void servo_line(uint8_t k, uint32_t w)
{
    uint32_t rise = train.frame + (uint32_t)k * RP_SERVO_SLOT_TICKS;
    host_trace_line(rise, servo_act[k], (uint16_t)(w / RP_TICKS_PER_US));
}

/* every edge due by `now` */
void host_servos_run(uint32_t now)
{
    while (train.run && (int32_t)(train.at - now) <= 0) {
        if (train.edge & 1) {
            uint8_t k = train.edge >> 1;
            servo_line(k, train.at - (train.frame + (uint32_t)k * RP_SERVO_SLOT_TICKS));
            rp_servo_next_rise(&train);
        } else {
            rp_servo_rise(&train, servos);
        }
    }
}

/* the train stops at `now`: a pulse up ends there */
void host_servos_all_off(uint32_t now)
{
    if (!train.run)
        return;
    host_servos_run(now - 1U);
    if (train.edge & 1) {
        uint8_t k = train.edge >> 1;
        servo_line(k, now - (train.frame + (uint32_t)k * RP_SERVO_SLOT_TICKS));
    }
    train.run = 0;
}

uint8_t host_servo_ok(uint8_t addr, uint8_t channel)
{
    uint8_t fresh;
    (void)addr;
    rp_servo *s = rp_servo_slot(servos, &train, RP_SERVOS, channel, &fresh);
    if (s)
        rp_servo_unrate(s);
    return s != 0;
}

/* configure_servo: the speed and settle of output `channel`'s servo (its slot) */
uint8_t board_servo_rate(uint8_t channel, uint16_t us_per_width_us, uint16_t settle_us)
{
    return rp_servo_rate(servos, &train, channel, us_per_width_us, settle_us);
}

/* board_output_busy() for the servos (out_step.c) */
uint8_t host_servo_busy(uint16_t actuator, uint32_t clock)
{
    return rp_servo_busy(servos, train.n, actuator, clock);
}

uint8_t host_servo_move(uint16_t actuator, uint8_t out_channel, uint16_t position, uint32_t clock)
{
    if (actuator >= rp_act_count)
        return 0;
    const rp_limits *lim = RP_LIM(&rp_acts[actuator]);
    if (position > lim->pwm_max)
        return 0; /* past the travel: the carriage stays */
    uint8_t fresh;
    rp_servo *s = rp_servo_slot(servos, &train, RP_SERVOS, out_channel, &fresh);
    if (!s)
        return 0;
    host_servos_run(clock - 1U); /* the edges before this clock first */
    servo_act[s - servos] = (uint8_t)actuator;
    uint16_t max_us = (uint16_t)(lim->max_on_ticks / RP_TICKS_PER_US);
    uint16_t w = rp_servo_width_us(position, lim->pwm_max, lim->max_pulse_us, max_us);
    uint8_t presser = rp_acts[actuator].out_addr; /* (<= 127: the protocol's range) */
    uint8_t press = presser != actuator ? (uint8_t)(RP_SERVO_BUSY | presser) : 0;
    uint16_t from, wt = (uint16_t)(w * RP_TICKS_PER_US);
    uint32_t first, end;
    uint8_t busy = s->press & RP_SERVO_BUSY;
    rp_servo_set(&train, servos, s, wt, clock, &from, &first);
    if (press && rp_servo_hold(&end, from, wt, first, busy, s->until, s->rate, s->settle,
                               (uint16_t)(lim->max_pulse_us * RP_TICKS_PER_US))) {
        s->until = end;
        s->press = press;
    }
    return 1;
}
