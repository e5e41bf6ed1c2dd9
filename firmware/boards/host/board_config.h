/* Host build: a POSIX process on a pty with a 1 MHz monotonic clock. */
#ifndef RP_BOARD_CONFIG_H
#define RP_BOARD_CONFIG_H

#define RP_BOARD_NAME "host"
#define RP_CLOCK_HZ 1000000UL
#define RP_QUEUE_SIZE 1024
#define RP_FW_MAX_ACTUATORS 512 /* past 255: the core keeps 16-bit indices */
#define RP_FW_MAX_PROFILES 64
#define RP_RX_BUFFER 4096
#define RP_MAX_ON_US_LIMIT 60000000UL
#define RP_FW_MAX_LEVEL 4095
/* an OS process can be descheduled for milliseconds on a busy machine */
#define RP_LATE_SLACK_US 10000
#define RP_EVENT_RING 64
#define RP_TIMER_LEAD_TICKS 0 /* the loop wakes at the clock itself */
#define RP_TIMER_LEAD_PER_CMD_TICKS 0

#include <stdint.h>

/* a prepared output write: the trace line is written at commit */
typedef struct {
    uint16_t actuator;
    uint16_t level;
} rp_out_t;
void host_output_write(uint16_t actuator, uint16_t level);
static inline void board_output_commit(const rp_out_t *o) { host_output_write(o->actuator, o->level); }

typedef int rp_irq_t; /* one thread: the loop calls rp_timer() itself */
#define RP_IRQ_SAVE() 0
#define RP_IRQ_RESTORE(s) ((void)(s))

/* constant tables: ordinary memory */
#define RP_TABLE
#define RP_TABLE_READ16(p) (*(p))
#define RP_TABLE_READ8(p) (*(p))

#endif
