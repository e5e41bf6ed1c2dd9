/* Step/dir positioners on the AVR board (OutKind STEP_DIR; docs/guitar.md, "Firmware").
 *
 * A positioner actuator's configuration (robo_player/driver/config.py): out_channel =
 * its step output (boards/avr/pins.h; the dir output is the next one), out_addr = the
 * presser actuator on its carriage (its own index: none), pwm_max = the travel (steps:
 * the highest position), max_pulse_us = the top speed (steps/s), max_on_us = the
 * acceleration (steps/s^2).
 *
 * The core's schedule_move reaches board_output_move() up to the timer's lead before
 * its clock; the move's profile (out_step_gen.h, robo_player/motion.py's) starts at that
 * clock. The steps come from Timer5's compare interrupt: Timer5 counts the CPU clock,
 * and OCR5A = its count plus the ticks from board_clock() to the compare (RP_STEP_LEAD
 * before the step; a step more than 60000 ticks ahead: a wake-up that finds nothing
 * due and re-arms). The step pass raises every step due near that tick, each at its own
 * tick, before any arithmetic; then works out their next steps with interrupts on (a
 * compare meanwhile nests and only raises pins: a step never waits for another
 * carriage's arithmetic), each lowering its pin (a pulse of a step's arithmetic).
 * The firmware on its own:
 *   - refuses a move past the travel (REFUSED_MOVE): the carriage stays where it is;
 *   - refuses a strike pulse on the presser of a carriage that moves (REFUSED_BUSY);
 *   - keeps a move asked while its carriage still steps and starts it when the steps
 *     end (one; a second is refused);
 *   - stops every carriage at all-off (watchdog, shutdown): the position stays known.
 * RAM: RP_STEPPERS slots (a carriage each, found by its step output), not a field per
 * actuator. Positions count from 0 at boot (the carriages parked at the nut). */
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "pins.h"
#include "sched.h"

#define RP_STEP_TICKS_SHIFT 4 /* RP_TICKS_PER_US = 1 << this */
#if (1UL << RP_STEP_TICKS_SHIFT) != RP_TICKS_PER_US
#error "RP_STEP_TICKS_SHIFT: RP_TICKS_PER_US must be 1 << it"
#endif
#include "out_step_gen.h"

#define RP_STEPPERS 6 /* carriages: a guitar's six strings (bits of an uint8_t) */
/* The compare fires RP_STEP_LEAD before a step: the interrupt's entry, its clock read
 * and its scan of the carriages take about 200 + 128 a carriage cycles (measured in
 * simavr: ~150 cycles and ~120 a carriage), then RP_STEP_OPEN_TICKS with interrupts on
 * (the UART: the scan and the spin to the step, both closed, were one stretch of up to
 * 1,570 cycles on the slider), then it spins on the clock's low word to the step's
 * tick. Steps due within RP_STEP_WINDOW are raised in the same pass, each at its tick
 * (in clock order: steps at one tick ~3 us apart). */
#define RP_STEP_OPEN_TICKS 320U
#define RP_STEP_LEAD ((int32_t)(200U + RP_STEP_OPEN_TICKS + 128U * n_steppers))
#define RP_STEP_WINDOW (RP_STEP_LEAD + 160)
#define RP_STEP_CLOSE_TICKS 200U /* the step pass's spin: interrupts off only this close */
#define RP_STEP_COMPUTES 8       /* next steps worked out in one interrupt, then ... */
#define RP_STEP_YIELD_TICKS 480U /* ... 30 us for the main loop */

static rp_stepper steppers[RP_STEPPERS];
static struct {
    volatile uint8_t *port; /* the step pin's (looked up once) */
    uint8_t mask;
} step_io[RP_STEPPERS];
static uint8_t n_steppers;
uint8_t avr_carriages; /* AVR_CARRIAGE_STEP | AVR_CARRIAGE_SERVO: slots exist (outputs.h) */
/* carriages whose step pin is up and whose next step is not worked out yet (a bit per
 * slot): their s->next is the step just made */
static volatile uint8_t todo;
static volatile uint8_t computing; /* the step interrupt works next steps out (nested
                                    * compares only raise pins) */
static volatile uint8_t stops_seen; /* all-offs: a step pass that scanned before one
                                     * raises nothing */
/* the carriage (its slot's bit) whose waiting move last_step() starts with interrupts
 * on: busy to a press; a move asked for it meanwhile (start_asked) waits behind it */
static volatile uint8_t starting, start_asked;

static void pin_write(uint8_t output, uint8_t on)
{
    uint8_t mask;
    volatile uint8_t *port = avr_output_port(output, &mask);
    if (on)
        *port |= mask;
    else
        *port &= (uint8_t)~mask;
}

uint8_t avr_step_ok(uint8_t addr, uint8_t channel)
{
    (void)addr;
    return channel + 1U < RP_AVR_DIRECT_OUTPUTS; /* step and dir outputs exist */
}

void avr_step_prepare(uint8_t actuator, uint8_t addr, uint8_t channel, uint16_t level,
                      uint16_t pwm_max, rp_out_t *o)
{
    (void)actuator, (void)addr, (void)channel, (void)level, (void)pwm_max;
    o->port = 0; /* a level means nothing to a positioner: its commit does nothing */
}

void avr_step_commit(const rp_out_t *o) { (void)o; }

/* interrupts off: every carriage stops where it is */
void avr_step_all_off(void)
{
    TIMSK5 &= (uint8_t)~_BV(OCIE5A);
    todo = 0;
    start_asked = 0;
    stops_seen++;
    for (uint8_t i = 0; i < n_steppers; i++) {
        steppers[i].flags &= (uint8_t)~(RP_STEP_MOVING | RP_STEP_PENDING);
        *step_io[i].port &= (uint8_t)~step_io[i].mask; /* (looked up once: the closing
                                                        * all-off is the longest stretch
                                                        * with interrupts off) */
    }
}

/* Timer5 counts the CPU clock (interrupts off); arm_at() sets its compare from its own
 * count and board_clock(), read back to back */
static void timer5_start(void)
{
    if (TCCR5B)
        return;
    TCCR5A = 0;
    TCCR5B = _BV(CS50);
}

/* interrupts off: the compare for a step at `first` (at most `cap` ticks ahead), its
 * interrupt on; 0 if that step is (nearly) due now (a clock the counter has passed, or
 * is about to, would wait a whole wrap; the interrupt stays off). OCR5A from Timer5's
 * own count, read right after board_clock(): its phase against Timer1 does not matter
 * (the interrupt spins on Timer1, the clock). A match while the interrupt is off sets a
 * flag that simavr does not turn into an interrupt when it is turned on, so it is set
 * on, at once. */
static uint8_t arm_at(uint32_t first, uint16_t cap)
{
    int32_t ahead = (int32_t)(first - board_clock()) - RP_STEP_LEAD;
    uint16_t t5 = TCNT5;
    if (ahead <= 32) { /* (an earlier compare off: it would nest a pass into the caller's
                        * open waits for steps the caller raises) */
        TIMSK5 &= (uint8_t)~_BV(OCIE5A);
        return 0;
    }
    uint16_t span = ahead > (int32_t)cap ? cap : (uint16_t)ahead; /* far: wake, re-arm */
    OCR5A = (uint16_t)(t5 + span);
    TIFR5 = _BV(OCF5A);
    TIMSK5 |= _BV(OCIE5A);
    if ((uint16_t)(OCR5A - TCNT5) > span) { /* passed while we set it */
        TIMSK5 &= (uint8_t)~_BV(OCIE5A);
        return 0;
    }
    return 1;
}

/* Interrupts off: raise the step pin of every carriage (not in todo) whose step is due
 * within RP_STEP_WINDOW, each at its own tick, in clock order, spinning on Timer1's
 * count (the clock's low word: board_clock() = its overflows << 16 | TCNT1); they join
 * todo. Their next steps are worked out afterwards: a step never waits for another
 * carriage's arithmetic. `open` (the step passes' calls): a wait longer than
 * RP_STEP_CLOSE_TICKS before a step has interrupts on (the UART, the core's timer)
 * until then, before each step (a pass entered late spins to steps up to the window
 * beyond its scan: closed, 1,678 cycles on the bass); an all-off meanwhile cancels the
 * steps not raised yet (those raised join todo: their positions count them). */
static inline void raise_due(uint8_t open)
{
    uint8_t m = 0, t = todo, bit = 1, stops = stops_seen, raised = 0;
    uint32_t now = board_clock();
    uint16_t ahead[RP_STEPPERS];
    volatile uint8_t *port[RP_STEPPERS];
    uint8_t mask[RP_STEPPERS], bits[RP_STEPPERS];
    for (uint8_t i = 0; i < n_steppers; i++, bit <<= 1) {
        const rp_stepper *s = &steppers[i];
        if (!(s->flags & RP_STEP_MOVING) || (t & bit))
            continue;
        int32_t d = (int32_t)(s->next - now);
        if (d > RP_STEP_WINDOW)
            continue;
        uint16_t a = d < 0 ? 0U : (uint16_t)d;
        if (m && ahead[m - 1U] == a && port[m - 1U] == step_io[i].port) {
            mask[m - 1U] |= step_io[i].mask; /* at the last one's tick on its port: one
                                              * write (carriages leaving together) */
            bits[m - 1U] |= bit;
            continue;
        }
        uint8_t j = m++;
        for (; j && ahead[j - 1U] > a; j--) { /* insertion: clock order */
            ahead[j] = ahead[j - 1U];
            port[j] = port[j - 1U];
            mask[j] = mask[j - 1U];
            bits[j] = bits[j - 1U];
        }
        ahead[j] = a;
        port[j] = step_io[i].port;
        mask[j] = step_io[i].mask;
        bits[j] = bit;
    }
    uint16_t t1 = (uint16_t)now;
    for (uint8_t j = 0; j < m; j++) {
        uint16_t tick = (uint16_t)(t1 + ahead[j]);
        if (open) { /* interrupts on until RP_STEP_CLOSE_TICKS before this step's tick */
            uint16_t close = (uint16_t)(tick - RP_STEP_CLOSE_TICKS);
            if ((int16_t)(TCNT1 - close) < 0) {
                sei();
                while ((int16_t)(TCNT1 - close) < 0)
                    ;
                cli();
                if (stops != stops_seen) /* all-off meanwhile: no step after it */
                    break;
            }
        }
        while ((int16_t)(TCNT1 - tick) < 0)
            ; /* at most RP_STEP_CLOSE_TICKS when open, RP_STEP_WINDOW closed */
        *port[j] |= mask[j];
        raised |= bits[j];
    }
    todo = (uint8_t)(todo | raised);
}

/* interrupts off: the compare for the earliest step of the carriages not in todo
 * (every carriage, those started meanwhile too); steps due now are raised here. A todo
 * left while no pass works it out (a yield): the compare comes back for it within
 * RP_STEP_YIELD_TICKS. Off when nothing is left. */
static void arm(uint8_t open, uint8_t resume)
{
    for (;;) {
        uint32_t first = 0;
        uint8_t any = 0, t = todo, bit = 1;
        for (uint8_t i = 0; i < n_steppers; i++, bit <<= 1) {
            const rp_stepper *s = &steppers[i];
            if (!(s->flags & RP_STEP_MOVING) || (t & bit))
                continue;
            if (!any || (int32_t)(s->next - first) < 0)
                first = s->next;
            any = 1;
        }
        if (!any && !resume) {
            TIMSK5 &= (uint8_t)~_BV(OCIE5A);
            return;
        }
        uint16_t cap = resume ? RP_STEP_YIELD_TICKS : 60000U;
        if (!any)
            first = board_clock() + (uint32_t)RP_STEP_LEAD + cap;
        if (arm_at(first, cap))
            return;
        if (open) { /* pending interrupts first (the UART): then the scan */
            sei();
            __asm__ __volatile__("nop");
            cli();
        }
        raise_due(open);
    }
}

/* The move's last step (interrupts off; the carriage's bit in todo: no step pass
 * touches it). A move that waits starts, its arithmetic (a 32-bit division and the
 * first step's root: ~1,700 cycles, 110 us) with interrupts on: meanwhile the carriage
 * is `starting` (busy_scan: busy; board_output_move: a move asked now waits behind
 * the started one, as it would have after an instant start), and an all-off meanwhile
 * leaves it stopped. A started move with nothing to do (its target was here) lets a
 * move asked meanwhile start at its own clock. */
static __attribute__((noinline)) void last_step(rp_stepper *s, uint8_t bit)
{
    uint8_t up = s->flags & RP_STEP_UP, stops = stops_seen;
    uint32_t at;
    if (!rp_stepper_last(s, &at))
        return; /* the carriage stops */
    for (;;) {
        s->flags &= (uint8_t)~(RP_STEP_MOVING | RP_STEP_PENDING);
        starting = bit;
        sei();
        rp_stepper_start(s, s->pending, at, s->v, s->a);
        cli();
        starting = 0;
        if (stops != stops_seen) { /* an all-off meanwhile: no move after it */
            s->flags &= (uint8_t)~(RP_STEP_MOVING | RP_STEP_PENDING);
            start_asked = 0;
            return;
        }
        if (!start_asked)
            break;
        start_asked = 0;
        if (s->flags & RP_STEP_MOVING) {
            s->flags |= RP_STEP_PENDING;
            break;
        }
        at = s->pend_clock;
    }
    if ((s->flags & RP_STEP_MOVING) && (s->flags & RP_STEP_UP) != up)
        pin_write((uint8_t)(s->pin + 1U), (s->flags & RP_STEP_UP) != 0);
}

/* Interrupts off: work out the next step of one carriage in todo (the lowest slot)
 * with interrupts on (the core's timer, the UART and the other carriages' step
 * compares come first: a nested compare only raises pins), and lower its step pin (a
 * pulse of a step's arithmetic). A move for this carriage meanwhile only sets its
 * pending fields, one for an idle carriage starts it (arm() finds it). */
static __attribute__((noinline)) void work_out(void)
{
    uint8_t i = 0, bit = 1;
    while (!(todo & bit))
        i++, bit <<= 1;
    rp_stepper *s = &steppers[i];
    if ((uint16_t)(s->k + 1U) < s->n) {
        sei();
        rp_stepper_step(s);
        cli();
    } else {
        last_step(s, bit);
    }
    *step_io[i].port &= (uint8_t)~step_io[i].mask;
    todo &= (uint8_t)~bit;
}

ISR(TIMER5_COMPA_vect)
{
    TIMSK5 &= (uint8_t)~_BV(OCIE5A); /* one shot: arm() sets it again */
    if (computing) { /* nested: the pass this interrupted works the next steps out. Its
                      * waits open too (the compare stays off until arm(): no third
                      * level); closed, its spin from the compare to the step, twice
                      * with a chained pass, held interrupts off 1,782 cycles (111 us) */
        raise_due(1);
        arm(1, 0);
        return;
    }
    computing = 1; /* from here: a compare meanwhile nests, a move only starts */
    raise_due(1);
    for (uint8_t done = 0;;) {
        arm(1, 0); /* the other carriages' steps (those due now: raised) while these are
                    * worked out */
        if (!todo || done >= RP_STEP_COMPUTES)
            break;
        for (; todo && done < RP_STEP_COMPUTES; done++)
            work_out();
    }
    if (todo) /* more steps than the CPU makes (every carriage at full speed at once):
               * the main loop gets a slice, the steps come late (and are measured) */
        arm(1, 1);
    computing = 0;
}

static rp_stepper *slot_of(uint8_t pin)
{
    uint8_t fresh, i = n_steppers;
    rp_stepper *s = rp_stepper_slot(steppers, &n_steppers, RP_STEPPERS, pin, &fresh);
    if (fresh) { /* its step pin looked up once; step and dir are outputs */
        avr_carriages |= AVR_CARRIAGE_STEP;
        uint8_t mask;
        step_io[i].port = avr_output_port(pin, &step_io[i].mask);
        step_io[i].port[-1] |= step_io[i].mask; /* DDRx: the byte below PORTx */
        volatile uint8_t *port = avr_output_port((uint8_t)(pin + 1U), &mask);
        port[-1] |= mask;
    }
    return s;
}

uint8_t board_output_move(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t position, uint32_t clock)
{
    if (out_kind == RP_OUT_SERVO) /* a hobby servo (out_servo.c) */
        return avr_servo_move(actuator, out_channel, position, clock);
    const rp_limits *lim = rp_stepper_limits(actuator, out_kind, position);
    if (!lim)
        return 0; /* not a step/dir output, or past the travel: the carriage stays */
    uint8_t sreg = SREG;
    cli();
    rp_stepper *s = slot_of(out_channel);
    uint8_t ok = 0;
    if (s) {
        s->actuator = (uint8_t)actuator;
        s->presser = out_addr;
        if (starting == (uint8_t)(1U << (uint8_t)(s - steppers))) {
            ok = !start_asked; /* its waiting move is starting (last_step): this one
                                * waits behind it (one; a second is refused) */
            if (ok) {
                s->pending = position;
                s->pend_clock = clock;
                start_asked = 1;
            }
        } else if (s->flags & RP_STEP_MOVING) {
            ok = rp_stepper_move(s, position, clock, 0, 0); /* it waits: no division */
        } else {
            /* an idle slot: the step interrupt does not touch it until its MOVING flag
             * (set last), so its divisions run with interrupts as they were */
            SREG = sreg;
            ok = rp_stepper_move(s, position, clock, lim->max_pulse_us,
                                 lim->max_on_ticks / RP_TICKS_PER_US);
            cli();
            if (s->flags & RP_STEP_MOVING) {
                pin_write((uint8_t)(out_channel + 1U), (s->flags & RP_STEP_UP) != 0);
                timer5_start();
                if (!computing) /* else the step interrupt arms it on its way out */
                    arm(0, todo != 0); /* (a pass that yielded: back within
                                        * RP_STEP_YIELD_TICKS) */
            }
        }
    }
    SREG = sreg;
    return ok;
}

/* the carriages' scan (board_output_busy with carriages): out of line, so that its
 * prologue (18 registers saved and restored, a stack frame: ~100 cycles) is not paid by
 * every strike on a board without carriages */
static __attribute__((noinline)) uint8_t busy_scan(uint16_t actuator, uint32_t clock)
{
    uint8_t busy = 0, sreg = SREG;
    cli();
    uint8_t bit = 1;
    for (uint8_t i = 0; i < n_steppers && !busy; i++, bit <<= 1) {
        const rp_stepper *s = &steppers[i];
        if (s->presser != actuator || s->actuator == actuator)
            continue;
        uint32_t now = board_clock();
        /* moving at that clock by its profile (or its waiting move starting), or still
         * stepping late (more steps than the CPU makes): the carriage is where its steps
         * have brought it, not the plan */
        busy = (starting & bit) || rp_stepper_busy(s, clock) ||
               ((s->flags & RP_STEP_MOVING) && (int32_t)(now - s->next) > 0 &&
                (int32_t)(clock - s->t0) >= 0);
    }
    SREG = sreg;
    return busy;
}

/* every strike with a pulse asks, in the core's decisions (inside the timer's lead):
 * a board without carriages pays a call and a load */
static __attribute__((noinline)) uint8_t carriages_busy(uint16_t actuator, uint32_t clock)
{
    if (n_steppers && busy_scan(actuator, clock))
        return 1;
    return avr_servos() ? avr_servo_busy(actuator, clock) : 0; /* (out_servo.c) */
}

/* (one flag for both kinds: a second test here cost a piano 9 cycles a strike) */
uint8_t board_output_busy(uint16_t actuator, uint32_t clock)
{
    return avr_carriages ? carriages_busy(actuator, clock) : 0;
}
