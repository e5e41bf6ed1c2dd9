/* AVR build: ATmega2560 (Arduino Mega) at 16 MHz. RAM is 8 KiB: the queue and the
 * actuator table are sized to leave room for the stack (see `make avr`). */
#ifndef RP_BOARD_CONFIG_H
#define RP_BOARD_CONFIG_H

#include <avr/interrupt.h>
#include <avr/io.h>

#define RP_BOARD_NAME "avr-mega2560"
#define RP_CLOCK_HZ 16000000UL
#define RP_QUEUE_SIZE 80
#define RP_FW_MAX_ACTUATORS 90 /* 88 keys + pedal + 1 */
#define RP_RX_BUFFER 256 /* = the UART receive ring */
#define RP_MAX_ON_US_LIMIT 60000000UL
#define RP_FW_MAX_LEVEL 4095
#define RP_LATE_SLACK_US 500
#define RP_EVENT_RING 8
/* the compare interrupt fires 100 us early: decisions, then a spin to the exact tick
 * (at 100 notes/s about 3 % of the CPU) */
#define RP_TIMER_LEAD_TICKS (100UL * 16UL)

typedef uint8_t rp_irq_t;
static inline rp_irq_t rp_irq_save(void)
{
    rp_irq_t s = SREG;
    cli();
    return s;
}
#define RP_IRQ_SAVE() rp_irq_save()
#define RP_IRQ_RESTORE(s) (SREG = (s))

#endif
