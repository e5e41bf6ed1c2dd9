/* Step/dir positioners on the host board: the AVR's step generator (boards/avr/
 * out_step_gen.h, the same rules: out_step.c there) run from the host loop. Each step
 * is a trace line "<clock> <actuator> <position after it>" at its step clock (the host
 * has no pins: host_steps_run() writes the steps whose clock has come, a loop pass
 * late at most, with the clock each was due at). */
#include "board.h"
#include "sched.h"

#define RP_STEP_TICKS_SHIFT 0 /* RP_TICKS_PER_US = 1 << this */
#if (1UL << RP_STEP_TICKS_SHIFT) != RP_TICKS_PER_US
#error "RP_STEP_TICKS_SHIFT: RP_TICKS_PER_US must be 1 << it"
#endif
#include "../avr/out_step_gen.h"

#define RP_STEPPERS 32

static rp_stepper steppers[RP_STEPPERS];
static uint8_t n_steppers;

void host_trace_line(uint32_t clock, uint16_t actuator, uint16_t level);
uint8_t host_servo_move(uint16_t actuator, uint8_t out_channel, uint16_t position, uint32_t clock);
uint8_t host_servo_busy(uint16_t actuator, uint32_t clock);

/* Write every step due by `now`; returns the clock of the next one (now + 5 ms when
 * none is due sooner). */
uint32_t host_steps_run(uint32_t now)
{
    uint32_t first = now + 5000U * RP_TICKS_PER_US;
    for (uint8_t i = 0; i < n_steppers; i++) {
        rp_stepper *s = &steppers[i];
        while ((s->flags & RP_STEP_MOVING) && (int32_t)(s->next - now) <= 0) {
            uint32_t at = s->next;
            rp_stepper_advance(s);
            host_trace_line(at, s->actuator, s->pos);
        }
        if ((s->flags & RP_STEP_MOVING) && (int32_t)(s->next - first) < 0)
            first = s->next;
    }
    return first;
}

void host_steps_all_off(void)
{
    for (uint8_t i = 0; i < n_steppers; i++)
        steppers[i].flags &= (uint8_t)~(RP_STEP_MOVING | RP_STEP_PENDING);
}

static rp_stepper *slot_of(uint8_t pin)
{
    uint8_t fresh;
    return rp_stepper_slot(steppers, &n_steppers, RP_STEPPERS, pin, &fresh);
}

uint8_t board_output_move(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t position, uint32_t clock)
{
    if (out_kind == RP_OUT_SERVO) /* a hobby servo (out_servo.c) */
        return host_servo_move(actuator, out_channel, position, clock);
    const rp_limits *lim = rp_stepper_limits(actuator, out_kind, position);
    if (!lim)
        return 0; /* not a step/dir output, or past the travel: the carriage stays */
    rp_stepper *s = slot_of(out_channel);
    if (!s)
        return 0;
    host_steps_run(clock); /* the steps before this clock first */
    s->actuator = (uint8_t)actuator;
    s->presser = out_addr;
    return rp_stepper_move(s, position, clock, lim->max_pulse_us,
                           lim->max_on_ticks / RP_TICKS_PER_US);
}

uint8_t board_output_busy(uint16_t actuator, uint32_t clock)
{
    host_steps_run(clock); /* the steps before this clock first */
    for (uint8_t i = 0; i < n_steppers; i++)
        if (steppers[i].presser == actuator && steppers[i].actuator != actuator &&
            rp_stepper_busy(&steppers[i], clock))
            return 1;
    return host_servo_busy(actuator, clock); /* (out_servo.c) */
}
