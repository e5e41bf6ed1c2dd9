/* AVR build: ATmega2560 (Arduino Mega) at 16 MHz. RAM is 8 KiB: the queue and the
 * actuator table are sized to leave room for the stack (see `make avr`). */
#ifndef RP_BOARD_CONFIG_H
#define RP_BOARD_CONFIG_H

#include <avr/interrupt.h>
#include <avr/io.h>

#define RP_BOARD_NAME "avr-mega2560"
#define RP_CLOCK_HZ 16000000UL
#define RP_QUEUE_SIZE 160
#define RP_FW_MAX_ACTUATORS 90 /* 88 keys + pedal + 1 */
#define RP_RX_BUFFER 256 /* = the UART receive ring (a power of two) */
#define RP_MAX_ON_US_LIMIT 60000000UL
#define RP_FW_MAX_LEVEL 4095
#define RP_LATE_SLACK_US 500
#define RP_EVENT_RING 8
/* the compare interrupt fires early: 40 us, plus 60 us for each command due at that
 * clock (its decision and output lookups, measured in simavr: about 620 cycles); then
 * the core spins to the exact tick */
#define RP_TIMER_LEAD_TICKS (40U * 16U)
#define RP_TIMER_LEAD_PER_CMD_TICKS (60U * 16U)
/* commands this close to the first one are decided with it: their outputs then need
 * only the wait and the port write (the bookkeeping of each comes after all of them) */
#define RP_BATCH_WINDOW_TICKS (120U * 16U)
/* cycles between two output writes of one clock (measured in simavr) */
#define RP_OUTPUT_SPACING_TICKS 127U

/* A PCA9685 channel changes at the STOP of its write, which the commit starts: START,
 * SLA+W, the register and 4 bytes, STOP at 400 kHz plus one interrupt per step
 * (measured under simavr: 215 us from commit to STOP, 196..235 us with nothing else
 * on the bus). Its commands are queued that early. */
#define RP_PCA_WRITE_TICKS 3440U
#define RP_OUTPUT_LEAD_TICKS(out_kind) ((out_kind) == RP_OUT_PCA9685 ? RP_PCA_WRITE_TICKS : 0U)

/* a prepared output write: a direct pin's port and mask, or a PCA9685 level */
typedef struct {
    volatile uint8_t *port; /* 0: a PCA9685 channel */
    uint8_t mask, on, actuator;
    uint16_t level;
} rp_out_t;
void avr_pca_set(uint8_t actuator, uint16_t level);
static inline void board_output_commit(const rp_out_t *o)
{
    if (!o->port)
        avr_pca_set(o->actuator, o->level);
    else if (o->on)
        *o->port |= o->mask;
    else
        *o->port &= (uint8_t)~o->mask;
}

typedef uint8_t rp_irq_t;
static inline rp_irq_t rp_irq_save(void)
{
    rp_irq_t s = SREG;
    cli();
    return s;
}
#define RP_IRQ_SAVE() rp_irq_save()
#define RP_IRQ_RESTORE(s) (SREG = (s))
/* The compare interrupt lets the UART and overflow interrupts in while it decides (they
 * touch none of the core's state; its own compare stays masked until it re-arms with
 * interrupts shut), so a batch of commands does not stall the line; the wait and the
 * port writes run with interrupts off. */
#define RP_TIMER_OPEN() sei()
#define RP_TIMER_CLOSE() cli()

/* constant tables stay in flash */
#include <avr/pgmspace.h>
#define RP_TABLE PROGMEM
#define RP_TABLE_READ16(p) pgm_read_word(p)

#endif
