#include "sched.h"

#define BEFORE(a, b) ((int32_t)((a) - (b)) < 0)

rp_act rp_acts[RP_FW_MAX_ACTUATORS];
rp_limits rp_profiles[RP_FW_MAX_PROFILES];
uint8_t rp_profile_count;
uint16_t rp_act_count;
rp_aid rp_max_concurrent = 1;
uint32_t rp_duty_window_ms = 1000;
rp_counters rp_count;
volatile rp_aid rp_running_pulses;
volatile uint32_t rp_next_index_snapshot;

/* Time-sorted ring: q[(q_head + i) % RP_QUEUE_SIZE], i < q_count, clocks nondecreasing
 * (by signed difference). In-order pushes append in O(1); an earlier clock is moved in
 * from the tail (bounded by RP_QUEUE_SIZE). The timer context pops from the head. */
static rp_cmd q[RP_QUEUE_SIZE];
static volatile uint16_t q_head, q_count;

/* Energised coils: the timer context scans only these for the next deadline. */
static rp_aid active[RP_FW_MAX_ACTUATORS];
static volatile rp_aid active_n;
/* The earliest deadline of the active coils, kept between scans: a deadline set earlier
 * than it takes its place; moving or removing that coil's own deadline forces a rescan. */
static rp_aid dl_n;
/* 0: rescan; DL_VALID: dl_n/dl_clock hold the earliest deadline; DL_TIE with it: another
 * coil's deadline may be dl_clock too (set whenever one is; it may stay set after that
 * coil moved: it only costs a look), so that the deadlines of one tick go out together */
#define DL_VALID 1U
#define DL_TIE 2U
static uint8_t dl_valid;
static uint32_t dl_clock;

static void set_deadline(rp_aid n, uint32_t clock)
{
    rp_acts[n].deadline = clock;
    if (!dl_valid)
        return;
    if (n == dl_n)
        dl_valid = 0;
    else if (dl_n == RP_AID_NONE || BEFORE(clock, dl_clock)) {
        dl_n = n;
        dl_clock = clock;
        dl_valid = DL_VALID;
    } else if (clock == dl_clock) {
        dl_valid = DL_VALID | DL_TIE;
    }
}

static rp_event ev_ring[RP_EVENT_RING];
volatile uint8_t rp_ev_head, rp_ev_tail; /* head: next to read; tail: next to write */

static uint32_t duty_poll_clock;

/* Weight changes made in the timer context, integrated into the duty buckets by the
 * main loop (the bucket arithmetic is too slow for the timer context). */
typedef struct {
    uint32_t clock;
    rp_aid actuator;
    uint16_t level; /* the main loop turns it into a weight (rp_weight: it divides) */
} wchange;
#define WLOG 16 /* a power of two; drained every duty poll (8 ms) and every strike queued */
static wchange wlog[WLOG];
static volatile uint8_t wlog_head, wlog_tail;
uint16_t rp_wlog_overflows; /* changes applied without their exact time (ring full) */

/* What the timer is armed for, so that a push never postpones an earlier deadline. */
static uint32_t armed_clock;
static uint8_t armed_valid;

#define DUTY_UNIT_TICKS (64UL * RP_TICKS_PER_US) /* the bucket integrates in 64 us steps */
#define DUTY_POLL_TICKS (8000UL * RP_TICKS_PER_US)
#define BATCH 8 /* commands decided together before their outputs */
#ifndef RP_TIMER_LEAD_DEADLINE_TICKS
#define RP_TIMER_LEAD_DEADLINE_TICKS (RP_TIMER_LEAD_TICKS + RP_TIMER_LEAD_PER_CMD_TICKS)
#endif
#ifndef RP_BATCH_WINDOW_TICKS
#define RP_BATCH_WINDOW_TICKS 0
#endif
#ifndef RP_OUTPUT_SPACING_TICKS
#define RP_OUTPUT_SPACING_TICKS 0
#endif
/* The queue clock of the output committed next (a board whose outputs take time to
 * reach, a PCA9685 over I2C, plans its writes from it); see board.h. */
#ifndef RP_OUTPUT_AT
#define RP_OUTPUT_AT(clock) ((void)0)
#endif
#ifndef RP_OUTPUT_LEAD_TICKS
#define RP_OUTPUT_LEAD_TICKS(out_kind) 0U
#endif
/* The timer context lets the board's other interrupts in (UART, clock overflow) while
 * it decides and does the bookkeeping, and shuts them out for the wait and the port
 * writes only: see board.h. */
#ifndef RP_TIMER_OPEN
#define RP_TIMER_OPEN() ((void)0)
#define RP_TIMER_CLOSE() ((void)0)
#endif

static uint16_t qi(uint16_t i);

/* The positioner hooks' defaults (board.h): no positioners, nothing busy. A board that
 * has them defines its own (boards/<board>/out_*.c) and the linker takes those. */
#if defined(__GNUC__)
#define RP_WEAK __attribute__((weak))
#else
#define RP_WEAK
#endif
RP_WEAK uint8_t board_output_move(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                                  uint8_t out_channel, uint16_t position, uint32_t clock)
{
    (void)actuator, (void)out_kind, (void)out_addr, (void)out_channel, (void)position;
    (void)clock;
    return 0;
}

RP_WEAK uint8_t board_output_busy(uint16_t actuator, uint32_t clock)
{
    (void)actuator, (void)clock;
    return 0;
}

RP_WEAK uint8_t board_servo_rate(uint8_t channel, uint16_t us_per_width_us, uint16_t settle_us)
{
    (void)channel, (void)us_per_width_us, (void)settle_us;
    return 0;
}

/* How early to take up the work due at `clock`: a base, plus the decisions of each
 * queued command at exactly that clock (a chord), so the outputs are still on time. */
#if defined(__GNUC__)
__attribute__((always_inline)) /* (rp_sched_run()'s every call) */
#endif
static inline uint16_t lead_for(uint32_t clock)
{
    uint8_t n = 1; /* a coil deadline, or the first command */
    uint16_t left = q_count;
    const rp_cmd *p = &q[q_head];
    while (left > 1 && n < BATCH) {
        if (++p == q + RP_QUEUE_SIZE)
            p = q;
        left--;
        uint32_t d = p->clock - clock;
#if RP_BATCH_WINDOW_TICKS < 0xFFFF
        if ((uint16_t)(d >> 16) || (uint16_t)d > RP_BATCH_WINDOW_TICKS) /* (16-bit compares) */
#else
        if (d > RP_BATCH_WINDOW_TICKS)
#endif
            break;
        n++;
    }
    return (uint16_t)(RP_TIMER_LEAD_TICKS + (uint16_t)n * RP_TIMER_LEAD_PER_CMD_TICKS);
}

static void arm_lead(uint32_t clock, uint16_t lead)
{
    clock -= lead;
    if (!armed_valid || BEFORE(clock, armed_clock)) {
        armed_clock = clock;
        armed_valid = 1;
        board_timer_arm(clock);
    }
}

static void arm(uint32_t clock) { arm_lead(clock, lead_for(clock)); }

static uint16_t qi(uint16_t i)
{
    uint16_t j = q_head + i;
    return j >= RP_QUEUE_SIZE ? (uint16_t)(j - RP_QUEUE_SIZE) : j;
}

uint32_t rp_full_index(uint16_t low, uint32_t next_index)
{
    return next_index - (uint16_t)((uint16_t)next_index - low);
}

void rp_event_push(uint8_t kind, uint32_t index, uint16_t actuator, uint32_t clock)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint8_t next = (uint8_t)((rp_ev_tail + 1) & (RP_EVENT_RING - 1));
    if (next != rp_ev_head) { /* full: dropped; the status counters still count it */
        rp_event *e = &ev_ring[rp_ev_tail];
        e->kind = kind;
        e->index = index;
        e->actuator = actuator;
        e->clock = clock;
        rp_ev_tail = next;
    }
    RP_IRQ_RESTORE(s);
}

uint8_t rp_event_pending(void) { return rp_ev_head != rp_ev_tail; }

uint8_t rp_event_pop(rp_event *ev)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint8_t ok = rp_ev_head != rp_ev_tail;
    if (ok) {
        *ev = ev_ring[rp_ev_head];
        rp_ev_head = (uint8_t)((rp_ev_head + 1) & (RP_EVENT_RING - 1));
    }
    RP_IRQ_RESTORE(s);
    return ok;
}

/* ---- duty bucket: multiplications and shifts only, so the timer context may call it ---- */

static uint8_t weight_of(uint16_t den, uint16_t level)
{
    if (!level)
        return 0;
    /* r = level * 256 / pwm_max (0..256) by an 8-step long division in 16 bits: no
     * 32-bit division (pwm_max <= 4095, so rem << 1 never overflows) */
    uint16_t rem = level, r;
    if (rem >= den) {
        r = 256;
    } else if (den == 255) {
        r = level; /* 2^k - 1: floor(level * 256 / (2^k - 1)) = level >> (k - 8) for */
    } else if (den == 4095) { /* level < 2^k - 1, k >= 8 (the two usual resolutions) */
        r = level >> 4;
    } else {
        r = 0;
        for (uint8_t i = 0; i < 8; i++) {
            rem <<= 1;
            r <<= 1;
            if (rem >= den) {
                rem -= den;
                r |= 1;
            }
        }
    }
    if (r > 255)
        return 255; /* (256 * 256) >> 8 = 256: full */
    uint8_t w = (uint8_t)(((uint16_t)(uint8_t)r * (uint8_t)r) >> 8); /* 8 x 8 bits */
    return w ? w : 1;
}

/* Strikes mostly repeat a drive and a hold: a small cache of the last two weights
 * (main loop only). */
static uint16_t wc_den[2], wc_level[2];
static uint8_t wc_w[2], wc_next;

uint8_t rp_weight(uint16_t pwm_max, uint16_t level)
{
    if (!level)
        return 0; /* releases: not cached, so they do not evict the strikes' weights */
    if (pwm_max == 255 || pwm_max == 4095)
        return weight_of(pwm_max, level); /* no division: quicker than the cache */
    for (uint8_t i = 0; i < 2; i++)
        if (wc_level[i] == level && wc_den[i] == pwm_max)
            return wc_w[i];
    uint8_t w = weight_of(pwm_max, level);
    wc_den[wc_next] = pwm_max;
    wc_level[wc_next] = level;
    wc_w[wc_next] = w;
    wc_next ^= 1;
    return w;
}

/* The duty poll is event-driven: it does nothing before `duty_check_clock`, the
 * earliest time at which any coil's bucket could reach its cap (or a hot coil could
 * cool). Every bucket update moves it earlier if that coil needs it; a poll that runs
 * recomputes it from the coils it updates. */
static uint32_t duty_check_clock;
static uint8_t duty_check_valid;
static volatile uint8_t duty_force; /* set by the timer context when the log was full */

static void duty_check_before(uint32_t clock)
{
    if (!duty_check_valid || BEFORE(clock, duty_check_clock)) {
        duty_check_clock = clock;
        duty_check_valid = 1;
    }
}

static uint16_t unit_of(uint32_t clock)
{
#if DUTY_UNIT_TICKS == 1024
    /* clock >> 10 from byte moves and two shifts (a 32-bit shift is a 10-step loop) */
    return (uint16_t)((uint16_t)(clock >> 8) >> 2 | (uint16_t)(uint8_t)(clock >> 24) << 14);
#else
    return (uint16_t)(clock / DUTY_UNIT_TICKS);
#endif
}

/* Tell the duty poll when this coil needs a look: at once while it is hot, else not
 * before its bucket could be full. At most 63.75 us of weighted on-time go into a
 * bucket per 64 us unit, whatever the weight: from the start of the unit it was
 * integrated up to (the one `now` is in), it cannot reach its cap in fewer than
 * (cap - bucket) / 64 units. */
static void duty_note(const rp_act *a, uint32_t now)
{
    uint32_t from = now & ~(DUTY_UNIT_TICKS - 1);
    if (a->hot) {
        duty_check_before(from);
        return;
    }
    if (!a->weight && a->phase == RP_PHASE_OFF)
        return; /* off: the bucket only drains */
    uint32_t cap = RP_BUCKET_CAP_US(a), b = a->bucket_us, ticks = 0;
    if (b < cap) {
        uint32_t d = cap - b; /* >= d / 64 units (<= 0xFFFF units: far inside 2^31 ticks) */
        ticks = d >= (0xFFFFUL << 6) ? 0xFFFFUL * DUTY_UNIT_TICKS
                                     : (d & ~63UL) * (DUTY_UNIT_TICKS / 64);
    }
    duty_check_before(from + ticks);
}

/* Bring a coil's bucket up to the 64 us unit `now` is in, at its present weight
 * (bucket_update() also tells the duty poll when to look at it next). The unit count is
 * 16 bits (4.2 s): the duty poll's sweep keeps every coil within a second of the clock,
 * so a difference of more than half of it only comes from a `now` a little in the past
 * (a change logged by the timer context before this update), which is skipped. */
/* The bucket's two products: u * w (rp_mul_16x8(), board.h), and (u * d) >> 8. On the AVR
 * from 8x8 MULs in line (the 32-bit C form calls avr-gcc's 16x16 routine, and its 8x8
 * C forms promote to 16-bit multiplies): the same value, the low byte of the low
 * product being the only one dropped. */
static inline uint32_t mul_16x16_shr8(uint16_t u, uint16_t d)
{
#ifdef __AVR__
    uint32_t r;
    __asm__("clr %B0\n\t"
            "clr %C0\n\t"
            "clr %D0\n\t"
            "mul %A1, %A2\n\t"
            "mov %A0, r1\n\t" /* the low product's high byte */
            "mul %B1, %A2\n\t"
            "add %A0, r0\n\t"
            "adc %B0, r1\n\t"
            "mul %A1, %B2\n\t"
            "add %A0, r0\n\t"
            "adc %B0, r1\n\t"
            "adc %C0, %D0\n\t" /* the carry (both 0) */
            "mul %B1, %B2\n\t"
            "add %B0, r0\n\t"
            "adc %C0, r1\n\t"
            "clr r1"
            : "=&r"(r)
            : "r"(u), "r"(d));
    return r;
#else
    return ((uint32_t)u * d) >> 8;
#endif
}

static void bucket_integrate(rp_act *a, uint32_t now)
{
    uint16_t nu = unit_of(now);
    uint16_t units = (uint16_t)(nu - a->bucket_unit);
    if ((int16_t)units <= 0)
        return;
    a->bucket_unit = nu;
    const rp_limits *lim = RP_LIM(a);
#ifdef __AVR__
    __asm__("" : "+r"(lim)); /* one address sum (avr-gcc made it twice, shifts and all) */
#endif
    uint32_t b = a->bucket_us;
    if (a->weight)
        b += rp_mul_16x8(units, a->weight) >> 2; /* u * 64 us * w / 256 */
    if (b) {
        uint32_t drain = mul_16x16_shr8(units, lim->drain_k);
        b = b > drain ? b - drain : 0;
    }
    a->bucket_us = b;
    a->hot = b >= lim->cap_us;
}

static void bucket_update(rp_act *a, uint32_t now)
{
    bucket_integrate(a, now);
    duty_note(a, now);
}

/* The duty poll's sweep: a few coils per poll, round robin, each brought up to the clock
 * (an idle, empty one just has its unit moved), so no coil's 16-bit unit count falls
 * more than a second behind. */
#define SWEEP_PER_POLL ((RP_FW_MAX_ACTUATORS + 127) / 128) /* 128 polls (1 s) per round */
static uint16_t sweep_next;
static void sweep(uint32_t now)
{
    for (uint8_t k = 0; k < SWEEP_PER_POLL; k++) {
        if (sweep_next >= rp_act_count) {
            sweep_next = 0;
            if (!rp_act_count)
                return;
        }
        rp_act *a = &rp_acts[sweep_next++];
        if (!a->bucket_us && !a->weight)
            a->bucket_unit = unit_of(now);
        else
            bucket_integrate(a, now);
    }
}

/* ---- outputs ---- */

static void active_add(rp_aid n)
{
    for (rp_aid i = 0; i < active_n; i++)
        if (active[i] == n)
            return;
    active[active_n++] = n;
}

static void active_remove(rp_aid n)
{
    if (n == dl_n)
        dl_valid = 0;
    for (rp_aid i = 0; i < active_n; i++)
        if (active[i] == n) {
            active[i] = active[--active_n];
            return;
        }
}

/* inline: the timer context's every output (a call level less) */
static inline void prepare(rp_aid n, uint16_t level, rp_out_t *o)
{
    rp_act *a = &rp_acts[n];
    board_output_prepare(n, a->out_kind, a->out_addr, a->out_channel, level,
                         RP_LIM(a)->pwm_max, o);
}

static void output(rp_aid n, uint16_t level)
{
    rp_out_t o;
    /* main loop: as soon as the output can change (the clock known at prepare too) */
    RP_OUTPUT_AT(board_clock() - RP_OUTPUT_LEAD_TICKS(rp_acts[n].out_kind));
    prepare(n, level, &o);
    board_output_commit(&o);
}

/* Bookkeeping of a level change that was already written to the output: the duty
 * bucket learns of it from the change log. */
static void account_level(rp_aid n, uint16_t level, uint32_t now)
{
    uint8_t next = (uint8_t)((wlog_tail + 1) & (WLOG - 1));
    if (next == wlog_head) {
        /* ring full (rare): the bucket sees the change at its next update, with the
         * weight worked out here (uncached: the cache belongs to the main loop) */
        rp_act *a = &rp_acts[n];
        a->weight = weight_of(RP_LIM(a)->pwm_max, level);
        rp_wlog_overflows++;
        duty_force = 1; /* and the next duty poll looks at every coil */
        return;
    }
    wchange *w = &wlog[wlog_tail];
    w->clock = now;
    w->actuator = n;
    w->level = level;
    wlog_tail = next;
}

/* Main loop: integrate the logged weight changes, oldest first. */
static void wlog_drain(void)
{
    while (wlog_head != wlog_tail) {
        wchange c = wlog[wlog_head]; /* a copy: the timer context may append meanwhile */
        rp_act *a = &rp_acts[c.actuator];
        bucket_integrate(a, c.clock);
        a->weight = rp_weight(RP_LIM(a)->pwm_max, c.level);
        duty_note(a, c.clock);
        wlog_head = (uint8_t)((wlog_head + 1) & (WLOG - 1));
    }
}

static void coil_off(rp_aid n, uint32_t now)
{
    rp_act *a = &rp_acts[n];
    if (a->phase == RP_PHASE_PULSE && rp_running_pulses)
        rp_running_pulses--;
    if (a->phase != RP_PHASE_OFF) {
        output(n, 0);
        account_level(n, 0, now);
    }
    a->phase = RP_PHASE_OFF;
    active_remove(n);
}

void rp_sched_release_now(rp_aid n)
{
    rp_irq_t s = RP_IRQ_SAVE();
    coil_off(n, board_clock());
    RP_IRQ_RESTORE(s);
}

/* Step 1 of every all-off, in one short critical section: every output off through the
 * board's fast path, the queue emptied (its tail kept, see rp_sched_stage) and the
 * coils' deadlines dropped, so the timer context has nothing left to do. Returns how
 * many coils were on (active[0..n-1], for step 2) and the flushed count in *flushed. */
static rp_aid stop_all(uint16_t *flushed, uint16_t *first_low)
{
    rp_irq_t s = RP_IRQ_SAVE();
    board_all_off();
    *flushed = q_count;
    *first_low = q[q_head].index;
    q_head = qi(q_count);
    q_count = 0;
    armed_valid = 0;
    rp_aid on = active_n;
    active_n = 0;
    dl_valid = 0;
    rp_running_pulses = 0;
    RP_IRQ_RESTORE(s);
    return on;
}

void rp_sched_reset(void)
{
    uint16_t flushed, first_low;
    stop_all(&flushed, &first_low);
    /* one actuator per critical section (each is a few microseconds): the timer
     * context has nothing queued and no coil to watch meanwhile */
    for (uint16_t n = 0; n < RP_FW_MAX_ACTUATORS; n++) {
        rp_irq_t s = RP_IRQ_SAVE();
        rp_act *a = &rp_acts[n];
        if (n < rp_act_count)
            output(n, 0);
        a->phase = RP_PHASE_OFF;
        a->weight = 0;
        a->hot = 0;
        a->bucket_us = 0;
        a->bucket_unit = unit_of(board_clock());
        RP_IRQ_RESTORE(s);
    }
    rp_irq_t s = RP_IRQ_SAVE();
    uint32_t now = board_clock();
    wlog_head = wlog_tail = 0;
    duty_check_valid = 0;
    rp_count.played = rp_count.late = rp_count.refused = 0;
    rp_count.flushed = rp_count.cutoffs = 0;
    duty_poll_clock = now;
    RP_IRQ_RESTORE(s);
}

uint16_t rp_sched_free(void) { return (uint16_t)(RP_QUEUE_SIZE - q_count); }

static uint16_t stage_base;

void rp_sched_stage_begin(void)
{
    rp_irq_t s = RP_IRQ_SAVE();
    stage_base = qi(q_count); /* the tail: pops by the timer do not move it */
    RP_IRQ_RESTORE(s);
}

rp_cmd *rp_sched_stage(uint16_t k)
{
    uint16_t j = (uint16_t)(stage_base + k);
    return &q[j >= RP_QUEUE_SIZE ? j - RP_QUEUE_SIZE : j];
}
uint16_t rp_sched_queued(void) { return q_count; }

/* rp_sched_commit()'s rare path, out of line (its copy needs a frame the usual path
 * does not) */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static uint8_t commit_copy(const rp_cmd *s)
{
    rp_cmd c = *s; /* an insertion moves the tail: the slot itself may be overwritten */
    return rp_sched_push(&c);
}

uint8_t rp_sched_commit(rp_cmd *s)
{
    rp_irq_t irq = RP_IRQ_SAVE();
    uint16_t i = q_count;
    rp_cmd *tail = &q[qi(i)];
    if (s == tail && i < RP_QUEUE_SIZE) {
        const rp_cmd *last = tail == q ? &q[RP_QUEUE_SIZE - 1] : tail - 1;
        if (i == 0 || !BEFORE(s->clock, last->clock)) { /* in time order: it is there */
            q_count = (uint16_t)(i + 1);
            if (s->clock == q[q_head].clock)
                arm(s->clock); /* a new head, or one more command of the head's chord */
            RP_IRQ_RESTORE(irq);
            return 1;
        }
    }
    RP_IRQ_RESTORE(irq);
    return commit_copy(s);
}

uint8_t rp_sched_push(const rp_cmd *c)
{
    rp_irq_t s = RP_IRQ_SAVE();
    if (q_count >= RP_QUEUE_SIZE) {
        RP_IRQ_RESTORE(s);
        return 0;
    }
    uint16_t i = q_count;
    rp_cmd *tail = &q[qi(i)];
    if (i > 0) {
        const rp_cmd *last = tail == q ? &q[RP_QUEUE_SIZE - 1] : tail - 1;
        if (!BEFORE(c->clock, last->clock)) { /* in time order (the usual case): append */
            *tail = *c;
            q_count = (uint16_t)(i + 1);
            if (c->clock == q[q_head].clock)
                arm(c->clock); /* one more command of the head's chord: earlier */
            RP_IRQ_RESTORE(s);
            return 1;
        }
    }
    while (i > 0 && BEFORE(c->clock, q[qi(i - 1)].clock)) {
        q[qi(i)] = q[qi(i - 1)];
        i--;
    }
    q[qi(i)] = *c;
    q_count++;
    if (i == 0 || c->clock == q[q_head].clock)
        arm(c->clock); /* a new head, or one more command of the head's chord: earlier */
    RP_IRQ_RESTORE(s);
    return 1;
}

void rp_sched_all_off(uint32_t next_index)
{
    uint16_t n, first_low;
    rp_aid on = stop_all(&n, &first_low);
    /* step 2: the coils that were on, one per critical section: each output written
     * off once more (for the outputs the board's fast path does not cover) and the
     * bookkeeping (the duty log, the phase). Nothing can switch them on again meanwhile:
     * the queue is empty and the timer context watches no coil. */
    for (rp_aid i = 0; i < on; i++) {
        rp_irq_t s = RP_IRQ_SAVE();
        rp_aid c = active[i];
        output(c, 0);
        account_level(c, 0, board_clock());
        rp_acts[c].phase = RP_PHASE_OFF;
        RP_IRQ_RESTORE(s);
    }
    if (n) {
        rp_irq_t s = RP_IRQ_SAVE();
        rp_count.flushed += n;
        RP_IRQ_RESTORE(s);
        rp_event_push(RP_EV_FLUSHED, rp_full_index(first_low, next_index), RP_NO_ACTUATOR, n);
    }
}

/* ---- the timer context ---- */

enum { DO_NOTHING = 0, DO_LEVEL };

/* Strike pulses that end at or before `clock` (their deadline: the pulse end, or a
 * cutoff that comes first) on coils without a command earlier in this batch: gone at
 * `clock`, whatever order the timer context runs a tie in. The one rule for a strike on
 * the tick where another pulse ends (docs/protocol.md "Safety"; robo_player/rules.py
 * pulse_counts_at, sim/vmcu.py): the ending pulse does not count. Only asked at the cap. */
/* A batch's entries: its commands' queue slots (intact until the main loop pushes), then
 * the coils of its deadlines (one array: run_batch()'s frame stays small enough for
 * avr-gcc to reach its locals without pointer arithmetic) */
typedef union {
    const rp_cmd *c;
    rp_aid end;
} batch_item;

static rp_aid pulses_ending(uint32_t clock, const batch_item *cp, uint8_t nb)
{
    rp_aid n = 0;
    for (rp_aid i = 0; i < active_n; i++) {
        rp_aid k = active[i];
        const rp_act *a = &rp_acts[k];
        if (a->phase != RP_PHASE_PULSE || BEFORE(clock, a->deadline))
            continue;
        uint8_t in_batch = 0;
        for (uint8_t j = 0; j < nb; j++)
            in_batch |= cp[j].c->actuator == k;
        n += !in_batch;
    }
    return n;
}

/* Decide what one due command does, before anything is written. `pulses` counts the
 * strike pulses running, including the ones decided earlier in this batch (the batch's
 * commands so far: cp[0..nb-1]). */
static uint8_t decide(const rp_cmd *c, uint32_t now, rp_aid *pulses, const batch_item *cp,
                      uint8_t nb)
{
    rp_act *a = &rp_acts[c->actuator];
    uint8_t late = (int32_t)(now - c->clock) > (int32_t)(RP_LATE_SLACK_US * RP_TICKS_PER_US);
    /* the host's record index: only for an event (32-bit work, off the common path) */
#define INDEX rp_full_index(c->index, rp_next_index_snapshot)
    /* a coil in its pulse that this command takes out of it (a release, a set, a strike
     * without a pulse): its pulse no longer counts for the commands after it in this
     * batch (its account() comes after all of them) */
    uint8_t ends_pulse = a->phase == RP_PHASE_PULSE && !(c->op == RP_OP_STRIKE && c->pulse_us);
    if (c->op == RP_OP_RELEASE) {
        if (ends_pulse && *pulses)
            (*pulses)--;
        if (late) {
            rp_count.late++;
            rp_event_push(RP_EV_LATE_RELEASE, INDEX, c->actuator, c->clock);
        } else {
            rp_count.played++;
        }
        return DO_LEVEL; /* turning off is always safe, late or not */
    }
    if (late) {
        rp_count.late++;
        rp_event_push(RP_EV_LATE, INDEX, c->actuator, c->clock);
        return DO_NOTHING;
    }
    if (c->op == RP_OP_MOVE) { /* a positioner: the board's hook runs it from its clock */
        if (board_output_move(c->actuator, a->out_kind, a->out_addr, a->out_channel, c->level,
                              c->clock)) {
            rp_count.played++;
        } else {
            rp_count.refused++;
            rp_event_push(RP_EV_REFUSED_MOVE, INDEX, c->actuator, c->clock);
        }
        return DO_NOTHING; /* no level of the core's changes */
    }
    if (c->op == RP_OP_STRIKE && c->pulse_us && board_output_busy(c->actuator, c->clock)) {
        rp_count.refused++;
        rp_event_push(RP_EV_REFUSED_BUSY, INDEX, c->actuator, c->clock);
        return DO_NOTHING;
    }
    if (c->op == RP_OP_STRIKE && c->pulse_us && a->phase != RP_PHASE_PULSE) {
        if (*pulses >= rp_max_concurrent &&
            (rp_aid)(*pulses - pulses_ending(c->clock, cp, nb)) >= rp_max_concurrent) {
            rp_count.refused++;
            rp_event_push(RP_EV_REFUSED_CONCURRENCY, INDEX, c->actuator, c->clock);
            return DO_NOTHING;
        }
        (*pulses)++;
    }
    if (a->hot && c->level) {
        rp_count.refused++;
        rp_event_push(RP_EV_REFUSED_DUTY, INDEX, c->actuator, c->clock);
        return DO_NOTHING;
    }
    if (ends_pulse && *pulses)
        (*pulses)--;
    rp_count.played++;
    return DO_LEVEL;
#undef INDEX
}

/* The level a decided command writes first. */
static uint16_t first_level(const rp_cmd *c)
{
    if (c->op == RP_OP_RELEASE)
        return 0;
    if (c->op == RP_OP_STRIKE && !c->pulse_us)
        return c->hold; /* no pulse: straight to hold */
    return c->level;
}

/* State after the output of a decided command was written at c->clock. */
static void account(const rp_cmd *c)
{
    rp_aid n = c->actuator;
    rp_act *a = &rp_acts[n];
    uint32_t t = c->clock;
    uint16_t level = first_level(c);
    if (!level) {
        if (a->phase == RP_PHASE_OFF)
            return; /* off already (a release after a pulse without hold): its weight was
                     * logged 0 then, and the bucket's grid makes the sum the same */
        if (a->phase == RP_PHASE_PULSE && rp_running_pulses)
            rp_running_pulses--;
        account_level(n, 0, t);
        a->phase = RP_PHASE_OFF;
        active_remove(n);
        return;
    }
    uint8_t fresh = a->phase != RP_PHASE_PULSE;
    account_level(n, level, t);
    if (a->phase == RP_PHASE_OFF) {
        a->cutoff = t + RP_LIM(a)->max_on_ticks;
        active_add(n);
    }
    a->strike_index = c->index;
    uint32_t cutoff = a->cutoff;
    if (c->op == RP_OP_STRIKE && c->pulse_us) {
        if (fresh)
            rp_running_pulses++;
        a->phase = RP_PHASE_PULSE;
        a->hold = c->hold;
        uint32_t end = t + (uint32_t)c->pulse_us * RP_TICKS_PER_US;
        set_deadline(n, BEFORE(end, cutoff) ? end : cutoff);
    } else {
        if (!fresh && rp_running_pulses)
            rp_running_pulses--;
        a->phase = c->op == RP_OP_STRIKE ? RP_PHASE_HOLD : RP_PHASE_SET;
        set_deadline(n, cutoff);
    }
}

/* A coil deadline (a pulse's end or the max on-time cutoff) at `t`: the level it
 * writes (the hold after a pulse that ends before its cutoff, else 0) ... */
static uint16_t end_level(const rp_act *a, uint32_t t)
{
    return a->phase == RP_PHASE_PULSE && BEFORE(t, a->cutoff) ? a->hold : 0;
}

/* ... and its bookkeeping, after that level was written at `t` (inline: in
 * run_deadline(), every pulse end, and run_batch()) */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void end_account(rp_aid n, uint32_t t)
{
    rp_act *a = &rp_acts[n];
    uint32_t cutoff = a->cutoff;
    uint16_t hold = end_level(a, t);
    if (a->phase == RP_PHASE_PULSE && rp_running_pulses)
        rp_running_pulses--;
    if (hold) {
        account_level(n, hold, t);
        a->phase = RP_PHASE_HOLD;
        set_deadline(n, cutoff);
        return;
    }
    uint8_t cut = !(a->phase == RP_PHASE_PULSE && BEFORE(t, cutoff)); /* else: pulse, no hold */
    account_level(n, 0, t);
    a->phase = RP_PHASE_OFF;
    active_remove(n);
    if (cut) {
        rp_count.cutoffs++;
        rp_event_push(RP_EV_CUTOFF_MAX_ON, rp_full_index(a->strike_index, rp_next_index_snapshot),
                      n, t);
    }
}

/* A lone coil deadline (no other output on its tick: the usual case) */
#if defined(__GNUC__)
__attribute__((noinline)) /* (its output off rp_sched_run()'s frame) */
#endif
static void run_deadline(rp_aid n, uint32_t t)
{
    rp_out_t o;
    RP_OUTPUT_AT(t);
    prepare(n, end_level(&rp_acts[n], t), &o);
    RP_TIMER_CLOSE();
    board_wait_until(t);
    RP_OUTPUT_AT(t);
    board_output_commit(&o);
    RP_TIMER_OPEN();
    end_account(n, t);
}

/* Out of line (the timer context's rare work): the earliest deadline of the active
 * coils, after the one kept was moved or removed. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void rescan_deadline(void)
{
    rp_aid dn = RP_AID_NONE;
    uint32_t dclock = 0;
    uint8_t v = DL_VALID;
    for (rp_aid i = 0; i < active_n; i++) {
        rp_aid n = active[i];
        uint32_t d = rp_acts[n].deadline;
        if (dn == RP_AID_NONE || BEFORE(d, dclock)) {
            dn = n;
            dclock = d;
            v = DL_VALID;
        } else if (d == dclock) {
            v = DL_VALID | DL_TIE; /* another coil's deadline on that tick */
        }
    }
    dl_n = dn;
    dl_clock = dclock;
    dl_valid = v;
}

/* The coils whose deadline is `clock` (for the lead of a batch that takes them), at
 * most BATCH. */
static uint8_t ends_at(uint32_t clock)
{
    uint8_t k = 0;
    for (rp_aid i = 0; i < active_n && k < BATCH; i++)
        k += rp_acts[active[i]].deadline == clock;
    return k;
}

/* A batch: the commands due within RP_BATCH_WINDOW_TICKS of the head's clock `next` (a
 * chord, a release and the next strike), one per actuator, decided in place first,
 * then their outputs written back to back, then the bookkeeping. With `ends`, also the
 * coil deadlines on `next` (pulse ends, cutoffs) of coils without a command on that
 * tick (a command there replaces the deadline: it runs first), written before the
 * commands' outputs: a pulse that ends on the tick where other strikes start is off
 * when they start (issue 9: 4 ends after 3 strikes, one per pass, came 166-454 us late,
 * 15.85 A asked of a 15 A supply). Out of line, so that its arrays stay off
 * rp_sched_run()'s frame: each call of rp_sched_run() ends by arming the timer, which
 * needs none of them. Returns the budget left. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static uint16_t run_batch(uint32_t next, uint32_t now, uint16_t budget, uint8_t ends)
{
    /* The two arrays (80 B on the AVR) below the frame, not in it: avr-gcc reaches a
     * frame's slots with one LDD/STD only up to Y+63, and with them in the frame its
     * spills lay past that (an ADIW/SBIW pair around each: 170 k cycles of
     * driver_load.py's 8.1 M). Same stack, one SP move more. */
    struct batch_arrays {
        rp_out_t outs[BATCH];
        batch_item cp[BATCH]; /* cp[0..nb-1].c: the commands; cp[nb..nb+ne-1].end: the deadlines */
    } *ba = __builtin_alloca(sizeof(struct batch_arrays));
    rp_out_t *outs = ba->outs;
    batch_item *cp = ba->cp;
    uint8_t acts = 0, bit = 1, nb = 0, ne = 0; /* acts: bit i set if cp[i] writes its output */
    uint8_t same = 0; /* the outputs written at `next` (the centring below) */
    rp_aid pulses = rp_running_pulses;
    uint16_t head = q_head, count = q_count;
    const rp_cmd *c = &q[head];
    uint8_t lim = BATCH; /* (one 8-bit bound for the loop, not three) */
    if (count < lim)
        lim = (uint8_t)count;
    if (budget < lim)
        lim = (uint8_t)budget;
    while (nb < lim && (uint32_t)(c->clock - next) <= RP_BATCH_WINDOW_TICKS) {
        uint8_t dup = 0;
        for (uint8_t i = 0; i < nb; i++)
            dup |= cp[i].c->actuator == c->actuator;
        if (dup)
            break; /* the same coil twice: its second command goes in the next batch */
        if (ends && c->clock != next) {
            const rp_act *a = &rp_acts[c->actuator];
            if (a->phase != RP_PHASE_OFF && a->deadline == next)
                break; /* after its coil's deadline on `next`: the next batch */
        }
        if (decide(c, now, &pulses, cp, nb)) {
            acts |= bit;
            same += c->clock == next;
            RP_OUTPUT_AT(c->clock);
            prepare(c->actuator, first_level(c), &outs[nb]);
        }
        bit <<= 1;
        cp[nb++].c = c;
        if (++head == RP_QUEUE_SIZE) {
            head = 0;
            c = q;
        } else {
            c++;
        }
    }
    q_head = head; /* the popped entries stay intact until the main loop pushes */
    q_count = (uint16_t)(count - nb);
    budget = (uint16_t)(budget - nb);
    if (ends) {
        RP_OUTPUT_AT(next);
        for (rp_aid i = 0; i < active_n && nb + ne < BATCH && budget; i++) {
            rp_aid k = active[i];
            const rp_act *a = &rp_acts[k];
            if (a->deadline != next)
                continue;
            uint8_t mine = 0; /* (its commands in this batch are all on `next`: above) */
            for (uint8_t j = 0; j < nb; j++)
                mine |= cp[j].c->actuator == k;
            if (mine)
                continue;
            cp[nb + ne].end = k;
            prepare(k, end_level(a, next), &outs[nb + ne]);
            ne++;
            budget--;
        }
    }
    /* the writes of one clock follow each other RP_OUTPUT_SPACING_TICKS apart:
     * centre them on their clock */
    same = (uint8_t)(same + ne);
    uint32_t waited = next;
    RP_TIMER_CLOSE();
    board_wait_until(next - (same > 1 ? (uint32_t)(same - 1) * RP_OUTPUT_SPACING_TICKS / 2 : 0));
    for (uint8_t i = 0; i < ne; i++) /* the ends first */
        board_output_commit(&outs[nb + i]);
    bit = 1;
    for (uint8_t i = 0; i < nb; i++, bit <<= 1)
        if (acts & bit) {
            uint32_t t = cp[i].c->clock;
            if (t != waited) { /* a later command of the window */
                waited = t;
                board_wait_until(waited);
            }
            RP_OUTPUT_AT(t);
            board_output_commit(&outs[i]);
        }
    RP_TIMER_OPEN();
    for (uint8_t i = 0; i < ne; i++)
        end_account(cp[nb + i].end, next);
    bit = 1;
    for (uint8_t i = 0; i < nb; i++, bit <<= 1)
        if (acts & bit)
            account(cp[i].c);
    return budget;
}

void rp_sched_run(void)
{
    /* Bounded: at most every queued command and every coil's deadline once. */
    uint16_t budget = RP_QUEUE_SIZE + RP_FW_MAX_ACTUATORS;
    armed_valid = 0;
    RP_TIMER_OPEN();
    while (budget) {
        uint32_t now = board_clock();
        if (!dl_valid)
            rescan_deadline();
        rp_aid dn = dl_n;
        uint32_t next = dl_clock;
        uint8_t cmd_first = 0;
        /* the deadlines on `next` go with the batch: a command on their tick, or more
         * than one of them */
        uint8_t ends = dn != RP_AID_NONE && (dl_valid & DL_TIE);
        if (q_count) {
            uint32_t hc = q[q_head].clock;
            if (dn == RP_AID_NONE || !BEFORE(next, hc)) {
                cmd_first = 1;
                ends = dn != RP_AID_NONE && next == hc;
                next = hc;
            }
        } else if (dn == RP_AID_NONE) {
            break; /* nothing to wait for */
        }
        int32_t ahead = (int32_t)(next - now);
        /* due within the smallest lead: no need to count the chord (lead_for walks the
         * queue); else the lead it needs. A coil deadline needs no decision (a pulse
         * end, a cutoff): a shorter lead. */
        if (ahead > (int32_t)RP_TIMER_LEAD_DEADLINE_TICKS) {
            uint16_t lead = lead_for(next);
            if (!cmd_first)
                lead -= (uint16_t)(RP_TIMER_LEAD_TICKS + RP_TIMER_LEAD_PER_CMD_TICKS -
                                   RP_TIMER_LEAD_DEADLINE_TICKS);
            if (ends) { /* each deadline of the batch: as a command */
                uint8_t k = ends_at(next), own = !cmd_first; /* (the lead above has dn's) */
                if (k > own)
                    lead = (uint16_t)(lead + (uint16_t)(k - own) * RP_TIMER_LEAD_PER_CMD_TICKS);
            }
            if (ahead > (int32_t)lead) {
                RP_TIMER_CLOSE(); /* no compare interrupt inside this one */
                arm_lead(next, lead);
                return;
            }
        }
        if (!cmd_first && !ends) {
            run_deadline(dn, next);
            budget--;
            continue;
        }
        budget = run_batch(next, now, budget, ends);
    }
    RP_TIMER_CLOSE();
    /* The budget ran out with more due (a backlog): come back at once. Without this
     * the rest, max on-time cutoffs included, waited for the next command to re-arm the
     * timer (issue 9 §7: a coil stayed on 8 s). Safety never waits for the host. */
    if (!budget)
        arm_lead(board_clock(), 0);
}

/* The duty poll proper, once per DUTY_POLL_TICKS: out of line, so that the main loop's
 * frequent calls that find nothing to do save no registers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void duty_check_all(uint32_t now);
static void duty_poll(uint32_t now)
{
    duty_poll_clock = now;
    wlog_drain();
    uint8_t force = duty_force;
    duty_force = 0;
    sweep(now);
    if (!force && (!duty_check_valid || BEFORE(now, duty_check_clock)))
        return; /* no bucket can be full yet, none is hot */
    duty_check_all(now);
}

/* Every coil on or hot brought up to the clock, and cut off if its bucket is over: out
 * of line (a few polls in a hundred at 100 notes/s), so that a poll without it saves
 * fewer registers (issue 8: CPU load). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void duty_check_all(uint32_t now)
{
    duty_check_valid = 0; /* recomputed by the updates below */
    for (rp_aid n = 0; n < rp_act_count; n++) {
        rp_act *a = &rp_acts[n];
        if (a->phase == RP_PHASE_OFF && !a->hot)
            continue; /* cool and idle: its bucket only drains, done lazily */
        bucket_update(a, board_clock());
        uint8_t over = 0;
        rp_irq_t s = RP_IRQ_SAVE();
        if (a->phase != RP_PHASE_OFF && a->bucket_us > RP_BUCKET_CAP_US(a)) {
            over = 1;
            coil_off(n, board_clock());
            rp_count.cutoffs++;
        }
        RP_IRQ_RESTORE(s);
        if (over)
            rp_event_push(RP_EV_CUTOFF_DUTY,
                          rp_full_index(a->strike_index, rp_next_index_snapshot), n, now);
    }
}

void rp_sched_poll(void)
{
    uint32_t now = board_clock();
    if ((uint32_t)(now - duty_poll_clock) >= DUTY_POLL_TICKS)
        duty_poll(now);
}

/* Out of line (once per status): inlined in the frame handler, its loop's locals sat past
 * avr-gcc's Y+63 reach there (an ADIW/SBIW pair around each; issue 8, CPU load). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
uint16_t rp_sched_heat(uint16_t *actuator)
{
    uint16_t best = 0;
    uint32_t best_b = 0, best_cap = 0; /* the best's bucket and cap */
    *actuator = RP_NO_ACTUATOR;
    uint32_t now = board_clock();
    wlog_drain();
    for (rp_aid n = 0; n < rp_act_count; n++) {
        rp_act *a = &rp_acts[n];
        if (!a->bucket_us)
            continue; /* empty stays empty while off; on coils are updated by the poll */
        bucket_update(a, now);
        uint32_t b = a->bucket_us, cap = RP_BUCKET_CAP_US(a);
        if (!cap || !b)
            continue;
        /* no more than the best's permille (the same cap, a bucket no fuller): no
         * division (a 32-bit one per coil was 1 % of the busy cycles at 100 notes/s) */
        if (*actuator != RP_NO_ACTUATOR && cap == best_cap && b <= best_b)
            continue;
        uint32_t b0 = b, cap0 = cap;
        /* permille without 64-bit math: scale down both sides first */
        while (b > 4000000UL || cap > 4000000UL) {
            b >>= 1;
            cap >>= 1;
        }
        uint32_t pm = cap ? (b * 1000UL) / cap : 0;
        if (pm > 65535UL)
            pm = 65535UL;
        if (pm > best || *actuator == RP_NO_ACTUATOR) {
            best = (uint16_t)pm;
            *actuator = n;
            best_b = b0;
            best_cap = cap0;
        }
    }
    return best;
}
