/* The firmware core's entry points; a board's main() calls them.
 *
 *   rp_init(boot_id)          once, at start (all outputs off, state UNCONFIGURED)
 *   rp_rx_byte(b)             main loop: every byte received from the host
 *   rp_rx_bytes(p, n)         main loop: the same for n bytes at once (up to and
 *                             including the first delimiter, which runs its frame);
 *                             returns how many it took: the board frees those and
 *                             calls again with the rest
 *   rp_poll()                 main loop: watchdog, duty upkeep, events -> host; after
 *                             received bytes, when rp_poll_wanted(), and at least
 *                             every few milliseconds
 *   rp_timer()                timer context: when the clock reaches what the core
 *                             asked for with board_timer_arm()
 *   rp_watchdog_next(&clock)  when rp_poll() must run next for the watchdog
 *
 * The frame parser never acts on a frame whose COBS, length or CRC is wrong, and
 * resyncs at the next 0x00. See docs/protocol.md for the rules. */
#ifndef RP_FW_H
#define RP_FW_H

#include <stdint.h>

#define RP_FW_VERSION 0x0100 /* 1.0 */

void rp_init(uint32_t boot_id);
void rp_rx_byte(uint8_t b);
uint8_t rp_rx_bytes(const uint8_t *p, uint8_t n);
void rp_poll(void);
uint8_t rp_poll_wanted(void); /* events are waiting to be sent */
void rp_timer(void);
/* The clock at which rp_poll() must next run for the watchdog (1), or 0: none armed.
 * A board that sleeps between polls wakes for it (the host build does). */
uint8_t rp_watchdog_next(uint32_t *clock);

/* For tests and the fuzzer: counters of the link layer. */
typedef struct {
    uint32_t frames_ok, bad_frames, bad_messages, duplicates, naks_sent;
} rp_link_stats;
extern rp_link_stats rp_link;
uint8_t rp_state(void);

#endif
