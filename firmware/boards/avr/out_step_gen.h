/* A step/dir positioner's step generator (portable C99; the AVR board runs it from its
 * Timer5 compare interrupt, the host board from its loop). It computes the profile of
 * out_step_profile.h (robo_player/motion.py's formula, step for step) incrementally,
 * so that a step costs no division and, mostly, no square root from scratch:
 *
 *   accelerating / decelerating steps: isqrt(m C) (m = k, or n - k decelerating), the
 *     root of the step before plus its change extrapolated (second differences: the
 *     roots of successive steps change smoothly), corrected by whole units against
 *     m C - g^2 (its low 32 bits: exact, as the guess is off by a few units): a few
 *     multiplies and adds. From scratch (a bit-by-bit root) for a phase's first two
 *     steps, for m < 8 (where the change is not smooth yet), and when the guess is
 *     off by more than RP_ROOT_FIX units;
 *   cruising steps: t(k) = floor(1e6 v / (2a) + 1e6 k / v), kept as
 *     P + k Q + floor(k R / v) + [x >= X0] with Q, R = divmod(1e6, v), x = k R mod v and
 *     X0 = ceil(v (2a - F) / (2a)), F = 1e6 v mod 2a: adds and compares only (set up at
 *     the first cruising step: one division; it shares its fields with the root's).
 *
 * The divisions (the move's length T, the cruise constants) run once per move. Steps
 * must be taken in order (rp_stepper_advance()). A move asked while the
 * carriage still steps is kept (one) and starts when the steps end (or at its own clock,
 * whichever is later), as the simulator's step generator does (robo_player/sim/vmcu.py,
 * robo_player/sim/guitar/device.py). Acceleration: >= 1000 steps/s^2 (the protocol's
 * max_on_us floor), so C = 2e12 / a fits 32 bits. */
#ifndef RP_OUT_STEP_GEN_H
#define RP_OUT_STEP_GEN_H

#include <stdint.h>
#include "out_step_profile.h"

/* clock ticks per us as a shift (the AVR: 4, 16 MHz; the host: 0): no multiply */
#ifndef RP_STEP_TICKS_SHIFT
#define RP_STEP_TICKS_SHIFT 0
#endif

enum {
    RP_STEP_MOVING = 1,
    RP_STEP_UP = 2,
    RP_STEP_TRAP = 4,
    RP_STEP_PENDING = 8,
    RP_STEP_DEC = 16,    /* the root's fields are a deceleration's (else an acceleration's) */
    RP_STEP_LEVEL1 = 32, /* the root's fields: (flags & LEVEL) / LEVEL1 = 0 nothing, 1 a */
    RP_STEP_LEVEL = 96,  /* root, 2 and its change, 3 and the change before */
    RP_STEP_ROOT = RP_STEP_DEC | RP_STEP_LEVEL
};
#define RP_ROOT_FIX 32 /* corrections of a guessed root, then from scratch */

typedef struct {
    /* the step interrupt's fields first (an AVR reaches offsets < 64 in one load) */
    uint8_t flags;
    uint16_t pos;                /* steps done: the carriage's position */
    uint16_t n, k;               /* this move's steps, and those done */
    uint32_t next, t0;           /* the clock of step k + 1; the move's start */
    uint16_t k_acc, r_dec;       /* accelerating while k <= k_acc; decelerating while
                                  * n - k <= r_dec (a trapezoid) */
    union {
        struct {
            uint32_t tc; /* cruising: P + k Q + floor(k R / v) */
            uint16_t x;  /* k R mod v */
        } cr;
        struct {
            uint32_t g;     /* accelerating / decelerating: the last root */
            int16_t d1, d2; /* its change, and the change before */
        } rt;
    } u;
    uint32_t q;                  /* cruising: Q */
    uint16_t r, x0, v;           /* cruising: R, X0 (see above); the top speed */
    uint32_t c, total_us;        /* C = floor(2e12 / a); T */
    /* the rest: a move's start and the configuration */
    uint32_t a;                  /* acceleration */
    uint32_t p2;                 /* floor(1e6 v / a) (its fraction: y0) */
    uint16_t y0, pending;        /* ; a pending move's target */
    uint32_t pend_clock;         /* a pending move's own clock */
    uint8_t actuator, presser, pin; /* pin: the step output (dir: pin + 1) */
} rp_stepper;

static inline uint32_t rp_isqrt32(uint32_t x)
{
    RP_ISQRT_BODY(uint32_t, x)
    return r;
}

/* isqrt(m C) for step m of a phase (m = k accelerating, n - k decelerating: one apart
 * from the last call's while the level is not 0), exact. m C from two 16 x 16-bit
 * products (an 8-bit MCU's multiplier): hi 2^16 + lo. */
static inline uint32_t rp_step_isqrt(rp_stepper *s, uint16_t m)
{
    uint32_t c = s->c;
    uint32_t hi = (uint32_t)m * (uint16_t)(c >> 16), lo = (uint32_t)m * (uint16_t)c;
    uint8_t level = (uint8_t)((s->flags & RP_STEP_LEVEL) / RP_STEP_LEVEL1);
    uint32_t g;
    if (level >= 2 && m >= 8U) {
        /* the last root plus its change, extrapolated: off by a few units, so that
         * m C - g^2 fits 31 bits and m C's low 32 bits give it */
        int16_t d = level == 3 ? (int16_t)(2 * s->u.rt.d1 - s->u.rt.d2) : s->u.rt.d1;
        g = s->u.rt.g + (uint32_t)(int32_t)d;
        int32_t rem = (int32_t)((hi << 16) + lo - g * g);
        uint8_t fix = 0;
        while (rem < 0 && fix < RP_ROOT_FIX) {
            g--;
            rem += (int32_t)(2U * g + 1U);
            fix++;
        }
        while (rem >= (int32_t)(2U * g + 1U) && fix < RP_ROOT_FIX) {
            rem -= (int32_t)(2U * g + 1U);
            g++;
            fix++;
        }
        if (fix >= RP_ROOT_FIX) /* (or right at the limit: rare) */
            goto scratch;
    } else {
    scratch:;
        uint32_t x = (hi << 16) + lo;
        g = (hi < 0x10000UL && x >= lo) ? rp_isqrt32(x) : rp_isqrt64(((uint64_t)hi << 16) + lo);
    }
    if (level) {
        s->u.rt.d2 = s->u.rt.d1;
        s->u.rt.d1 = (int16_t)(g - s->u.rt.g);
    }
    s->u.rt.g = g;
    if (level < 3)
        s->flags = (uint8_t)(s->flags + RP_STEP_LEVEL1);
    return g;
}

/* a decelerating step: the root's fields become the deceleration's at its first */
static inline uint32_t rp_step_dec(rp_stepper *s, uint16_t r)
{
    if (!(s->flags & RP_STEP_DEC))
        s->flags = (uint8_t)((s->flags & ~RP_STEP_LEVEL) | RP_STEP_DEC);
    return s->total_us - rp_step_isqrt(s, r);
}

/* step k (= s->k + 1: in order) of the move, us after its start */
static inline uint32_t rp_stepper_time(rp_stepper *s, uint16_t k)
{
    uint16_t r = (uint16_t)(s->n - k);
    if (s->flags & RP_STEP_TRAP) {
        if (k <= s->k_acc)
            return rp_step_isqrt(s, k);
        if (r <= s->r_dec)
            return rp_step_dec(s, r);
        if (k == (uint16_t)(s->k_acc + 1U)) {
            /* the first cruising step: P + k Q + floor(k R / v), P = p2 / 2 (the
             * fields were the root's) */
            uint32_t kr = (uint32_t)k * s->r, e = kr / s->v;
            s->u.cr.tc = (s->p2 >> 1) + (uint32_t)k * s->q + e;
            s->u.cr.x = (uint16_t)(kr - e * s->v);
        }
        uint32_t t = s->u.cr.tc + (s->u.cr.x >= s->x0);
        s->u.cr.tc += s->q;
        uint32_t x = (uint32_t)s->u.cr.x + s->r; /* < 2 v: past 16 bits */
        if (x >= s->v) {
            x -= s->v;
            s->u.cr.tc++;
        }
        s->u.cr.x = (uint16_t)x;
        return t;
    }
    if (2U * (uint32_t)k <= s->n)
        return rp_step_isqrt(s, k);
    return rp_step_dec(s, r);
}

/* Start a move to `target` at `clock` (top speed v steps/s, acceleration a steps/s^2).
 * Not moving afterwards when there is nothing to do (target == pos). */
#if defined(__GNUC__)
#define RP_STEP_COLD __attribute__((noinline, unused)) /* one copy: flash */
#else
#define RP_STEP_COLD
#endif
static RP_STEP_COLD void rp_stepper_start(rp_stepper *s, uint16_t target, uint32_t clock,
                                          uint16_t v, uint32_t a)
{
    uint16_t n = (uint16_t)(target > s->pos ? target - s->pos : s->pos - target);
    uint8_t f = (uint8_t)(s->flags & ~(RP_STEP_MOVING | RP_STEP_UP | RP_STEP_TRAP | RP_STEP_ROOT));
    s->n = n;
    s->k = 0;
    s->t0 = clock;
    if (!n) {
        s->flags = f;
        return;
    }
    if (target > s->pos)
        f |= RP_STEP_UP;
    if (!v)
        v = 1;
    if (a < 1000)
        a = 1000;
    if (a != s->a || v != s->v) { /* the divisions of a speed and acceleration: once */
        s->a = a;
        s->v = v;
        s->c = (uint32_t)(2000000000000ULL / a);
        uint32_t vv = (uint32_t)v * v;
        s->k_acc = (uint16_t)(vv / (2UL * a) > 65535UL ? 65535UL : vv / (2UL * a));
        s->r_dec = (uint16_t)((vv - 1UL) / (2UL * a) > 65535UL ? 65535UL : (vv - 1UL) / (2UL * a));
        s->q = 1000000UL / v;
        s->r = (uint16_t)(1000000UL % v);
        uint64_t pv = 1000000ULL * v;
        uint32_t p = (uint32_t)(pv / (2UL * a)), fr = (uint32_t)(pv % (2UL * a));
        s->x0 = (uint16_t)(((uint64_t)v * (2UL * a - fr) + 2UL * a - 1UL) / (2UL * a));
        /* 1e6 v / a = p2 + f2 / a (f2 < a); y0 = ceil(v (a - f2) / a) */
        uint32_t f2 = fr >= a ? fr - a : fr;
        s->p2 = 2UL * p + (fr >= a);
        s->y0 = (uint16_t)(((uint64_t)v * (a - f2) + a - 1UL) / a);
    }
    uint32_t vv = (uint32_t)v * v;
    if ((uint64_t)a * n >= vv) {
        f |= RP_STEP_TRAP;
        /* T = floor(1e6 n / v + 1e6 v / a) = n Q + p2 + floor(n R / v) + [n R mod v >= y0] */
        uint32_t nr = (uint32_t)n * s->r, d = nr / v;
        uint16_t m = (uint16_t)(nr - d * v);
        s->total_us = (uint32_t)n * s->q + s->p2 + d + (m >= s->y0);
    } else {
        uint64_t x = 2ULL * n * s->c;
        s->total_us = (x >> 32) ? rp_isqrt64(x) : rp_isqrt32((uint32_t)x);
    }
    s->flags = f;
    s->next = clock + (rp_stepper_time(s, 1) << RP_STEP_TICKS_SHIFT); /* (sets the level) */
    s->flags = (uint8_t)(s->flags | RP_STEP_MOVING); /* last: a step interrupt may look now */
}

/* the clock of the move's last step (while moving) */
static inline uint32_t rp_stepper_end(const rp_stepper *s)
{
    return s->t0 + (s->total_us << RP_STEP_TICKS_SHIFT);
}

/* The step due at s->next is done: count it and find the next one. 1: the move ended
 * (a pending move may have started: RP_STEP_MOVING says). */
/* a step that is not the move's last (k + 1 < n): the step interrupt's hot path */
static inline void rp_stepper_step(rp_stepper *s)
{
    s->pos = (uint16_t)(s->flags & RP_STEP_UP ? s->pos + 1U : s->pos - 1U);
    s->k++;
    s->next = s->t0 + (rp_stepper_time(s, (uint16_t)(s->k + 1U)) << RP_STEP_TICKS_SHIFT);
}

/* The move's last step (k + 1 == n) is done: count it. 0: the carriage stops (not
 * moving); 1: a move waits, to start at *at (its own clock, or this step's if later) —
 * the flags stay MOVING | PENDING until the caller starts it (rp_stepper_start with
 * s->pending at *at, PENDING cleared first). */
static inline uint8_t rp_stepper_last(rp_stepper *s, uint32_t *at)
{
    s->pos = (uint16_t)(s->flags & RP_STEP_UP ? s->pos + 1U : s->pos - 1U);
    s->k++;
    if (!(s->flags & RP_STEP_PENDING)) {
        s->flags &= (uint8_t)~RP_STEP_MOVING;
        return 0;
    }
    *at = (int32_t)(s->pend_clock - s->next) > 0 ? s->pend_clock : s->next;
    return 1;
}

static inline uint8_t rp_stepper_advance(rp_stepper *s)
{
    if ((uint16_t)(s->k + 1U) < s->n) {
        rp_stepper_step(s);
        return 0;
    }
    uint32_t at;
    if (rp_stepper_last(s, &at)) {
        s->flags &= (uint8_t)~(RP_STEP_MOVING | RP_STEP_PENDING);
        rp_stepper_start(s, s->pending, at, s->v, s->a);
    }
    return 1;
}

/* 1 if the carriage moves at `clock` (from its move's start to its last step, or a
 * move waits for it) */
static inline uint8_t rp_stepper_busy(const rp_stepper *s, uint32_t clock)
{
    if (!(s->flags & RP_STEP_MOVING))
        return 0;
    if (s->flags & RP_STEP_PENDING)
        return 1;
    return (int32_t)(clock - s->t0) >= 0 && (int32_t)(rp_stepper_end(s) - clock) >= 0;
}

/* A move asked at `clock`: 1 taken (started, or pending behind the running move), 0
 * refused (a move already waits). The caller checks the travel limit. */
static inline uint8_t rp_stepper_move(rp_stepper *s, uint16_t target, uint32_t clock, uint16_t v,
                                      uint32_t a)
{
    if (s->flags & RP_STEP_MOVING) {
        if (s->flags & RP_STEP_PENDING)
            return 0;
        s->pending = target; /* at the running move's speed and acceleration (a
                              * positioner's are its configuration's) */
        s->pend_clock = clock;
        s->flags |= RP_STEP_PENDING;
        return 1;
    }
    rp_stepper_start(s, target, clock, v, a);
    return 1;
}

/* A carriage's slot in a board's table by its step output: found, or the next free one
 * (*fresh = 1: the board sets its pins up), or 0 when the table is full */
static inline rp_stepper *rp_stepper_slot(rp_stepper *tab, uint8_t *count, uint8_t size,
                                          uint8_t pin, uint8_t *fresh)
{
    *fresh = 0;
    for (uint8_t i = 0; i < *count; i++)
        if (tab[i].pin == pin)
            return &tab[i];
    if (*count == size)
        return 0;
    *fresh = 1;
    tab[*count].pin = pin;
    return &tab[(*count)++];
}

#ifdef RP_SCHED_H
/* board_output_move's first check, both boards: the actuator's limits if `position` is
 * a move this positioner may make (a step/dir output, within its travel), else 0 (the
 * move is refused: the carriage stays) */
static inline const rp_limits *rp_stepper_limits(uint16_t actuator, uint8_t out_kind,
                                                 uint16_t position)
{
    if (out_kind != RP_OUT_STEP_DIR || actuator >= rp_act_count)
        return 0;
    const rp_limits *lim = RP_LIM(&rp_acts[actuator]);
    return position > lim->pwm_max ? 0 : lim;
}
#endif

#endif
