/* AVR board: ATmega2560 (Arduino Mega) at 16 MHz.
 *
 * - Clock: Timer1 at 16 MHz (no prescaler), extended to 32 bits by its overflow
 *   interrupt. The core's timer requests go to OCR1A (compare A interrupt).
 * - UART0 at RP_BAUD (default 115200, U2X), interrupt-driven 256-byte receive ring
 *   and 128-byte transmit ring.
 * - Outputs: direct pins (pins.h; on when level > 0) and PCA9685 boards over TWI at
 *   400 kHz (12-bit PWM): an interrupt-driven write per channel change, started by the
 *   commit itself (RP_OUTPUT_LEAD_TICKS early, so that its STOP lands on the clock).
 * - Safety: the hardware watchdog (500 ms) resets a stuck MCU (every pin back to an
 *   input: off); the core's own watchdog handles a silent host.
 * - boot_id: EEPROM dword 0 (a seed) + 0x9E3779B9 * EEPROM dword 4 (a boot counter,
 *   incremented at every start). The simavr harness seeds it with --boot-id.
 * - The main loop sleeps (idle) when it has nothing to do: simavr counts the busy
 *   cycles for the CPU-load figure. */
#include <avr/eeprom.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <stdint.h>

#include "board.h"
#include "fw.h"
#include "pins.h"
#include "protocol_gen.h"
#include "sched.h"

#ifdef RP_SIM_SECTION
/* Tell simavr the MCU and frequency (ignored on real hardware: not loaded). */
#include RP_SIM_SECTION
AVR_MCU(F_CPU, "atmega2560");
#endif

#ifndef RP_BAUD
#define RP_BAUD 115200UL
#endif

/* ---------------------------------------------------------------- clock and timer */

static volatile uint16_t clock_hi;
static volatile uint8_t tick; /* set every timer period (4.1 ms): time for rp_poll() */
static volatile uint32_t timer_target;
static volatile uint8_t timer_far; /* armed, but more than one timer period ahead */

/* Interrupts off. The compare matches when TCNT1 reaches OCR1A: exactly at the target
 * when it is less than one timer period ahead; a target in the past (or closer than
 * 64 ticks) fires 64 ticks from now. */
static void set_compare(int32_t ahead)
{
    timer_far = 0;
    OCR1A = ahead < 64 ? (uint16_t)(TCNT1 + 64) : (uint16_t)timer_target;
    TIFR1 = _BV(OCF1A);
    TIMSK1 |= _BV(OCIE1A);
}

ISR(TIMER1_OVF_vect)
{
    clock_hi++;
    tick = 1;
    if (timer_far) {
        uint32_t now = ((uint32_t)clock_hi << 16) | TCNT1;
        if ((int32_t)(timer_target - now) < 0x10000L)
            set_compare((int32_t)(timer_target - now));
    }
}

uint32_t board_clock(void)
{
    uint8_t s = SREG;
    cli();
    union {
        uint32_t v;
        uint16_t w[2]; /* little-endian: w[0] low; no 32-bit shift */
    } c;
    c.w[1] = clock_hi;
    c.w[0] = TCNT1;
    if ((TIFR1 & _BV(TOV1)) && c.w[0] < 0x8000)
        c.w[1]++; /* the overflow happened but its interrupt has not run yet */
    SREG = s;
    return c.v;
}

void board_timer_arm(uint32_t clock)
{
    uint8_t s = SREG;
    cli();
    timer_target = clock;
    int32_t ahead = (int32_t)(clock - board_clock());
    if (ahead < 0xFFC0L) {
        set_compare(ahead);
    } else { /* the overflow interrupt sets the compare within the last period */
        timer_far = 1;
        TIMSK1 &= (uint8_t)~_BV(OCIE1A);
    }
    SREG = s;
}

/* Cycles from the end of board_wait_until() to the port write of the first output
 * (the return and board_output_commit()), measured in simavr: the wait ends this
 * much early so that the pin changes at the commanded clock. */
#define OUTPUT_PATH_TICKS 100

void board_wait_until(uint32_t clock)
{
    /* timer context, interrupts off, `clock` within RP_TIMER_LEAD_TICKS plus the batch
     * window of now (far less than half a timer period): TCNT1 alone decides */
    uint16_t lo = (uint16_t)(clock - OUTPUT_PATH_TICKS);
    while ((int16_t)(TCNT1 - lo) < 0)
        ;
}

ISR(TIMER1_COMPA_vect)
{
    TIMSK1 &= (uint8_t)~_BV(OCIE1A); /* one shot: rp_timer() re-arms */
    rp_timer();
}

/* ---------------------------------------------------------------- UART0 */

#define RX_RING RP_RX_BUFFER /* a power of two; holds RX_RING - 1 bytes */
#define TX_RING 128
static volatile uint8_t rx_ring[RX_RING];
#if RX_RING == 256
typedef uint8_t rx_index_t; /* wraps by itself, and reads atomically */
#define RX_NEXT(i) ((uint8_t)((i) + 1))
#else
typedef uint16_t rx_index_t; /* the main loop reads rx_head with interrupts off */
#define RX_NEXT(i) ((uint16_t)(((i) + 1) & (RX_RING - 1)))
#endif
static volatile rx_index_t rx_head, rx_tail;
static volatile uint8_t tx_ring[TX_RING];
static volatile uint8_t tx_head, tx_tail;
static volatile uint16_t rx_overruns;

ISR(USART0_RX_vect)
{
    uint8_t b = UDR0;
    rx_index_t next = RX_NEXT(rx_head);
    if (next == rx_tail) {
        rx_overruns++; /* the frame it belonged to fails its CRC: NAK, resend */
        return;
    }
    rx_ring[rx_head] = b;
    rx_head = next;
}

ISR(USART0_UDRE_vect)
{
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx_ring[tx_tail];
    tx_tail = (uint8_t)((tx_tail + 1) & (TX_RING - 1));
}

void board_write(const uint8_t *data, uint16_t len)
{
    while (len--) {
        uint8_t next = (uint8_t)((tx_head + 1) & (TX_RING - 1));
        while (next == tx_tail)
            ; /* full: the UDRE interrupt drains it */
        tx_ring[tx_head] = *data++;
        tx_head = next;
        UCSR0B |= _BV(UDRIE0);
    }
}

static void uart_init(void)
{
    UCSR0A = _BV(U2X0);
    uint16_t ubrr = (uint16_t)((F_CPU / 8 + RP_BAUD / 2) / RP_BAUD - 1);
    UBRR0H = (uint8_t)(ubrr >> 8);
    UBRR0L = (uint8_t)ubrr;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00); /* 8N1 */
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

/* ---------------------------------------------------------------- outputs */

static const uint8_t pins[RP_AVR_DIRECT_OUTPUTS] PROGMEM = RP_AVR_PINS_INIT;

static volatile uint8_t *const port_regs[11] PROGMEM = {
    &PORTA, &PORTB, &PORTC, &PORTD, &PORTE, &PORTF, &PORTG, &PORTH, &PORTJ, &PORTK, &PORTL,
};

static volatile uint8_t *port_reg(uint8_t port)
{
    return (volatile uint8_t *)pgm_read_ptr(&port_regs[port]);
}

/* DDRx is the byte below PORTx on every port of the ATmega2560. */
#define DDR_OF(port_reg) (*((port_reg) - 1))

/* PCA9685: levels waiting to be written (dirty bit per actuator). */
static uint16_t pca_level[RP_FW_MAX_ACTUATORS];
static volatile uint8_t pca_dirty[(RP_FW_MAX_ACTUATORS + 7) / 8];
static uint8_t pca_inited[64 / 8]; /* I2C addresses 0x40..0x7F */
static void pca_kick(void);

void board_output_prepare(uint8_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t level, uint16_t pwm_max, rp_out_t *o)
{
    (void)out_addr;
    o->actuator = actuator;
    if (out_kind == RP_OUT_DIRECT) {
        uint8_t pb = pgm_read_byte(&pins[out_channel]);
        o->port = port_reg(pb >> 3);
        o->mask = (uint8_t)(1 << (pb & 7));
        o->on = level != 0;
        DDR_OF(o->port) |= o->mask; /* an output (low = off until the commit) */
        return;
    }
    o->port = 0;
    /* 12-bit PCA9685 counts from the actuator's own scale */
    o->level = (uint16_t)(((uint32_t)level * 4095UL + pwm_max / 2) / pwm_max);
}

/* Direct outputs by port (PORTA..PORTL): the bits board_all_off() clears. */
static uint8_t direct_mask[11];
static volatile uint8_t pca_all_off; /* ALL_LED_OFF to every board, before anything else */

static void outputs_init(void)
{
    for (uint8_t k = 0; k < RP_AVR_DIRECT_OUTPUTS; k++) {
        uint8_t pb = pgm_read_byte(&pins[k]);
        direct_mask[pb >> 3] |= (uint8_t)(1 << (pb & 7));
    }
}

/* Interrupts off: 11 read-modify-writes, about 10 us. PCA9685 boards get ALL_LED_OFF
 * next on the bus (after the transaction in flight, if any). */
void board_all_off(void)
{
    for (uint8_t p = 0; p < 11; p++)
        if (direct_mask[p])
            *port_reg(p) &= (uint8_t)~direct_mask[p];
    pca_all_off = 1;
    pca_kick();
}

/* Interrupts off (the timer context's commit, or a critical section). */
void avr_pca_set(uint8_t actuator, uint16_t level)
{
    pca_level[actuator] = level;
    pca_dirty[actuator >> 3] |= (uint8_t)(1 << (actuator & 7));
    pca_kick();
}

uint8_t board_output_ok(uint8_t out_kind, uint8_t out_addr, uint8_t out_channel)
{
    if (out_kind == RP_OUT_DIRECT)
        return out_channel < RP_AVR_DIRECT_OUTPUTS;
    /* 0x70 is every PCA9685's power-on ALL CALL address: a write there reaches every
     * board not yet set up */
    return out_kind == RP_OUT_PCA9685 && out_addr >= 0x40 && out_addr <= 0x7F &&
           out_addr != 0x70 && out_channel < 16;
}

/* ---- TWI engine: interrupt-driven, one write transaction at a time. The commit of a
 * PCA9685 level starts its transaction at once when the bus is idle (the core starts
 * such commands RP_OUTPUT_LEAD_TICKS early, so that the STOP, where the chip takes the
 * new value, comes at the commanded clock); each bus step then costs one short
 * interrupt. Jobs, in order: ALL_LED_OFF to every board set up (all-off), a board's
 * set-up (3 transactions), the dirty channels (lowest actuator first). */
static uint8_t twi_addr, twi_len, twi_pos, twi_buf[5];
static volatile uint8_t twi_busy;
static volatile uint8_t twi_progress; /* bumped at every bus step: the stuck-bus check */
static volatile uint16_t twi_errors;  /* NACKs, bus errors, stuck transactions */
static uint8_t alloff_next;           /* all-off: the next board index to send */
static uint8_t setup_addr, setup_step; /* a board being set up (step 0: none) */

#define TWCR_GO (_BV(TWINT) | _BV(TWEN) | _BV(TWIE))

static void twi_begin(uint8_t addr, uint8_t len)
{
    twi_addr = addr;
    twi_len = len;
    twi_pos = 0;
    twi_busy = 1;
    while (TWCR & _BV(TWSTO))
        ; /* the last STOP is still going out: about one SCL period */
    TWCR = (uint8_t)(TWCR_GO | _BV(TWSTA));
}

/* Interrupts off. Starts the next job, if any and the bus is free. */
static void pca_kick(void)
{
    if (twi_busy)
        return;
    if (pca_all_off) {
        while (alloff_next < 64) { /* a byte of the bitmap at a time: short with no board */
            uint8_t ai = alloff_next++, m = pca_inited[ai >> 3];
            if (!m) {
                alloff_next = (uint8_t)((ai | 7) + 1);
            } else if (m & (1 << (ai & 7))) {
                twi_buf[0] = 0xFD; /* ALL_LED_OFF_H: full off, every channel */
                twi_buf[1] = 0x10;
                twi_begin((uint8_t)(0x40 + ai), 2);
                return;
            }
        }
        alloff_next = 0;
        pca_all_off = 0;
    }
    if (setup_step) { /* MODE1: auto-increment + sleep; PRE_SCALE 5 (~1 kHz); MODE1: wake */
        static const uint8_t setup[3][2] PROGMEM = {{0x00, 0x30}, {0xFE, 5}, {0x00, 0x20}};
        uint8_t k = (uint8_t)(setup_step - 1);
        twi_buf[0] = pgm_read_byte(&setup[k][0]);
        twi_buf[1] = pgm_read_byte(&setup[k][1]);
        if (++setup_step == 4) {
            setup_step = 0;
            uint8_t ai = (uint8_t)(setup_addr - 0x40);
            pca_inited[ai >> 3] |= (uint8_t)(1 << (ai & 7));
        }
        twi_begin(setup_addr, 2);
        return;
    }
    for (uint8_t byte = 0; byte < sizeof pca_dirty; byte++) {
        uint8_t d = pca_dirty[byte];
        if (!d)
            continue;
        uint8_t bit = 0;
        while (!(d & (1 << bit)))
            bit++;
        uint8_t n = (uint8_t)(byte * 8 + bit);
        uint8_t a = rp_acts[n].out_addr, ai = (uint8_t)(a - 0x40);
        if (!(pca_inited[ai >> 3] & (1 << (ai & 7)))) {
            setup_addr = a; /* set the board up first; the channel stays dirty */
            setup_step = 1;
            pca_kick();
            return;
        }
        pca_dirty[byte] = (uint8_t)(d & ~(1 << bit));
        uint16_t lv = pca_level[n];
        twi_buf[0] = (uint8_t)(0x06 + 4 * rp_acts[n].out_channel); /* LEDn_ON_L */
        twi_buf[1] = 0;                                             /* ON = 0 */
        twi_buf[2] = 0;
        twi_buf[3] = (uint8_t)lv; /* OFF = lv */
        twi_buf[4] = (uint8_t)(lv >> 8);
        if (lv >= 4095) {
            twi_buf[2] = 0x10; /* full on */
            twi_buf[3] = twi_buf[4] = 0;
        } else if (lv == 0) {
            twi_buf[4] = 0x10; /* full off */
        }
        twi_begin(a, 5);
        return;
    }
}

ISR(TWI_vect)
{
    uint8_t st = TWSR & 0xF8;
    twi_progress++;
    if (st == 0x08 || st == 0x10) { /* START sent: the address, write */
        TWDR = (uint8_t)(twi_addr << 1);
        TWCR = TWCR_GO;
        return;
    }
    if ((st == 0x18 || st == 0x28) && twi_pos < twi_len) { /* ACKed: the next byte */
        TWDR = twi_buf[twi_pos++];
        TWCR = TWCR_GO;
        return;
    }
    if (st != 0x18 && st != 0x28)
        twi_errors++; /* NACK (no board there), arbitration lost, bus error: drop it */
    TWCR = _BV(TWINT) | _BV(TWSTO) | _BV(TWEN); /* STOP: the chip takes the values now */
    twi_busy = 0;
    pca_kick();
}

/* Main loop, every timer period (4.1 ms): a transaction that made no progress for a
 * whole period (a slave holding the bus) is abandoned and the TWI reset. */
static void twi_check(void)
{
    static uint8_t last_progress, stuck;
    cli();
    if (twi_busy && twi_progress == last_progress) {
        if (++stuck >= 2) {
            TWCR = 0; /* release the bus */
            twi_busy = 0;
            twi_errors++;
            stuck = 0;
            pca_kick();
        }
    } else {
        stuck = 0;
    }
    last_progress = twi_progress;
    sei();
}

/* ---------------------------------------------------------------- start and loop */

/* The watchdog stays enabled across its own reset: turn it off first thing. */
void wdt_off_early(void) __attribute__((naked, used, section(".init3")));
void wdt_off_early(void)
{
    MCUSR = 0;
    wdt_disable();
}

static uint32_t make_boot_id(void)
{
    uint32_t seed = eeprom_read_dword((const uint32_t *)0);
    uint32_t count = eeprom_read_dword((const uint32_t *)4);
    eeprom_update_dword((uint32_t *)4, count + 1);
    return seed + 0x9E3779B9UL * count;
}

int main(void)
{
    TCCR1A = 0;
    TCCR1B = _BV(CS10); /* 16 MHz */
    TIMSK1 = _BV(TOIE1);
    TWSR = 0;
    TWBR = 12; /* 400 kHz at 16 MHz */
    uart_init();
    outputs_init();
    rp_init(make_boot_id());
    wdt_enable(WDTO_500MS);
    sei();
    for (;;) {
        wdt_reset();
        for (;;) {
            cli();
            rx_index_t head = rx_head;
            sei();
            rx_index_t tail = rx_tail;
            if (tail == head)
                break;
            do { /* the bytes that were there; then look again */
                uint8_t b = rx_ring[tail];
                tail = RX_NEXT(tail);
                rx_tail = tail;
                rp_rx_byte(b); /* a whole frame also runs rp_poll() */
            } while (tail != head);
        }
        /* not on every wake-up (each byte in or out wakes us): events, and every tick */
        if (tick || RP_EVENT_PENDING()) {
            if (tick)
                twi_check();
            tick = 0;
            rp_poll();
        }
        cli();
        if (rx_tail == rx_head) {
            /* idle until an interrupt: UART, timer compare, or the 4 ms overflow */
            set_sleep_mode(SLEEP_MODE_IDLE);
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        }
        sei();
    }
}
