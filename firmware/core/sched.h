/* Scheduler: the time-sorted command queue, the actuators' strike -> hold -> release
 * sequence, and the safety limits the firmware enforces on its own (max on-time,
 * concurrent strikes, duty cycle). Portable: time comes from board_clock(), outputs go
 * to board_output(), and rp_sched_run() runs in the timer context (the AVR compare
 * ISR; the host board's loop). Everything else runs in the main loop and takes a
 * critical section where it touches what the timer context touches. */
#ifndef RP_SCHED_H
#define RP_SCHED_H

#include <stdint.h>
#include "board.h"
#include "protocol_gen.h"

#define RP_TICKS_PER_US (RP_CLOCK_HZ / 1000000UL)

/* An actuator's index inside the firmware: a byte where the board holds fewer than 255
 * actuators (the AVR: 128), else 16 bits (the host: 1024). The wire carries 10 bits;
 * an index at or past RP_FW_MAX_ACTUATORS never reaches the scheduler (REFUSED_RANGE). */
#if RP_FW_MAX_ACTUATORS < 255
typedef uint8_t rp_aid;
#define RP_AID_NONE 0xFFU
#else
typedef uint16_t rp_aid;
#define RP_AID_NONE 0xFFFFU
#endif
#if RP_FW_MAX_ACTUATORS > RP_MAX_ACTUATORS
#error "RP_FW_MAX_ACTUATORS: at most RP_MAX_ACTUATORS (the protocol's 10-bit index)"
#endif

/* One queued command: 13 bytes on the AVR (no padding there). `index` keeps the low
 * 16 bits of the record index (the queue never spans more than 65535 records). The
 * duty weights of `level` and `hold` are not stored: the main loop works them out when
 * it integrates the change log (rp_weight()), so a slot stays small. */
typedef struct {
    uint32_t clock;
    uint16_t index;
    rp_aid actuator;
    uint16_t level;     /* strike drive or set level (<= RP_MAX_LEVEL: 12 bits) */
    uint16_t pulse_us;
    uint16_t hold : 12; /* strike: the level after the pulse */
    uint16_t op : 4;    /* RP_OP_* */
} rp_cmd;

enum { RP_PHASE_OFF = 0, RP_PHASE_PULSE, RP_PHASE_HOLD, RP_PHASE_SET };

/* An actuator's limits. Actuators with the same limits share one entry (a piano's keys
 * all have one, its pedal another), so each actuator keeps a byte, not 14: a
 * configuration with more distinct sets than RP_FW_MAX_PROFILES is refused
 * (LIMIT_OUT_OF_RANGE, detail = the first actuator that did not fit). */
#ifndef RP_FW_MAX_PROFILES
#define RP_FW_MAX_PROFILES 8
#endif
typedef struct {
    uint32_t max_on_ticks;
    uint16_t pwm_max, max_drive, max_pulse_us, duty_permille;
    uint16_t drain_k; /* bucket drain per 64 us, in 1/256 us: 64 * 256 * duty_permille / 1000 */
    uint32_t cap_us;  /* the duty bucket's size: duty_window_ms * duty_permille */
} rp_limits;
extern rp_limits rp_profiles[RP_FW_MAX_PROFILES];
extern uint8_t rp_profile_count;
#define RP_LIM(a) (&rp_profiles[(a)->profile])

/* One actuator: 25 bytes on the AVR (was 40: the limits went to rp_profiles, the
 * bucket's clock is a 16-bit count of 64 us units). */
typedef struct {
    /* configuration: the output (the board's hook table reads it) and the limits */
    uint8_t out_kind, out_addr, out_channel;
    uint8_t profile; /* index into rp_profiles */
    /* state: the timer context's */
    uint8_t phase;
    uint16_t hold;     /* PULSE: the level after the pulse */
    uint32_t cutoff;   /* max on-time: the coil goes off at this clock (while not OFF) */
    uint32_t deadline; /* pulse end or the cutoff, while not OFF */
    uint16_t strike_index; /* low 16 bits, like rp_cmd.index */
    /* state: the main loop's duty bucket */
    uint32_t bucket_us;   /* duty leaky bucket: weighted on-time, microseconds */
    uint16_t bucket_unit; /* integrated up to this 64 us unit of the clock (mod 2^16) */
    uint8_t weight; /* (level/pwm_max)^2 of the present level, 255 = full */
    uint8_t hot;    /* bucket full: strikes and sets are refused (read by the timer too) */
} rp_act;

typedef struct {
    uint8_t kind;
    uint16_t actuator; /* as the host sent it (a refused index may be out of range) */
    uint32_t index, clock;
} rp_event;

typedef struct {
    uint32_t played, late, refused, flushed, cutoffs;
} rp_counters;

extern rp_act rp_acts[RP_FW_MAX_ACTUATORS];
extern uint16_t rp_act_count;
extern rp_aid rp_max_concurrent;
extern uint32_t rp_duty_window_ms;
/* A coil's duty bucket holds duty_window_ms * duty_permille / 1000 ms = this many us. */
#define RP_BUCKET_CAP_US(a) (RP_LIM(a)->cap_us)
extern rp_counters rp_count;
extern volatile rp_aid rp_running_pulses;

/* (level / pwm_max)^2 in 1/255 (main loop: it divides). */
uint8_t rp_weight(uint16_t pwm_max, uint16_t level);

void rp_sched_reset(void);                  /* all off, queue flushed silently, counters 0 */
uint16_t rp_sched_free(void);               /* free queue slots */
/* Staging for the frame parser: the free slots after the queue's tail hold a frame's
 * decoded records between its check and its run, so it is parsed once. The tail never
 * moves back (flushes keep it), so slot k stays free until the k-th push after
 * rp_sched_stage_begin(): read it before that push. */
void rp_sched_stage_begin(void);
rp_cmd *rp_sched_stage(uint16_t k); /* k < the free slots at rp_sched_stage_begin() */
uint16_t rp_sched_queued(void);
/* Queue a command; 0 if the queue is full (the frame pre-check prevents that). */
uint8_t rp_sched_push(const rp_cmd *c);
/* Queue the command built in place in staging slot `s` (rp_sched_stage()): at the
 * tail and in time order (the usual case) it is queued without a copy; else it is
 * copied and pushed. 0 if the queue is full. */
uint8_t rp_sched_commit(rp_cmd *s);
/* Flush the queue and turn every output off (all_off, shutdown, watchdog); reports
 * FLUSHED if anything was queued. Uses `next_index` to rebuild the 32-bit indices. */
void rp_sched_all_off(uint32_t next_index);
/* Timer context: run everything due within RP_TIMER_LEAD_TICKS, then arm the timer
 * that much before the next thing. Commands due at the same clock are decided first,
 * then board_wait_until(clock), then their outputs written back to back, and only then
 * the bookkeeping: the outputs of a chord leave within a few cycles of each other. */
void rp_sched_run(void);
/* Main loop: duty-bucket upkeep for energised coils (cutoff when a bucket overflows). */
void rp_sched_poll(void);
/* Run a (late) release now: main-loop context. */
void rp_sched_release_now(rp_aid actuator);
/* Hottest coil: permille of its bucket, and which (RP_NO_ACTUATOR if none). */
uint16_t rp_sched_heat(uint16_t *actuator);

/* Events: written by both contexts, read by the main loop. */
void rp_event_push(uint8_t kind, uint32_t index, uint16_t actuator, uint32_t clock);
uint8_t rp_event_pop(rp_event *ev);
uint8_t rp_event_pending(void);
/* the same, inline (the main loop asks at every wake-up) */
extern volatile uint8_t rp_ev_head, rp_ev_tail; /* next to read, next to write */
#define RP_EVENT_PENDING() (rp_ev_head != rp_ev_tail)

/* The record index the host knows for a queued entry's 16-bit index. */
uint32_t rp_full_index(uint16_t low, uint32_t next_index);

extern volatile uint32_t rp_next_index_snapshot; /* for the timer context's events */

#endif
