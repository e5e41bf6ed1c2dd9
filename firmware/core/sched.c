#include "sched.h"

rp_act rp_acts[RP_FW_MAX_ACTUATORS];
uint8_t rp_act_count;
uint8_t rp_max_concurrent = 1;
uint32_t rp_duty_window_ms = 1000;
rp_counters rp_count;
volatile uint8_t rp_running_pulses;
volatile uint32_t rp_next_index_snapshot;

/* Time-sorted ring: q[(q_head + i) % RP_QUEUE_SIZE], i < q_count, clocks nondecreasing
 * (by signed difference). In-order pushes append in O(1); an earlier clock is moved in
 * from the tail (bounded by RP_QUEUE_SIZE). The timer context pops from the head. */
static rp_cmd q[RP_QUEUE_SIZE];
static volatile uint16_t q_head, q_count;

/* Energised coils: the timer context scans only these for the next deadline. */
static uint8_t active[RP_FW_MAX_ACTUATORS];
static volatile uint8_t active_n;

static rp_event ev_ring[RP_EVENT_RING];
static volatile uint8_t ev_head, ev_tail; /* head: next to read; tail: next to write */

static uint32_t duty_poll_clock;

/* What the timer is armed for, so that a push never postpones an earlier deadline. */
static uint32_t armed_clock;
static uint8_t armed_valid;

static void arm(uint32_t clock)
{
    if (!armed_valid || (int32_t)(clock - armed_clock) < 0) {
        armed_clock = clock;
        armed_valid = 1;
        board_timer_arm(clock);
    }
}

#define BEFORE(a, b) ((int32_t)((a) - (b)) < 0)

static uint16_t qi(uint16_t i)
{
    uint16_t j = q_head + i;
    return j >= RP_QUEUE_SIZE ? (uint16_t)(j - RP_QUEUE_SIZE) : j;
}

uint32_t rp_full_index(uint16_t low, uint32_t next_index)
{
    return next_index - (uint16_t)((uint16_t)next_index - low);
}

void rp_event_push(uint8_t kind, uint32_t index, uint8_t actuator, uint32_t clock)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint8_t next = (uint8_t)((ev_tail + 1) & (RP_EVENT_RING - 1));
    if (next != ev_head) { /* full: dropped; the status counters still count it */
        rp_event *e = &ev_ring[ev_tail];
        e->kind = kind;
        e->index = index;
        e->actuator = actuator;
        e->clock = clock;
        ev_tail = next;
    }
    RP_IRQ_RESTORE(s);
}

uint8_t rp_event_pop(rp_event *ev)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint8_t ok = ev_head != ev_tail;
    if (ok) {
        *ev = ev_ring[ev_head];
        ev_head = (uint8_t)((ev_head + 1) & (RP_EVENT_RING - 1));
    }
    RP_IRQ_RESTORE(s);
    return ok;
}

/* ---- duty bucket ---- */

static uint16_t weight_of(const rp_act *a, uint16_t level)
{
    if (!level)
        return 0;
    /* (level / pwm_max)^2 in 1/256, integer only */
    uint32_t r = ((uint32_t)level << 8) / a->pwm_max; /* 0..256 */
    if (r > 256)
        r = 256;
    return (uint16_t)((r * r) >> 8);
}

/* Bring a coil's bucket up to `now` at its present weight. */
static void bucket_update(rp_act *a, uint32_t now)
{
    uint32_t dt_us = (now - a->bucket_clock) / RP_TICKS_PER_US;
    if (dt_us == 0)
        return;
    a->bucket_clock += dt_us * RP_TICKS_PER_US;
    if (dt_us > (1UL << 23))
        dt_us = 1UL << 23; /* keeps the products in 32 bits; the main loop updates
                            * energised coils every millisecond anyway */
    uint32_t add = (dt_us * a->weight) >> 8;
    uint32_t drain = (dt_us * a->duty_permille) / 1000;
    uint32_t b = a->bucket_us + add;
    a->bucket_us = b > drain ? b - drain : 0;
}

/* ---- outputs ---- */

static void active_add(uint8_t n)
{
    for (uint8_t i = 0; i < active_n; i++)
        if (active[i] == n)
            return;
    active[active_n++] = n;
}

static void active_remove(uint8_t n)
{
    for (uint8_t i = 0; i < active_n; i++)
        if (active[i] == n) {
            active[i] = active[--active_n];
            return;
        }
}

static void set_level(uint8_t n, uint16_t level, uint32_t now)
{
    rp_act *a = &rp_acts[n];
    board_output(n, a->out_kind, a->out_addr, a->out_channel, level, a->pwm_max);
    bucket_update(a, now);
    a->level = level;
    a->weight = weight_of(a, level);
}

static void coil_off(uint8_t n, uint32_t now)
{
    rp_act *a = &rp_acts[n];
    if (a->phase == RP_PHASE_PULSE && rp_running_pulses)
        rp_running_pulses--;
    if (a->phase != RP_PHASE_OFF || a->level)
        set_level(n, 0, now);
    a->phase = RP_PHASE_OFF;
    active_remove(n);
}

void rp_sched_release_now(uint8_t n)
{
    rp_irq_t s = RP_IRQ_SAVE();
    coil_off(n, board_clock());
    RP_IRQ_RESTORE(s);
}

uint8_t rp_sched_duty_full(uint8_t n)
{
    rp_act *a = &rp_acts[n];
    rp_irq_t s = RP_IRQ_SAVE();
    bucket_update(a, board_clock());
    uint8_t full = a->bucket_us >= RP_BUCKET_CAP_US(a);
    RP_IRQ_RESTORE(s);
    return full;
}

void rp_sched_reset(void)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint32_t now = board_clock();
    for (uint8_t n = 0; n < RP_FW_MAX_ACTUATORS; n++) {
        rp_act *a = &rp_acts[n];
        if (n < rp_act_count)
            board_output(n, a->out_kind, a->out_addr, a->out_channel, 0, a->pwm_max);
        a->phase = RP_PHASE_OFF;
        a->level = 0;
        a->weight = 0;
        a->bucket_us = 0;
        a->bucket_clock = now;
    }
    active_n = 0;
    rp_running_pulses = 0;
    q_head = q_count = 0;
    rp_count.played = rp_count.late = rp_count.refused = 0;
    rp_count.flushed = rp_count.cutoffs = 0;
    duty_poll_clock = now;
    RP_IRQ_RESTORE(s);
}

uint16_t rp_sched_free(void) { return (uint16_t)(RP_QUEUE_SIZE - q_count); }
uint16_t rp_sched_queued(void) { return q_count; }

uint8_t rp_sched_push(const rp_cmd *c)
{
    rp_irq_t s = RP_IRQ_SAVE();
    if (q_count >= RP_QUEUE_SIZE) {
        RP_IRQ_RESTORE(s);
        return 0;
    }
    uint16_t i = q_count;
    while (i > 0 && BEFORE(c->clock, q[qi(i - 1)].clock)) {
        q[qi(i)] = q[qi(i - 1)];
        i--;
    }
    q[qi(i)] = *c;
    q_count++;
    if (i == 0)
        arm(c->clock);
    RP_IRQ_RESTORE(s);
    return 1;
}

void rp_sched_all_off(uint32_t next_index)
{
    rp_irq_t s = RP_IRQ_SAVE();
    uint32_t now = board_clock();
    uint16_t n = q_count;
    uint32_t first = n ? rp_full_index(q[q_head].index, next_index) : 0;
    q_head = q_count = 0;
    for (uint8_t a = 0; a < rp_act_count; a++)
        coil_off(a, now);
    rp_running_pulses = 0;
    rp_count.flushed += n;
    RP_IRQ_RESTORE(s);
    if (n)
        rp_event_push(RP_EV_FLUSHED, first, RP_NO_ACTUATOR, n);
}

/* ---- the timer context ---- */

static void run_cmd(const rp_cmd *c, uint32_t now)
{
    uint8_t n = c->actuator;
    rp_act *a = &rp_acts[n];
    uint8_t late = (uint32_t)(now - c->clock) > (uint32_t)RP_LATE_SLACK_US * RP_TICKS_PER_US;
    if (c->op == RP_OP_RELEASE) {
        coil_off(n, now); /* output first: it is the timing that matters */
        if (late) {
            rp_count.late++;
            rp_event_push(RP_EV_LATE_RELEASE, rp_full_index(c->index, rp_next_index_snapshot), n,
                          c->clock);
        } else {
            rp_count.played++;
        }
        return;
    }
    if (late) {
        rp_count.late++;
        rp_event_push(RP_EV_LATE, rp_full_index(c->index, rp_next_index_snapshot), n, c->clock);
        return;
    }
    uint8_t fresh = a->phase != RP_PHASE_PULSE;
    if (c->op == RP_OP_STRIKE && fresh && rp_running_pulses >= rp_max_concurrent) {
        rp_count.refused++;
        rp_event_push(RP_EV_REFUSED_CONCURRENCY, rp_full_index(c->index, rp_next_index_snapshot),
                      n, c->clock);
        return;
    }
    bucket_update(a, now);
    if (a->bucket_us >= RP_BUCKET_CAP_US(a) && c->level) {
        rp_count.refused++;
        rp_event_push(RP_EV_REFUSED_DUTY, rp_full_index(c->index, rp_next_index_snapshot), n,
                      c->clock);
        return;
    }
    if (c->op == RP_OP_SET && c->level == 0) {
        coil_off(n, now);
        rp_count.played++;
        return;
    }
    set_level(n, c->level, now);
    if (a->phase == RP_PHASE_OFF) {
        a->on_since = c->clock;
        active_add(n);
    }
    a->strike_index = c->index;
    uint32_t cutoff = a->on_since + a->max_on_ticks;
    if (c->op == RP_OP_STRIKE && c->pulse_us) {
        if (fresh)
            rp_running_pulses++;
        a->phase = RP_PHASE_PULSE;
        a->hold = c->hold;
        uint32_t end = c->clock + (uint32_t)c->pulse_us * RP_TICKS_PER_US;
        a->deadline = BEFORE(end, cutoff) ? end : cutoff;
    } else {
        if (!fresh && rp_running_pulses)
            rp_running_pulses--;
        if (c->op == RP_OP_STRIKE && c->hold != c->level) {
            if (!c->hold) { /* a zero pulse and no hold: nothing stays on */
                coil_off(n, now);
                rp_count.played++;
                return;
            }
            set_level(n, c->hold, now);
        }
        a->phase = c->op == RP_OP_STRIKE ? RP_PHASE_HOLD : RP_PHASE_SET;
        a->deadline = cutoff;
    }
    rp_count.played++;
}

static void run_deadline(uint8_t n, uint32_t now)
{
    rp_act *a = &rp_acts[n];
    uint32_t cutoff = a->on_since + a->max_on_ticks;
    if (a->phase == RP_PHASE_PULSE && BEFORE(now, cutoff)) {
        if (rp_running_pulses)
            rp_running_pulses--;
        if (a->hold) {
            set_level(n, a->hold, now);
            a->phase = RP_PHASE_HOLD;
            a->deadline = cutoff;
        } else {
            a->phase = RP_PHASE_HOLD; /* so coil_off does not count the pulse twice */
            coil_off(n, now);
        }
        return;
    }
    coil_off(n, now);
    rp_count.cutoffs++;
    rp_event_push(RP_EV_CUTOFF_MAX_ON, rp_full_index(a->strike_index, rp_next_index_snapshot), n,
                  now);
}

void rp_sched_run(void)
{
    /* Bounded: at most every queued command and every coil's deadline once. */
    uint16_t budget = RP_QUEUE_SIZE + RP_FW_MAX_ACTUATORS;
    uint32_t next = 0;
    armed_valid = 0;
    uint8_t have_next;
    for (;;) {
        uint32_t now = board_clock();
        /* earliest coil deadline */
        uint8_t dn = 0xFF;
        uint32_t dclock = 0;
        for (uint8_t i = 0; i < active_n; i++) {
            uint8_t n = active[i];
            if (dn == 0xFF || BEFORE(rp_acts[n].deadline, dclock)) {
                dn = n;
                dclock = rp_acts[n].deadline;
            }
        }
        have_next = 0;
        if (q_count && (dn == 0xFF || !BEFORE(dclock, q[q_head].clock))) {
            next = q[q_head].clock;
            have_next = 1;
            if (budget && !BEFORE(now, next)) {
                rp_cmd c = q[q_head];
                q_head = qi(1);
                q_count--;
                run_cmd(&c, now);
                budget--;
                continue;
            }
        } else if (dn != 0xFF) {
            next = dclock;
            have_next = 1;
            if (budget && !BEFORE(now, next)) {
                run_deadline(dn, now);
                budget--;
                continue;
            }
        }
        break;
    }
    if (have_next)
        arm(next);
}

void rp_sched_poll(void)
{
    uint32_t now = board_clock();
    if ((uint32_t)(now - duty_poll_clock) < 1000UL * RP_TICKS_PER_US)
        return;
    duty_poll_clock = now;
    for (uint8_t i = 0; i < active_n; i++) {
        rp_irq_t s = RP_IRQ_SAVE();
        uint8_t n = active[i];
        rp_act *a = &rp_acts[n];
        bucket_update(a, board_clock());
        uint8_t over = a->phase != RP_PHASE_OFF && a->bucket_us > RP_BUCKET_CAP_US(a);
        if (over) {
            coil_off(n, board_clock());
            rp_count.cutoffs++;
        }
        RP_IRQ_RESTORE(s);
        if (over) {
            rp_event_push(RP_EV_CUTOFF_DUTY, rp_full_index(a->strike_index, rp_next_index_snapshot), n,
                          now);
            i--; /* coil_off moved another coil into slot i */
        }
    }
}

uint16_t rp_sched_heat(uint8_t *actuator)
{
    uint16_t best = 0;
    *actuator = RP_NO_ACTUATOR;
    uint32_t now = board_clock();
    for (uint8_t n = 0; n < rp_act_count; n++) {
        rp_act *a = &rp_acts[n];
        rp_irq_t s = RP_IRQ_SAVE();
        bucket_update(a, now);
        uint32_t b = a->bucket_us, cap = RP_BUCKET_CAP_US(a);
        RP_IRQ_RESTORE(s);
        if (!cap)
            continue;
        /* permille without 64-bit math: scale down both sides first */
        while (b > 4000000UL || cap > 4000000UL) {
            b >>= 1;
            cap >>= 1;
        }
        uint32_t pm = cap ? (b * 1000UL) / cap : 0;
        if (pm > 65535UL)
            pm = 65535UL;
        if (pm > best || (*actuator == RP_NO_ACTUATOR && b)) {
            best = (uint16_t)pm;
            *actuator = n;
        }
    }
    return best;
}
