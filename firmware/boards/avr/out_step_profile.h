/* The step profile of a positioner move: when each step happens (portable C99, integer
 * only; the AVR and host step generators use it). It is robo_player/motion.py's formula,
 * step for step (tests/test_outputs_step.py compiles this header and holds the two equal):
 *
 *   n steps, top speed v (steps/s), acceleration a (steps/s^2), C = floor(2e12 / a);
 *   step k (1..n) at, in us after the move's start:
 *     accelerating (2 a k <= v^2):       isqrt(k C)
 *     cruising:                          floor(1e6 (v^2 + 2 a k) / (2 a v))
 *     decelerating (2 a (n - k) < v^2):  T - isqrt((n - k) C)
 *     T = floor(1e6 (a n + v^2) / (a v)) when a n >= v^2 (a trapezoid), else a triangle:
 *     T = isqrt(2 n C), accelerating while 2 k <= n.
 * Limits (motion.py's): n, v <= 65535, 1 <= a < 2^24: every product stays in 64 bits. */
#ifndef RP_OUT_STEP_PROFILE_H
#define RP_OUT_STEP_PROFILE_H

#include <stdint.h>

typedef struct {
    uint16_t n, v;
    uint32_t a;
    uint64_t c;     /* floor(2e12 / a) */
    uint64_t total; /* T, us */
    uint8_t trapezoid;
} rp_step_profile;

/* floor(sqrt(x)), bit by bit (T: the width; out_step_gen.h's 32-bit one is the AVR's
 * fast path): shifts, compares and subtractions */
#define RP_ISQRT_BODY(T, x)                  \
    T r = 0, bit = (T)1 << (sizeof(T) * 8 - 2); \
    while (bit > x)                          \
        bit >>= 2;                           \
    while (bit) {                            \
        if (x >= r + bit) {                  \
            x -= r + bit;                    \
            r = (r >> 1) + bit;              \
        } else {                             \
            r >>= 1;                         \
        }                                    \
        bit >>= 2;                           \
    }

static inline uint32_t rp_isqrt64(uint64_t x)
{
    RP_ISQRT_BODY(uint64_t, x)
    return (uint32_t)r;
}

static inline void rp_step_profile_init(rp_step_profile *p, uint16_t n, uint16_t v, uint32_t a)
{
    p->n = n;
    p->v = v ? v : 1;
    p->a = a ? a : 1;
    p->c = 2000000000000ULL / p->a;
    uint64_t vv = (uint64_t)p->v * p->v;
    p->trapezoid = (uint64_t)p->a * n >= vv;
    p->total = p->trapezoid ? 1000000ULL * ((uint64_t)p->a * n + vv) / ((uint64_t)p->a * p->v)
                            : rp_isqrt64(2ULL * n * p->c);
}

/* step k (1..n): its time after the move's start, us */
static inline uint64_t rp_step_time_us(const rp_step_profile *p, uint16_t k)
{
    uint64_t vv = (uint64_t)p->v * p->v;
    uint16_t r = (uint16_t)(p->n - k);
    if (p->trapezoid ? 2ULL * p->a * k <= vv : 2U * (uint32_t)k <= p->n)
        return rp_isqrt64((uint64_t)k * p->c);
    if (!p->trapezoid || 2ULL * p->a * r < vv)
        return p->total - rp_isqrt64((uint64_t)r * p->c);
    return 1000000ULL * (vv + 2ULL * p->a * k) / (2ULL * p->a * p->v);
}

#endif
