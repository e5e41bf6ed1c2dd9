/* Link layer (frames, seq/ack, credits) and message handling. Main-loop context,
 * except rp_timer(). The rules are in docs/protocol.md. */
#include "fw.h"

#include "board.h"
#include "frame.h"
#include "protocol_gen.h"
#include "sched.h"
#include "wire.h"

#ifndef RP_OUTPUT_LEAD_TICKS
#define RP_OUTPUT_LEAD_TICKS(out_kind) 0U /* every output changes at its commit */
#endif
#ifndef RP_BOARD_CONFIGURED
#define RP_BOARD_CONFIGURED(pca_prescale) ((void)(pca_prescale)) /* no PCA9685 */
#endif

#ifndef RP_OUTPUT_ERRORS
#define RP_OUTPUT_ERRORS() 0U /* no output bus that can fail */
#endif

rp_link_stats rp_link;

static uint8_t state = RP_STATE_UNCONFIGURED;
static uint32_t boot_id;
static uint8_t expected; /* next host DATA seq we accept */
static uint8_t tx_seq;   /* our DATA seq */
static uint32_t last_rx_clock;

static rp_framer framer;

/* transmit: messages for the next DATA frame, and the frame being built */
static uint8_t out[RP_MAX_PAYLOAD];
static uint8_t out_len;
static uint8_t enc[RP_MAX_ENCODED + 2];

/* configuration */
static uint8_t time_shift, level_shift;
static uint16_t cfg_count, cfg_concurrent, cfg_detail;
static uint8_t cfg_time_shift, cfg_level_shift, cfg_reason;
static uint8_t cfg_pca_prescale;
/* The watchdog (docs/protocol.md "Watchdog"): no good frame for watchdog_ms (cfg_watchdog_ticks) ->
 * state DRAINING: the queue plays out (every limit still enforced), nothing new is
 * taken, and last_rx_clock stays where it was; all off and SHUTDOWN once the queue is
 * empty with no strike pulse running, or cfg_drain_ms after the watchdog fired
 * (last_rx_clock + both), whichever comes first. cfg_drain_ms 0: all off when it fires.
 * The two are in use from configure_end on (only a good configuration leads to READY;
 * a new configure_begin leaves it), so no other copy is kept (AVR RAM). */
static uint16_t cfg_drain_ms;
/* cfg.watchdog_ms in ticks, multiplied once at configure, not at every poll (a 32-bit
 * multiplication: issue 8, CPU load) */
static uint32_t cfg_watchdog_ticks;
#define MS_TICKS(ms) ((uint32_t)(ms) * 1000UL * RP_TICKS_PER_US)
static uint32_t cfg_window_ms, cfg_hash;
static uint8_t cfg_seen[(RP_FW_MAX_ACTUATORS + 7) / 8];

/* schedule state (docs/protocol.md "Time") */
static uint32_t base;
static uint32_t next_index;
static int16_t last_drive;
static uint16_t last_pulse, last_hold;
/* protocol 7: the gaps the last records used, most recent first (record_gap()), in ticks
 * (time_shift applied once, when a gap is new) */
static uint32_t recent_gap[RP_RECENT_GAPS];

uint8_t rp_state(void) { return state; }

static void count_inc(uint32_t *c)
{
    rp_irq_t s = RP_IRQ_SAVE();
    (*c)++;
    RP_IRQ_RESTORE(s);
}

/* ---------------------------------------------------------------- transmit */

static void send_frame(uint8_t kind, uint8_t seq, const uint8_t *payload, uint8_t len)
{
    enc[0] = 0; /* a leading delimiter: our frame never glues onto line noise */
    uint16_t n = rp_frame_encode(kind, seq, expected, payload, len, enc + 1);
    board_write(enc, (uint16_t)(n + 1));
}

static void flush_out(void)
{
    if (!out_len)
        return;
    send_frame(RP_FRAME_DATA, tx_seq, out, out_len);
    tx_seq = (uint8_t)((tx_seq + 1) & (RP_SEQ_MOD - 1));
    out_len = 0;
}

/* Room for a message of up to `n` bytes in `out`. */
static uint8_t *out_reserve(uint8_t n)
{
    if (out_len + n > RP_MAX_PAYLOAD)
        flush_out();
    return out + out_len;
}

#define OUT_DONE(p) (out_len = (uint8_t)((p) - out))

static void send_ack(uint8_t kind)
{
    uint8_t pl[5];
    uint8_t *e = rp_put_vlq1(pl, (int32_t)rp_sched_free());
    send_frame(kind, 0, pl, (uint8_t)(e - pl));
    if (kind == RP_FRAME_NAK)
        rp_link.naks_sent++;
}

static void emit_event(uint8_t kind, uint32_t index, uint16_t actuator, uint32_t clock)
{
    uint8_t *p = out_reserve(RP_EVENT_MAX_BYTES);
    OUT_DONE(rp_put_event(p, kind, index, actuator, clock));
}

/* ---------------------------------------------------------------- safety states */

static void do_shutdown(uint8_t reason)
{
    rp_sched_all_off(next_index);
    state = RP_STATE_SHUTDOWN;
    uint8_t *p = out_reserve(RP_SHUTDOWN_NOTICE_MAX_BYTES);
    OUT_DONE(rp_put_shutdown_notice(p, reason, board_clock()));
}

/* ---------------------------------------------------------------- commands */

static void refuse(uint8_t kind, uint32_t index, uint16_t actuator, uint32_t clock)
{
    count_inc(&rp_count.refused);
    rp_event_push(kind, index, actuator, clock);
}

/* `n` as the host sent it (10 bits): refused unless configured, then an rp_aid. */
/* `slot`: the staging slot this command's record came from (built there in place and
 * committed), or 0 (built on the stack and pushed). */
/* (the body inline in run_record(), every packed record: a call and its register saves
 * less per command; issue 8, CPU load) */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void enqueue_body(uint8_t op, uint16_t n, int32_t level, uint16_t pulse_us,
                                uint16_t hold, rp_cmd *slot)
{
    uint32_t index = next_index;
#ifdef RP_TEST_ENQUEUE_HOOK
    RP_TEST_ENQUEUE_HOOK(index, base, op, n, level, pulse_us, hold);
#endif
    {
        rp_irq_t s = RP_IRQ_SAVE();
        next_index++;
        rp_next_index_snapshot = next_index;
        RP_IRQ_RESTORE(s);
    }
    if (state != RP_STATE_READY) {
        refuse(RP_EV_REFUSED_STATE, index, n, base);
        return;
    }
    if (n >= rp_act_count) {
        refuse(RP_EV_REFUSED_RANGE, index, n, base);
        return;
    }
    const rp_act *a = &rp_acts[n];
    const rp_limits *lim = RP_LIM(a);
    if (op != RP_OP_RELEASE && op != RP_OP_MOVE && /* a move's level is its position */
        (level < 0 || level > lim->max_drive ||
         (op == RP_OP_STRIKE && (pulse_us > lim->max_pulse_us || hold > lim->max_drive)))) {
        refuse(RP_EV_REFUSED_RANGE, index, n, base);
        return;
    }
    uint32_t now = board_clock();
    int32_t ahead = (int32_t)(base - now);
    if (ahead < -(int32_t)(RP_LATE_SLACK_US * RP_TICKS_PER_US)) {
        count_inc(&rp_count.late);
        if (op == RP_OP_RELEASE) {
            rp_sched_release_now((rp_aid)n);
            rp_event_push(RP_EV_LATE_RELEASE, index, n, base);
        } else {
            rp_event_push(RP_EV_LATE, index, n, base);
        }
        return;
    }
    if (ahead > (int32_t)0x40000000L) {
        refuse(RP_EV_REFUSED_TOO_FAR, index, n, base);
        return;
    }
    /* the duty limit is the coil's bucket at the command's clock (sched.c decide), not
     * at its arrival, up to the lead time earlier: docs/protocol.md, Duty */
    rp_cmd local;
    rp_cmd *c = slot ? slot : &local;
    /* an output that takes time to reach (a PCA9685 write over I2C) starts that early */
    c->clock = base - RP_OUTPUT_LEAD_TICKS(a->out_kind);
    c->index = (uint16_t)index;
    c->actuator = (rp_aid)n;
    c->op = op;
    c->level = (uint16_t)level;
    c->pulse_us = pulse_us;
    c->hold = hold & 0xFFF; /* <= max_drive <= 4095: checked above */
    /* cannot fail: frames are checked against free slots */
    if (!(slot ? rp_sched_commit(slot) : rp_sched_push(c)))
        do_shutdown(RP_SHUTDOWN_INTERNAL);
}

static void enqueue(uint8_t op, uint16_t n, int32_t level, uint16_t pulse_us, uint16_t hold,
                    rp_cmd *slot)
{
    enqueue_body(op, n, level, pulse_us, hold, slot);
}

/* ---------------------------------------------------------------- configuration */

static void cfg_fail(uint8_t reason, uint16_t detail)
{
    if (!cfg_reason) {
        cfg_reason = reason;
        cfg_detail = detail;
    }
}

static __attribute__((noinline)) void configure_begin(const uint32_t *v, const uint8_t *msg, uint8_t len)
{
    rp_sched_all_off(next_index);
    rp_act_count = 0;
    state = RP_STATE_CONFIGURING;
    cfg_reason = RP_CFG_OK;
    cfg_detail = 0;
    cfg_count = (uint16_t)v[RP_CONFIGURE_BEGIN_ACTUATOR_COUNT];
    cfg_concurrent = (uint16_t)v[RP_CONFIGURE_BEGIN_MAX_CONCURRENT];
    rp_profile_count = 0;
    cfg_watchdog_ticks = MS_TICKS((uint16_t)v[RP_CONFIGURE_BEGIN_WATCHDOG_MS]);
    cfg_drain_ms = (uint16_t)v[RP_CONFIGURE_BEGIN_WATCHDOG_DRAIN_MS];
    cfg_window_ms = v[RP_CONFIGURE_BEGIN_DUTY_WINDOW_MS];
    cfg_time_shift = (uint8_t)v[RP_CONFIGURE_BEGIN_TIME_SHIFT];
    cfg_level_shift = (uint8_t)v[RP_CONFIGURE_BEGIN_LEVEL_SHIFT];
    cfg_pca_prescale = (uint8_t)v[RP_CONFIGURE_BEGIN_PCA_PRESCALE];
    cfg_hash = rp_fnv1a(msg, len, RP_FNV_OFFSET);
    for (uint16_t i = 0; i < sizeof cfg_seen; i++)
        cfg_seen[i] = 0;
    if (cfg_count > RP_FW_MAX_ACTUATORS)
        cfg_fail(RP_CFG_TOO_MANY_ACTUATORS, cfg_count);
    else if (cfg_concurrent > cfg_count)
        cfg_fail(RP_CFG_TOO_MANY_ACTUATORS, cfg_concurrent);
}

static __attribute__((noinline)) void configure_actuator(const uint32_t *v, const uint8_t *msg, uint8_t len)
{
    if (state != RP_STATE_CONFIGURING)
        return; /* configure_end will say NO_BEGIN */
    cfg_hash = rp_fnv1a(msg, len, cfg_hash);
    uint16_t n = (uint16_t)v[RP_CONFIGURE_ACTUATOR_ACTUATOR];
    if (n >= cfg_count || n >= RP_FW_MAX_ACTUATORS) {
        cfg_fail(RP_CFG_BAD_INDEX, n);
        return;
    }
    if (cfg_seen[n >> 3] & (1 << (n & 7))) {
        cfg_fail(RP_CFG_DUPLICATE_INDEX, n);
        return;
    }
    cfg_seen[n >> 3] |= (uint8_t)(1 << (n & 7));
    rp_act *a = &rp_acts[n];
    a->out_kind = (uint8_t)v[RP_CONFIGURE_ACTUATOR_OUT_KIND];
    a->out_addr = (uint8_t)v[RP_CONFIGURE_ACTUATOR_OUT_ADDR];
    a->out_channel = (uint8_t)v[RP_CONFIGURE_ACTUATOR_OUT_CHANNEL];
    rp_limits lim;
    lim.pwm_max = (uint16_t)v[RP_CONFIGURE_ACTUATOR_PWM_MAX];
    lim.max_drive = (uint16_t)v[RP_CONFIGURE_ACTUATOR_MAX_DRIVE];
    uint32_t max_on_us = v[RP_CONFIGURE_ACTUATOR_MAX_ON_US];
    lim.max_pulse_us = (uint16_t)v[RP_CONFIGURE_ACTUATOR_MAX_PULSE_US];
    lim.duty_permille = (uint16_t)v[RP_CONFIGURE_ACTUATOR_DUTY_PERMILLE];
    lim.max_on_ticks = max_on_us * RP_TICKS_PER_US;
    lim.drain_k = (uint16_t)((64UL * 256UL * lim.duty_permille) / 1000UL);
    lim.cap_us = cfg_window_ms * lim.duty_permille;
    a->profile = 0;
    if (max_on_us > RP_MAX_ON_US_LIMIT || lim.pwm_max > RP_FW_MAX_LEVEL ||
        lim.max_drive > lim.pwm_max || lim.max_pulse_us > max_on_us) {
        cfg_fail(RP_CFG_LIMIT_OUT_OF_RANGE, n);
        return;
    }
    if (!board_output_ok(a->out_kind, a->out_addr, a->out_channel)) {
        cfg_fail(RP_CFG_BAD_OUTPUT, n);
        return;
    }
    /* the same limits as an actuator before: share its entry */
    uint8_t k = 0;
    for (; k < rp_profile_count; k++) {
        const rp_limits *q = &rp_profiles[k];
        if (q->max_on_ticks == lim.max_on_ticks && q->pwm_max == lim.pwm_max &&
            q->max_drive == lim.max_drive && q->max_pulse_us == lim.max_pulse_us &&
            q->duty_permille == lim.duty_permille)
            break;
    }
    if (k == rp_profile_count) {
        if (k == RP_FW_MAX_PROFILES) {
            cfg_fail(RP_CFG_LIMIT_OUT_OF_RANGE, n); /* more distinct limits than it holds */
            return;
        }
        rp_profiles[rp_profile_count++] = lim;
    }
    a->profile = k;
}

/* a hobby servo's speed and settle, after its configure_actuator (board_servo_rate).
 * The configure handlers are out of line: in line in the frame handler (rx_delimiter)
 * their locals grew its stack frame (137 B with this one, against 123 B: hot locals
 * past Y+63 cost an address adjustment each; driver_load.py --spec piano-88-grand
 * 9.82-9.87 % busy over the run, against 9.77 %) */
static __attribute__((noinline)) void configure_servo(const uint32_t *v, const uint8_t *msg, uint8_t len)
{
    if (state != RP_STATE_CONFIGURING)
        return; /* configure_end will say NO_BEGIN */
    cfg_hash = rp_fnv1a(msg, len, cfg_hash);
    uint16_t n = (uint16_t)v[RP_CONFIGURE_SERVO_ACTUATOR];
    if (n >= cfg_count || n >= RP_FW_MAX_ACTUATORS || !(cfg_seen[n >> 3] & (1 << (n & 7))) ||
        rp_acts[n].out_kind != RP_OUT_SERVO ||
        !board_servo_rate(rp_acts[n].out_channel, (uint16_t)v[RP_CONFIGURE_SERVO_US_PER_WIDTH_US],
                          (uint16_t)v[RP_CONFIGURE_SERVO_SETTLE_US]))
        cfg_fail(RP_CFG_BAD_OUTPUT, n);
}

static __attribute__((noinline)) void configure_end(uint32_t hash)
{
    if (state != RP_STATE_CONFIGURING) {
        uint8_t *p = out_reserve(RP_CONFIG_RESULT_MAX_BYTES);
        OUT_DONE(rp_put_config_result(p, RP_CFG_NO_BEGIN, RP_NO_DETAIL, 0));
        return;
    }
    if (!cfg_reason) {
        for (uint16_t n = 0; n < cfg_count; n++)
            if (!(cfg_seen[n >> 3] & (1 << (n & 7)))) {
                cfg_fail(RP_CFG_MISSING_ACTUATOR, n);
                break;
            }
    }
    for (uint16_t n = 0; !cfg_reason && n < cfg_count; n++)
        for (uint16_t m = 0; m < n; m++) {
            const rp_act *a = &rp_acts[n], *b = &rp_acts[m];
            if (a->out_kind == b->out_kind && a->out_addr == b->out_addr &&
                a->out_channel == b->out_channel) {
                cfg_fail(RP_CFG_BAD_OUTPUT, n);
                break;
            }
        }
    if (!cfg_reason && hash != cfg_hash)
        cfg_fail(RP_CFG_HASH_MISMATCH, RP_NO_DETAIL);
    if (cfg_reason) {
        state = RP_STATE_UNCONFIGURED;
        rp_act_count = 0;
    } else {
        rp_act_count = cfg_count;
        rp_max_concurrent = (rp_aid)cfg_concurrent;
        rp_duty_window_ms = cfg_window_ms;
        time_shift = cfg_time_shift;
        level_shift = cfg_level_shift;
        RP_BOARD_CONFIGURED(cfg_pca_prescale); /* before the reset's all-off */
        rp_sched_reset();
        base = 0;
        next_index = 0;
        rp_next_index_snapshot = 0;
        last_drive = 0;
        last_pulse = last_hold = 0;
        for (uint8_t k = 0; k < RP_RECENT_GAPS; k++)
            recent_gap[k] = 0;
        last_rx_clock = board_clock();
        state = RP_STATE_READY;
    }
    uint8_t *p = out_reserve(RP_CONFIG_RESULT_MAX_BYTES);
    OUT_DONE(rp_put_config_result(p, cfg_reason, cfg_detail, cfg_hash));
}

/* ---------------------------------------------------------------- messages */

static void send_status(uint32_t tag)
{
    uint16_t hot;
    uint16_t heat = rp_sched_heat(&hot);
    rp_counters c;
    rp_irq_t s = RP_IRQ_SAVE();
    c = rp_count;
    RP_IRQ_RESTORE(s);
    uint8_t *p = out_reserve(RP_STATUS_MAX_BYTES);
    OUT_DONE(rp_put_status(p, tag, state, boot_id, board_clock(), rp_sched_free(), next_index,
                           c.played, c.late, c.refused, c.flushed, c.cutoffs,
                           rp_link.bad_frames + rp_link.bad_messages, heat, hot,
                           RP_OUTPUT_ERRORS()));
}

static void send_identify(void)
{
    static const uint8_t name_table[] RP_TABLE = RP_BOARD_NAME; /* flash on the AVR */
    uint8_t name[sizeof name_table];
    for (uint8_t i = 0; i < sizeof name; i++)
        name[i] = RP_TABLE_READ8(&name_table[i]);
    uint8_t *p = out_reserve(RP_IDENTIFY_RESP_MAX_BYTES);
    OUT_DONE(rp_put_identify_resp(p, RP_PROTOCOL_VERSION, RP_FW_VERSION, name,
                                  (uint8_t)(sizeof name - 1), RP_CLOCK_HZ, RP_QUEUE_SIZE,
                                  RP_FW_MAX_ACTUATORS, RP_RX_BUFFER, RP_MAX_PAYLOAD, boot_id,
                                  RP_MAX_ON_US_LIMIT, RP_FW_MAX_LEVEL, RP_LATE_SLACK_US, state));
}

/* A frame is parsed once. check() makes sure every message parses and counts the queue
 * slots the frame needs; it stages each slot's decoded record in the queue's free slots
 * (rp_sched_stage) while there is room, and notes where each schedule message's
 * records end. run() then runs the messages in order, taking the records from the
 * staging slots instead of decoding them again. */
#define MAX_SCHED_MSGS 4 /* schedule messages in a frame run from staging; more: decoded again */
static uint8_t sched_end[MAX_SCHED_MSGS]; /* payload offset after each one's records */
static uint8_t sched_msgs;

static int16_t check(const uint8_t *payload, const uint8_t *end)
{
    uint32_t v[RP_MAX_H2D_FIELDS]; /* rp_decode_args() sets the fields it returns */
    int16_t slots = 0;
    uint16_t room = rp_sched_free();
    const uint8_t *p = payload;
    rp_sched_stage_begin();
    sched_msgs = 0;
    while (p < end) {
        int32_t id;
        if (!rp_get_vlq1(&p, end, &id) || id < 1 || id > 31)
            return -1;
        if (rp_decode_args((uint8_t)id, &p, end, v) < 0)
            return -1;
        if (id == RP_MSG_SCHEDULE) {
            uint8_t wide = 0; /* an index this board does not hold: run() decodes again */
            for (uint32_t i = 0; i < v[RP_SCHEDULE_RECORDS]; i++) {
                rp_record r;
                if (!rp_get_record(&p, end, &r))
                    return -1;
                wide |= r.actuator >= RP_FW_MAX_ACTUATORS;
                if ((uint16_t)slots < room) {
                    rp_cmd *c = rp_sched_stage((uint16_t)slots);
                    c->clock = r.dclock;
                    c->actuator = (rp_aid)r.actuator;
                    c->level = (uint16_t)r.ddrive;
                    c->pulse_us = r.pulse_us;
                    c->hold = r.hold & 0xFFF; /* <= 4095: rp_get_record checked */
                    c->op = (uint8_t)(r.strike | r.has_pulse_hold << 1);
                    c->index = r.recent; /* until run_record() reads it out */
                }
                slots++;
            }
            if (sched_msgs < MAX_SCHED_MSGS) /* 0: not staged (no message ends at 0) */
                sched_end[sched_msgs] = wide ? 0 : (uint8_t)(p - payload);
            sched_msgs++;
        } else if (id == RP_MSG_SCHEDULE_EXT || id == RP_MSG_SCHEDULE_MOVE) {
            slots++; /* its staging slot stays unused: the k-th slot is the k-th push */
        }
    }
    return slots;
}

/* The gap a record's time code means (docs/protocol.md "Time"): a recent one
 * (`recent` 1..RP_RECENT_GAPS) or `dclock`; the gap used goes to the front of the
 * recent ones, a new one pushing the last out (messages.take_gap() in Python). */
static uint32_t record_gap(uint32_t dclock, uint8_t recent)
{
    uint8_t k = RP_RECENT_GAPS - 1;
    if (recent) {
        k = (uint8_t)(recent - 1);
        dclock = recent_gap[k]; /* kept in ticks: no shift (a loop on the AVR) per record */
    } else if (!dclock) {
        return 0;
    } else {
        dclock <<= time_shift;
    }
    for (; k; k--)
        recent_gap[k] = recent_gap[k - 1];
    recent_gap[0] = dclock;
    return dclock;
}

/* One record, packed or staged: the scheduling state moves, then it is queued. */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline void run_record_body(uint32_t dclock, uint8_t recent, uint16_t actuator,
                                   uint8_t strike, int16_t ddrive, uint8_t has_pulse_hold,
                                   uint16_t pulse_us, uint16_t hold, rp_cmd *slot)
{
    base += record_gap(dclock, recent); /* (in ticks: time_shift applied there) */
    uint8_t op = RP_OP_RELEASE; /* (one enqueue_body(): it is inline) */
    int32_t level = 0;
    uint16_t pulse = 0, h = 0;
    if (strike) {
        last_drive = (int16_t)(last_drive + ddrive);
        if (has_pulse_hold) {
            last_pulse = pulse_us;
            last_hold = hold;
        }
        op = RP_OP_STRIKE;
        level = (int32_t)last_drive << level_shift;
        pulse = last_pulse;
        h = last_hold;
    }
    enqueue_body(op, actuator, level, pulse, h, slot);
}

static void run_record(uint32_t dclock, uint8_t recent, uint16_t actuator, uint8_t strike,
                       int16_t ddrive, uint8_t has_pulse_hold, uint16_t pulse_us, uint16_t hold,
                       rp_cmd *slot)
{
    run_record_body(dclock, recent, actuator, strike, ddrive, has_pulse_hold, pulse_us, hold,
                    slot);
}

/* A staged record (every packed record of a frame that fits): its fields read here, from
 * one pointer (nine arguments, most of them in call-saved registers, cost the call
 * about 100 cycles of saves; issue 8, CPU load) */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void run_staged(rp_cmd *c)
{
    run_record_body(c->clock, (uint8_t)c->index, c->actuator, c->op & 1, (int16_t)c->level,
                    c->op >> 1, c->pulse_us, c->hold, c);
}

/* Run a frame that check() passed. */
static void run(const uint8_t *payload, const uint8_t *end)
{
    uint32_t v[RP_MAX_H2D_FIELDS]; /* rp_decode_args() sets the fields it returns */
    uint16_t slot = 0;
    uint8_t msg = 0;
    const uint8_t *p = payload;
    while (p < end) {
        const uint8_t *start = p;
        int32_t id;
        rp_get_vlq1(&p, end, &id); /* check() made sure these parse */
        rp_decode_args((uint8_t)id, &p, end, v);
        if (id == RP_MSG_SCHEDULE) {
            uint32_t n = v[RP_SCHEDULE_RECORDS];
            if (msg < MAX_SCHED_MSGS && sched_end[msg]) {
                for (uint32_t i = 0; i < n; i++) {
                    /* the record is read out, then the command is built in its slot */
                    run_staged(rp_sched_stage(slot++));
                }
                p = payload + sched_end[msg];
            } else {
                for (uint32_t i = 0; i < n; i++) {
                    rp_record r;
                    rp_get_record(&p, end, &r);
                    slot++;
                    run_record(r.dclock, r.recent, r.actuator, r.strike, r.ddrive,
                               r.has_pulse_hold, r.pulse_us, r.hold, 0);
                }
            }
            msg++;
            continue;
        }
        uint8_t len = (uint8_t)(p - start);
        switch (id) {
        case RP_MSG_IDENTIFY:
            send_identify();
            break;
        case RP_MSG_CONFIGURE_BEGIN:
            configure_begin(v, start, len);
            break;
        case RP_MSG_CONFIGURE_ACTUATOR:
            configure_actuator(v, start, len);
            break;
        case RP_MSG_CONFIGURE_SERVO:
            configure_servo(v, start, len);
            break;
        case RP_MSG_CONFIGURE_END:
            configure_end(v[RP_CONFIGURE_END_HASH]);
            break;
        case RP_MSG_GET_CLOCK: {
            uint8_t *o = out_reserve(RP_CLOCK_MAX_BYTES);
            OUT_DONE(rp_put_clock(o, v[RP_GET_CLOCK_TAG], board_clock()));
            break;
        }
        case RP_MSG_SCHED_BASE:
            base = v[RP_SCHED_BASE_CLOCK];
            break;
        case RP_MSG_SCHEDULE_EXT:
            slot++;
            base += v[RP_SCHEDULE_EXT_DCLOCK] << time_shift;
            enqueue((uint8_t)v[RP_SCHEDULE_EXT_OP], (uint16_t)v[RP_SCHEDULE_EXT_ACTUATOR],
                    (int32_t)v[RP_SCHEDULE_EXT_LEVEL], (uint16_t)v[RP_SCHEDULE_EXT_PULSE_US],
                    (uint16_t)v[RP_SCHEDULE_EXT_HOLD], 0);
            break;
        case RP_MSG_SCHEDULE_MOVE:
            slot++;
            base += v[RP_SCHEDULE_MOVE_DCLOCK] << time_shift;
            enqueue(RP_OP_MOVE, (uint16_t)v[RP_SCHEDULE_MOVE_ACTUATOR],
                    (int32_t)v[RP_SCHEDULE_MOVE_POSITION], 0, 0, 0);
            break;
        case RP_MSG_ALL_OFF:
            rp_sched_all_off(next_index);
            break;
        case RP_MSG_HEARTBEAT:
            send_status(v[RP_HEARTBEAT_TAG]);
            break;
        case RP_MSG_SHUTDOWN:
            do_shutdown((uint8_t)v[RP_SHUTDOWN_REASON]);
            break;
        default:
            break;
        }
    }
}

/* ---------------------------------------------------------------- receive */

static void bad_frame(void)
{
    rp_link.bad_frames++;
    send_ack(RP_FRAME_NAK);
}

/* The events so far to the host, and what is waiting in `out` (no watchdog or duty
 * upkeep: rp_poll() does those on the board's tick). */
static void events_out(void)
{
    rp_event ev;
    while (rp_event_pop(&ev))
        emit_event(ev.kind, ev.index, ev.actuator, ev.clock);
    flush_out();
}

static void handle_frame(uint8_t kind, uint8_t seq, const uint8_t *payload, uint8_t len)
{
    rp_link.frames_ok++;
    if (state != RP_STATE_DRAINING)
        last_rx_clock = board_clock(); /* any good frame feeds the watchdog */
    if (kind == RP_FRAME_SYNC) {
        expected = seq;
        send_ack(RP_FRAME_ACK);
        return;
    }
    if (kind != RP_FRAME_DATA)
        return;
    uint8_t d = (uint8_t)((seq - expected) & (RP_SEQ_MOD - 1));
    if (d != 0) {
        if (d >= RP_SEQ_MOD / 2) { /* behind: a duplicate; never run twice */
            rp_link.duplicates++;
            send_ack(RP_FRAME_ACK);
        } else { /* ahead: a gap */
            send_ack(RP_FRAME_NAK);
        }
        return;
    }
    int16_t slots = check(payload, payload + len);
    if (slots < 0) {
        expected = (uint8_t)((expected + 1) & (RP_SEQ_MOD - 1));
        rp_link.bad_messages++;
        emit_event(RP_EV_BAD_MESSAGE, seq, RP_NO_ACTUATOR, board_clock());
        flush_out();
        send_ack(RP_FRAME_ACK);
        return;
    }
    if ((uint16_t)slots > rp_sched_free()) {
        send_ack(RP_FRAME_NAK);
        return;
    }
    expected = (uint8_t)((expected + 1) & (RP_SEQ_MOD - 1));
    run(payload, payload + len);
    events_out(); /* events of this frame go out before its ACK */
    send_ack(RP_FRAME_ACK);
}

/* Out of line: the frame handling inlined into rp_rx_byte() gave every byte its
 * register saves (measured under simavr: 5 % of the AVR's busy cycles). */
#if defined(__GNUC__)
#define RP_NOINLINE __attribute__((noinline))
#else
#define RP_NOINLINE
#endif
static RP_NOINLINE void rx_delimiter(uint8_t b);

void rp_rx_byte(uint8_t b)
{
    if (b && framer.len < sizeof framer.buf) { /* the common case: one more byte */
        framer.buf[framer.len++] = b;
        return;
    }
    rx_delimiter(b);
}

/* Bytes in bulk (issue 8: CPU load): a frame's bytes are copied in one loop, with no
 * call per byte; a delimiter (or a byte that does not fit) ends the run there, so that
 * the board frees the frame's bytes before the next frame is taken. */
uint8_t rp_rx_bytes(const uint8_t *p, uint8_t n)
{
    uint8_t len = framer.len;
    uint8_t room = (uint8_t)(sizeof framer.buf - len);
    uint8_t *d = framer.buf + len;
    uint8_t left = n;
    while (left) {
        uint8_t b = *p++;
        left--;
        if (!b || !room) {
            framer.len = (uint8_t)(sizeof framer.buf - room);
            rx_delimiter(b);
            return (uint8_t)(n - left);
        }
        *d++ = b;
        room--;
    }
    framer.len = (uint8_t)(sizeof framer.buf - room);
    return n;
}

static void rx_delimiter(uint8_t b)
{
    rp_frame f;
    int r = rp_framer_byte(&framer, b, &f);
    if (r == RP_FRAMER_FRAME)
        handle_frame(f.kind, f.seq, f.payload, f.len);
    else if (r < 0)
        bad_frame();
}

/* ---------------------------------------------------------------- loop and timer */

void rp_init(uint32_t id)
{
    boot_id = id;
    rp_framer_init(&framer);
    state = RP_STATE_UNCONFIGURED;
    rp_act_count = 0;
    rp_sched_reset();
    last_rx_clock = board_clock();
}

/* The watchdog's next action (docs/protocol.md "Watchdog"): READY, the clock it fires
 * at; DRAINING, the end of the drain (it also ends when the queue has played out, which
 * only the timer context's work changes: rp_poll() after rp_timer() sees it). */
uint8_t rp_watchdog_next(uint32_t *clock)
{
    if (state != RP_STATE_READY && state != RP_STATE_DRAINING)
        return 0;
    *clock = last_rx_clock + cfg_watchdog_ticks +
             (state == RP_STATE_DRAINING ? MS_TICKS(cfg_drain_ms) : 0);
    return 1;
}

static void watchdog(void)
{
    uint32_t now = board_clock();
    uint32_t quiet = now - last_rx_clock, fire = cfg_watchdog_ticks;
    if (state == RP_STATE_READY && quiet >= fire)
        state = RP_STATE_DRAINING; /* enqueue() refuses what comes now (REFUSED_STATE) */
    if (state != RP_STATE_DRAINING)
        return;
    rp_aid pulses;
    uint16_t queued;
    {
        rp_irq_t s = RP_IRQ_SAVE();
        pulses = rp_running_pulses;
        queued = rp_sched_queued();
        RP_IRQ_RESTORE(s);
    }
    /* the drain's end is measured from the last frame, not from when a poll noticed */
    if (quiet >= fire + MS_TICKS(cfg_drain_ms) || (!queued && !pulses))
        do_shutdown(RP_SHUTDOWN_WATCHDOG);
}

void rp_poll(void)
{
    watchdog();
    rp_sched_poll();
    if (RP_EVENT_PENDING() || out_len) /* (every tick: nothing to send, no calls) */
        events_out();
}

void rp_timer(void) { rp_sched_run(); }

uint8_t rp_poll_wanted(void) { return rp_event_pending(); }
