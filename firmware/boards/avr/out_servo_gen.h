/* Hobby-servo positioners' pulse train (OutKind SERVO; docs/guitar.md, "Hobby-servo
 * carriages"): portable C99, shared by the AVR board (boards/avr/out_servo.c: its
 * Timer4 compare interrupt makes the edges) and the host board (boards/host/
 * out_servo.c: its loop writes each pulse as a trace line). robo_player/servo.py is
 * the same rule in Python (the model and sim://); tests/test_guitar_servo.py holds
 * them together.
 *
 * The servos get a slot each, in the order they are configured (board_output_ok at
 * configure_actuator: a slot per output pin, kept until reset). A frame lasts
 * RP_SERVO_FRAME_US (50 Hz); slot k's pulse rises at frame + k RP_SERVO_SLOT_US and
 * lasts its width. The frames start at the first move the board takes (its clock) and
 * follow one another until an all-off; the next move starts them again at its clock.
 *   - A move at clock c sets the width of its servo's pulses rising at or after c: the
 *     width now if the slot's next rise (by the train's state: the edge it is at) comes
 *     at or after c, else as the pending width, taken at that rise (after it: the
 *     move's hook runs up to the core's timer lead before c, always < one frame).
 *   - A slot's rise reads its width at its own tick: 0 (no move yet) makes no pulse.
 * Widths in clock ticks (16 bits: the AVR's 16 ticks a us, up to 2400 us). */
#ifndef RP_OUT_SERVO_GEN_H
#define RP_OUT_SERVO_GEN_H

#include <stdint.h>

#include "../../core/protocol_gen.h" /* configure_servo's ranges */

#define RP_SERVO_FRAME_US 20000UL /* robo_player/servo.py FRAME_US */
#define RP_SERVO_SLOT_US 2500UL   /* robo_player/servo.py SLOT_US */
#define RP_SERVO_FRAME_TICKS (RP_SERVO_FRAME_US * RP_TICKS_PER_US)
#define RP_SERVO_SLOT_TICKS (RP_SERVO_SLOT_US * RP_TICKS_PER_US)

typedef struct {
    uint16_t w;      /* the width of its next pulse (ticks; 0: none yet) */
    uint16_t pw;     /* the pending width (its bit in pend) */
    uint8_t pin;     /* its output */
    uint8_t press;   /* the presser on its carriage (bits 0..6) | RP_SERVO_BUSY */
    uint16_t rate;   /* us it takes per us of width (configure_servo; unset: the most) */
    uint16_t settle; /* us it settles after (configure_servo; unset: the most) */
    uint32_t until;  /* while RP_SERVO_BUSY: the clock its moves are done by */
} rp_servo;

#define RP_SERVO_BUSY 0x80U /* press: its carriage may move until `until` */

typedef struct {
    uint32_t frame; /* the current frame's first clock */
    uint32_t at;    /* the clock of the next edge */
    uint8_t edge;   /* the next edge: 2k slot k's rise, 2k + 1 its fall */
    uint8_t n;      /* slots taken */
    uint8_t pend;   /* slots whose pending width waits for their next rise (bits) */
    uint8_t run;    /* the frames run */
} rp_servo_train;

/* the pulse width (us) of `position` (0..travel): robo_player/servo.py width_us */
static inline uint16_t rp_servo_width_us(uint16_t position, uint16_t travel, uint16_t min_us,
                                         uint16_t max_us)
{
    uint32_t span = (uint32_t)(max_us - min_us);
    return (uint16_t)(min_us + ((uint32_t)position * span + travel / 2U) / (travel ? travel : 1U));
}

/* the slot of output `pin` (a new one: no width yet); 0 when all `size` are taken */
static inline rp_servo *rp_servo_slot(rp_servo *tab, rp_servo_train *tr, uint8_t size,
                                      uint8_t pin, uint8_t *fresh)
{
    *fresh = 0;
    for (uint8_t i = 0; i < tr->n; i++)
        if (tab[i].pin == pin)
            return &tab[i];
    if (tr->n == size)
        return 0;
    *fresh = 1;
    rp_servo *s = &tab[tr->n++];
    s->w = 0;
    s->pin = pin;
    s->press = 0;
    return s;
}

/* configure_servo: the speed and settle of output `pin`'s servo, which configure_actuator
 * gave a slot (the `n` taken: none is made here); 0 when it has none */
static inline uint8_t rp_servo_rate(rp_servo *tab, rp_servo_train *tr, uint8_t pin,
                                    uint16_t us_per_width_us, uint16_t settle_us)
{
    uint8_t fresh;
    rp_servo *s = rp_servo_slot(tab, tr, tr->n, pin, &fresh);
    if (!s)
        return 0;
    s->rate = us_per_width_us;
    s->settle = settle_us;
    return 1;
}

/* configure_actuator: the speed and settle unset (the slowest: a servo the host sends no
 * configure_servo for is held busy the longest) until its configure_servo */
static inline void rp_servo_unrate(rp_servo *s)
{
    s->rate = RP_MAX_SERVO_US_PER_WIDTH_US;
    s->settle = RP_MAX_SERVO_SETTLE_US;
}

/* 1 if a carriage whose presser is `actuator` may move at `clock` (interrupts off) */
static inline uint8_t rp_servo_busy(const rp_servo *tab, uint8_t n, uint16_t actuator,
                                    uint32_t clock)
{
    for (uint8_t i = 0; i < n; i++)
        if (tab[i].press == (uint8_t)(RP_SERVO_BUSY | actuator) && actuator < RP_SERVO_BUSY &&
            (int32_t)(tab[i].until - clock) >= 0)
            return 1;
    return 0;
}

/* the next slot's rise (after slot k's fall, or a rise without a pulse) */
static inline void rp_servo_next_rise(rp_servo_train *tr)
{
    uint8_t k = (uint8_t)((tr->edge >> 1) + 1U);
    if (k >= tr->n) {
        tr->frame += RP_SERVO_FRAME_TICKS;
        k = 0;
    }
    tr->edge = (uint8_t)(2U * k);
    tr->at = tr->frame + (uint32_t)k * RP_SERVO_SLOT_TICKS;
}

/* at slot (edge / 2)'s rise tick: its width (0: no pulse), its pending width taken;
 * the next edge */
static inline uint16_t rp_servo_rise(rp_servo_train *tr, rp_servo *tab)
{
    uint8_t k = tr->edge >> 1, bit = (uint8_t)(1U << k);
    uint16_t w = tab[k].w;
    if ((tab[k].press & RP_SERVO_BUSY) && (int32_t)(tr->at - tab[k].until) > 0)
        tab[k].press &= (uint8_t)~RP_SERVO_BUSY; /* done (before its clock could wrap) */
    if (tr->pend & bit) {
        tab[k].w = tab[k].pw;
        tr->pend &= (uint8_t)~bit;
    }
    if (w) {
        tr->edge++;
        tr->at += w;
    } else {
        rp_servo_next_rise(tr);
    }
    return w;
}

/* A move of slot `s` to `w` ticks at `clock` (interrupts off where an edge may run
 * meanwhile); starts the frames at `clock` when they do not run (1: started). For its
 * hold (rp_servo_hold): *from = the width it was last sent (0: none yet), *first = the
 * clock of its first pulse at `w` (the first of its slot rising at or after `clock`). */
static inline uint8_t rp_servo_set(rp_servo_train *tr, rp_servo *tab, rp_servo *s, uint16_t w,
                                   uint32_t clock, uint16_t *from, uint32_t *first)
{
    uint8_t k = (uint8_t)(s - tab), bit = (uint8_t)(1U << k), started = 0;
    *from = (tr->pend & bit) ? s->pw : s->w;
    if (!tr->run) { /* the first frame at this clock: slot 0's rise first */
        tr->run = 1;
        tr->frame = clock;
        tr->edge = 0;
        tr->at = clock;
        for (uint8_t i = 0; i < tr->n; i++) /* moves taken before the all-off */
            if (tr->pend & (uint8_t)(1U << i))
                tab[i].w = tab[i].pw;
        tr->pend = 0;
        started = 1;
    }
    uint32_t next = tr->frame + (uint32_t)k * RP_SERVO_SLOT_TICKS;
    if (tr->edge > 2U * k) /* its rise in this frame is made: the next frame's */
        next += RP_SERVO_FRAME_TICKS;
    if ((int32_t)(next - clock) >= 0) {
        s->w = w;
        tr->pend &= (uint8_t)~bit;
    } else {
        s->pw = w;
        tr->pend |= bit;
        next += RP_SERVO_FRAME_TICKS; /* (the pending width's) */
    }
    *first = next;
    return started;
}

/* The hold (robo_player/servo.py hold_until): a servo has no feedback, so its carriage
 * counts as moving (busy to a press on its presser: rp_servo_busy) from a move's clock
 * until its first pulse at `w` (`first`) + the width change at its speed (`rate` us a
 * us) + its settle: the change from the width it was last sent (`from`; before its
 * first move `home`, its width at 0: the carriages are parked at the nut at boot, as
 * the steppers count from 0), from the end of a hold still running then (`busy`, its
 * `until`: the carriage may not be there yet). 1 and *end: a hold; 0: a move to the
 * width it was sent, nothing more held. Pure arithmetic: the AVR runs it with
 * interrupts on (the first rise may be near) and stores *end with them off. */
static inline uint8_t rp_servo_hold(uint32_t *end, uint16_t from, uint16_t w, uint32_t first,
                                    uint8_t busy, uint32_t until, uint16_t rate, uint16_t settle,
                                    uint16_t home)
{
    if (!from)
        from = home;
    if (w == from)
        return 0;
    uint16_t d = w > from ? (uint16_t)(w - from) : (uint16_t)(from - w);
    if (busy && (int32_t)(until - first) > 0)
        first = until;
    *end = first + (uint32_t)d * rate + (uint32_t)settle * RP_TICKS_PER_US;
    return 1;
}

#endif
