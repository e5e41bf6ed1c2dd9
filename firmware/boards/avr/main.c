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
#include "out_pwm.h"
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

volatile uint16_t avr_clock_hi; /* Timer1's overflows: the clock's high word */
static volatile uint8_t tick; /* set every timer period (4.1 ms): time for rp_poll() */
/* The main loop has work: a frame's delimiter came, the tick, an event from the timer
 * context. One flag, so that a wake-up without work (every byte in or out) goes back to
 * sleep in a few cycles. */
/* In GPIOR0 (bit 0): set with one SBI in the interrupts (no register), tested with one
 * SBIS by the main loop's sleep, which runs at every interrupt (about 22 000 times in
 * driver_load.py's run: issue 8, CPU load). */
#define WAKE_BIT 0
#define WAKE() (GPIOR0 |= _BV(WAKE_BIT))
#define WAKE_CLEAR() (GPIOR0 &= (uint8_t)~_BV(WAKE_BIT))
#define WOKEN() (GPIOR0 & _BV(WAKE_BIT))
/* The target, and its two halves (little-endian) without a 32-bit shift. */
static volatile union {
    uint32_t v;
    uint16_t w[2];
} timer_target;
/* armed for a later timer period: the compare is off until the overflow interrupt
 * enters the target's period */
static volatile uint8_t timer_far;

/* Interrupts off. The compare matches when TCNT1 reaches OCR1A: exactly at the target
 * when it is less than one timer period ahead; a target in the past (or closer than
 * 64 ticks) fires 64 ticks from now. */
static void set_compare(int32_t ahead)
{
    timer_far = 0;
    OCR1A = ahead < 64 ? (uint16_t)(TCNT1 + 64) : timer_target.w[0];
    TIFR1 = _BV(OCF1A);
    TIMSK1 |= _BV(OCIE1A);
}

/* Interrupts off: a far target's period has come; its compare matches at its low 16
 * bits, or 64 ticks from now if they passed while this interrupt waited. */
static inline void arm_far_now(void)
{
    timer_far = 0;
    uint16_t lo = timer_target.w[0], now = TCNT1;
    OCR1A = lo < (uint16_t)(now + 64) ? (uint16_t)(now + 64) : lo; /* (now: the period's start) */
    TIFR1 = _BV(OCF1A);
    TIMSK1 |= _BV(OCIE1A);
}

/* No 32-bit work: it runs 244 times a second (its register saves were 2 % of the busy
 * cycles at 100 notes/s when it also handled far timer targets). A far target (the
 * next command more than a period ahead: at 100 notes/s, every one) is armed here, at
 * the start of its period: its compare used to match once every period before it and
 * return (1004 of the 1910 compare interrupts of driver_load.py's run, 140 k cycles). */
ISR(TIMER1_OVF_vect)
{
    uint16_t hi = (uint16_t)(avr_clock_hi + 1);
    avr_clock_hi = hi;
    tick = 1;
    WAKE();
    if (timer_far && timer_target.w[1] == hi)
        arm_far_now();
}

/* board_clock(): inline, in board_config.h */

void board_timer_arm(uint32_t clock)
{
    uint8_t s = SREG;
    cli();
    timer_target.v = clock;
    uint32_t now = board_clock();
    int32_t ahead = (int32_t)(clock - now);
    if (ahead < 0xFFC0L || timer_target.w[1] == (uint16_t)(now >> 16)) {
        set_compare(ahead); /* (far, but in this period: its compare matches exactly) */
    } else {
        /* a later period: the compare stays off until the overflow interrupt enters
         * the target's period (one still pending sees the flag: board_clock() counted
         * it, and the target is past the period it starts) */
        timer_far = 1;
        TIMSK1 &= (uint8_t)~_BV(OCIE1A);
    }
    SREG = s;
}

/* Cycles from the end of board_wait_until() to the port write of the first output
 * (the return and board_output_commit()), measured in simavr: the wait ends this
 * much early so that the pin changes at the commanded clock. */
#define OUTPUT_PATH_TICKS 110 /* -O2 with the sleeping wait: bench_link p99 0.7 us (120: 1.3-1.4, 132: 2.4); -Os: 110; -O2 before: 120 */

/* The wait sleeps (idle, interrupts on) until WAIT_WAKE_TICKS before the end, on
 * Timer1's compare C, and spins only the rest with interrupts off: the CPU is not busy
 * while it waits (issue 8: CPU load; the spin was 5 % of the busy cycles at 100
 * notes/s), and the interrupts-off stretch is at most WAIT_WAKE_TICKS plus the output
 * path. An interrupt that starts just before the wake (a UART byte: about 50 cycles,
 * the clock overflow: about 60) ends inside WAIT_WAKE_TICKS: the wake-up itself takes
 * about 35 cycles to the spin. 128 (was 200: 72 k of driver_load.py's busy cycles). */
#define WAIT_WAKE_TICKS 128U
#define WAIT_SLEEP_MIN_TICKS (WAIT_WAKE_TICKS + 100U) /* shorter: spin only */
/* The core waits at most its lead plus the batch window ahead (RP_TIMER_LEAD_TICKS +
 * BATCH * RP_TIMER_LEAD_PER_CMD_TICKS + RP_BATCH_WINDOW_TICKS: 10,368 ticks, 648 us);
 * a 16-bit difference beyond this means a target in the past (a late command or
 * deadline): return at once. Compared as 16 bits without this bound, a target more than
 * 2.05 ms in the past looked ahead, and the wait spun with interrupts off until the
 * timer wrapped (issue 9: up to 4.1 ms). */
#define WAIT_MAX_AHEAD_TICKS 0x4000U

ISR(TIMER1_COMPC_vect, ISR_NAKED) { __asm__ __volatile__("reti"); } /* wakes the wait */

void board_wait_until(uint32_t clock)
{
    /* timer context, interrupts off */
    uint16_t lo = (uint16_t)(clock - OUTPUT_PATH_TICKS);
    uint16_t left = (uint16_t)(lo - TCNT1);
    if (left > WAIT_MAX_AHEAD_TICKS)
        return; /* due already (or past) */
    if (left > WAIT_SLEEP_MIN_TICKS) {
        uint16_t wake_at = (uint16_t)(lo - WAIT_WAKE_TICKS);
        OCR1C = wake_at;
        TIFR1 = _BV(OCF1C);
        TIMSK1 |= _BV(OCIE1C);
        while ((int16_t)(TCNT1 - wake_at) < 0) {
            sei(); /* the SLEEP runs before any interrupt: the compare cannot be missed */
            sleep_cpu(); /* SE is set (main): idle */
            __asm__ __volatile__("nop"); /* see main(): simavr serves a pending one here */
            cli();
        }
        TIMSK1 &= (uint8_t)~_BV(OCIE1C);
    }
    while ((int16_t)(TCNT1 - lo) < 0)
        ;
}

ISR(TIMER1_COMPA_vect)
{
    TIMSK1 &= (uint8_t)~_BV(OCIE1A); /* one shot: rp_timer() re-arms */
    rp_timer();
    avr_pwm_release(); /* (RP_TIMER_CLOSE held the PWM's interrupts off) */
    if (RP_EVENT_PENDING())
        WAKE(); /* the main loop sends them */
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

/* The two UART interrupts run for every byte in and out (about 2000 a second at 100
 * notes/s): written out by hand, they save what avr-gcc's prologue saves for any
 * interrupt (r0, r1, RAMPZ: about 19 cycles of 65 per byte; issue 8: CPU load), and
 * keep r24 and SREG in GPIOR1/GPIOR2 as the soft PWM's compare B does (out_pwm.c: 4
 * cycles a byte less than a PUSH and a POP each; none of these interrupts lets another
 * in). The C form (below) is the reference, and builds where the ring is not 256 bytes. */
#if RX_RING == 256 && TX_RING == 128
ISR(USART0_RX_vect, ISR_NAKED)
{
    __asm__ __volatile__(
        "out %[gp1], r24\n\t"      /* r24 and SREG in GPIOR1/2, not pushed */
        "in r24, __SREG__\n\t"
        "out %[gp2], r24\n\t"
        "push r25\n\t"
        "push r30\n\t"
        "push r31\n\t"
        "lds r25, %[udr]\n\t"        /* b = UDR0 */
        "lds r30, %[head]\n\t"
        "mov r24, r30\n\t"
        "subi r24, 0xFF\n\t"         /* next = head + 1 (a byte: wraps at 256) */
        "lds r31, %[tail]\n\t"
        "cp r24, r31\n\t"
        "breq 2f\n\t"                /* full: an overrun */
        "ldi r31, 0\n\t"
        "subi r30, lo8(-(%[ring]))\n\t"
        "sbci r31, hi8(-(%[ring]))\n\t"
        "st Z, r25\n\t"             /* rx_ring[head] = b */
        "sts %[head], r24\n\t"
        "tst r25\n\t"
        "brne 1f\n\t"
        "sbi %[gpior], %[wakebit]\n\t" /* a delimiter: the main loop takes the frame */
        "1:\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "pop r25\n\t"
        "in r24, %[gp2]\n\t"
        "out __SREG__, r24\n\t"
        "in r24, %[gp1]\n\t"
        "reti\n\t"
        "2:\n\t"
        "lds r24, %[ovr]\n\t"
        "lds r25, %[ovr]+1\n\t"
        "adiw r24, 1\n\t"
        "sts %[ovr]+1, r25\n\t"
        "sts %[ovr], r24\n\t"
        "rjmp 1b\n\t"
        :
        : [udr] "n"(_SFR_MEM_ADDR(UDR0)), [head] "i"(&rx_head), [tail] "i"(&rx_tail),
          [ring] "i"(rx_ring), [gpior] "I"(_SFR_IO_ADDR(GPIOR0)), [wakebit] "I"(WAKE_BIT),
          [ovr] "i"(&rx_overruns), [gp1] "I"(_SFR_IO_ADDR(GPIOR1)),
          [gp2] "I"(_SFR_IO_ADDR(GPIOR2)));
}

ISR(USART0_UDRE_vect, ISR_NAKED)
{
    __asm__ __volatile__(
        "out %[gp1], r24\n\t"      /* r24 and SREG in GPIOR1/2, not pushed */
        "in r24, __SREG__\n\t"
        "out %[gp2], r24\n\t"
        "push r25\n\t"
        "push r30\n\t"
        "push r31\n\t"
        "lds r25, %[tail]\n\t"
        "lds r24, %[head]\n\t"
        "cp r24, r25\n\t"
        "breq 2f\n\t"                /* empty: stop the interrupt */
        "mov r30, r25\n\t"
        "ldi r31, 0\n\t"
        "subi r30, lo8(-(%[ring]))\n\t"
        "sbci r31, hi8(-(%[ring]))\n\t"
        "ld r24, Z\n\t"
        "sts %[udr], r24\n\t"        /* UDR0 = tx_ring[tail] */
        "subi r25, 0xFF\n\t"
        "andi r25, %[mask]\n\t"
        "sts %[tail], r25\n\t"
        "1:\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "pop r25\n\t"
        "in r24, %[gp2]\n\t"
        "out __SREG__, r24\n\t"
        "in r24, %[gp1]\n\t"
        "reti\n\t"
        "2:\n\t"
        "lds r24, %[ucsrb]\n\t"
        "andi r24, %[noudrie]\n\t"
        "sts %[ucsrb], r24\n\t"
        "rjmp 1b\n\t"
        :
        : [udr] "n"(_SFR_MEM_ADDR(UDR0)), [ucsrb] "n"(_SFR_MEM_ADDR(UCSR0B)),
          [noudrie] "n"((uint8_t)~_BV(UDRIE0)), [mask] "n"(TX_RING - 1), [head] "i"(&tx_head),
          [tail] "i"(&tx_tail), [ring] "i"(tx_ring), [gp1] "I"(_SFR_IO_ADDR(GPIOR1)),
          [gp2] "I"(_SFR_IO_ADDR(GPIOR2)));
}
#else
ISR(USART0_RX_vect)
{
    uint8_t b = UDR0;
    rx_index_t head = rx_head;
    rx_index_t next = RX_NEXT(head);
    if (next == rx_tail) {
        rx_overruns++; /* the frame it belonged to fails its CRC: NAK, resend */
        return;
    }
    rx_ring[head] = b;
    rx_head = next;
    /* the main loop wakes for a frame's delimiter, not per byte (bytes without one, line
     * noise, wait for the 4 ms tick: 47 byte times, far less than the ring) */
    if (!b)
        WAKE();
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
#endif

void board_write(const uint8_t *data, uint16_t len)
{
    uint8_t head = tx_head; /* the main loop's alone: published once, not per byte */
    while (len) {
        /* the room left, once per run of bytes (not a look at tx_tail per byte) */
        uint8_t room = (uint8_t)((tx_tail - head - 1) & (TX_RING - 1));
        if (!room) { /* full: the UDRE interrupt drains it */
            tx_head = head;
            UCSR0B |= _BV(UDRIE0);
            while ((uint8_t)((head + 1) & (TX_RING - 1)) == tx_tail)
                ;
            continue;
        }
        uint8_t n = len < room ? (uint8_t)len : room;
        len = (uint16_t)(len - n);
        do {
            tx_ring[head] = *data++;
            head = (uint8_t)((head + 1) & (TX_RING - 1));
        } while (--n);
    }
    tx_head = head;
    UCSR0B |= _BV(UDRIE0);
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

/* 1 << (i & 7) from a table: a shift by a variable count is a loop on the AVR (up to 7
 * steps), and these run in the timer context and the PCA9685 engine's interrupts */
static const uint8_t bit8_table[8] PROGMEM = {1, 2, 4, 8, 16, 32, 64, 128};
#define BIT8(i) pgm_read_byte(&bit8_table[(i) & 7])

static volatile uint8_t *const port_regs[11] PROGMEM = {
    &PORTA, &PORTB, &PORTC, &PORTD, &PORTE, &PORTF, &PORTG, &PORTH, &PORTJ, &PORTK, &PORTL,
};

static volatile uint8_t *port_reg(uint8_t port)
{
    return (volatile uint8_t *)pgm_read_ptr(&port_regs[port]);
}

/* a direct output's port register and bit (out_step.c: the step/dir pins) */
volatile uint8_t *avr_output_port(uint8_t output, uint8_t *mask)
{
    uint8_t pb = pgm_read_byte(&pins[output]);
    *mask = (uint8_t)(1 << (pb & 7));
    return port_reg(pb >> 3);
}

/* DDRx is the byte below PORTx on every port of the ATmega2560. */
#define DDR_OF(port_reg) (*((port_reg) - 1))

static void pca_all_off_now(void);
static void avr_pca_set(uint8_t actuator, uint16_t level);
uint32_t avr_out_clock; /* RP_OUTPUT_AT: the queue clock of the commit that follows */

/* ---- output kinds (outputs.h): direct pins */

static uint8_t direct_ok(uint8_t addr, uint8_t channel)
{
    (void)addr;
    return channel < RP_AVR_DIRECT_OUTPUTS;
}

/* Inline in board_output_prepare() (timer context, every strike, pulse end and
 * release: issue 8, CPU load): the port's address from its number (PORTA..PORTG at
 * 0x22 + 3p, PORTH..PORTL at 0x102 + 3 (p - 7)) and the bit from a table, not a flash
 * pointer and a shift loop; the software PWM only for a partial level or while it
 * runs. */
static inline __attribute__((always_inline)) void direct_prep(uint8_t channel, uint16_t level,
                                                              uint16_t pwm_max, rp_out_t *o)
{
    uint8_t pb = pgm_read_byte(&pins[channel]);
    uint8_t p = pb >> 3, m = BIT8(pb);
    volatile uint8_t *port =
        (volatile uint8_t *)(uintptr_t)(p < 7 ? 0x22U + 3U * p : 0x102U + 3U * (p - 7U));
    o->port = port;
    o->mask = m;
    o->on = level != 0;
    DDR_OF(port) |= m; /* an output (low = off until the commit) */
    if ((level && level < pwm_max) || avr_pwm_running())
        avr_pwm_prepare(channel, p, level, pwm_max, o); /* partial levels: software PWM */
}

static void direct_prepare(uint8_t actuator, uint8_t addr, uint8_t channel, uint16_t level,
                           uint16_t pwm_max, rp_out_t *o)
{
    (void)actuator, (void)addr;
    direct_prep(channel, level, pwm_max, o);
}

/* Direct outputs by port (PORTA..PORTL): the bits direct_all_off() clears. */
static uint8_t direct_mask[11];
static void outputs_init(void)
{
    for (uint8_t k = 0; k < RP_AVR_DIRECT_OUTPUTS; k++) {
        uint8_t pb = pgm_read_byte(&pins[k]);
        direct_mask[pb >> 3] |= (uint8_t)(1 << (pb & 7));
    }
}

/* Interrupts off: 11 read-modify-writes, about 10 us. */
static void direct_all_off(void)
{
    avr_pwm_all_off(); /* first: no period start turns a pin on again */
    for (uint8_t p = 0; p < 11; p++)
        if (direct_mask[p])
            *port_reg(p) &= (uint8_t)~direct_mask[p];
}

/* ---- output kinds: PCA9685 channels (the engine below) */

static uint8_t pca_ok(uint8_t addr, uint8_t channel)
{
    /* 0x70 is every PCA9685's power-on ALL CALL address: a write there reaches every
     * board not yet set up */
    return addr >= 0x40 && addr <= 0x7F && addr != 0x70 && channel < 16;
}

/* Inline in board_output_prepare() (the timer context, every PCA9685 strike, pulse
 * end and release: the hook's call saved 16 registers; issue 8, CPU load) */
static inline __attribute__((always_inline)) void pca_prep(uint8_t actuator, uint16_t level,
                                                           uint16_t pwm_max, rp_out_t *o)
{
    o->port = 0;
    o->actuator = actuator;
    /* 12-bit PCA9685 counts from the actuator's own scale (no division at full scale) */
    o->level = pwm_max == 4095 ? level
                               : (uint16_t)(((uint32_t)level * 4095UL + pwm_max / 2) / pwm_max);
    /* into the write queue now, due RP_PCA_LEAD_TICKS after the output's clock
     * (RP_OUTPUT_AT, set before the prepare): the commit, in the core's interrupts-off
     * stretch at the clock, then does nothing (a chord of 8 with 3 PCA9685 writes kept
     * interrupts off for 101-105 us when they were queued there) */
    uint8_t s = SREG;
    cli();
    avr_pca_set(actuator, o->level);
    SREG = s;
}

static void pca_prepare(uint8_t actuator, uint8_t addr, uint8_t channel, uint16_t level,
                        uint16_t pwm_max, rp_out_t *o)
{
    (void)addr, (void)channel;
    pca_prep(actuator, level, pwm_max, o);
}

static void pca_commit(const rp_out_t *o) { (void)o; /* queued at prepare */ }

/* Writes not yet on the bus are dropped and ALL_LED_OFF goes next (after the
 * transaction in flight). */
static void pca_kind_all_off(void) { pca_all_off_now(); }

/* the hooks of each output kind, by OutKind (outputs.h says how to add one) */
_Static_assert(AVR_OUT_PCA9685 == RP_OUT_PCA9685, "board_config.h: AVR_OUT_PCA9685");
static const avr_out_kind_t avr_out_kinds[AVR_OUT_KINDS] PROGMEM = {
    [RP_OUT_DIRECT] = {direct_ok, direct_prepare, 0, 0, direct_all_off},
    [RP_OUT_PCA9685] = {pca_ok, pca_prepare, pca_commit, avr_pca_lead_ticks, pca_kind_all_off},
    [RP_OUT_SERVO] = {avr_servo_ok, avr_step_prepare, avr_step_commit, 0, avr_servo_all_off},
    [RP_OUT_STEP_DIR] = {avr_step_ok, avr_step_prepare, avr_step_commit, 0, avr_step_all_off},
};

#define KIND_HOOK(kind, hook) pgm_read_ptr(&avr_out_kinds[kind].hook)

void board_output_prepare(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t level, uint16_t pwm_max, rp_out_t *o)
{
    o->kind = out_kind;
    o->actuator = (uint8_t)actuator;
    if (out_kind == RP_OUT_DIRECT) { /* the common kinds: no table look-up, no call */
        direct_prep(out_channel, level, pwm_max, o);
        return;
    }
    if (out_kind == RP_OUT_PCA9685) {
        pca_prep((uint8_t)actuator, level, pwm_max, o);
        return;
    }
    /* out_kind < AVR_OUT_KINDS: board_output_ok() passed it at configure */
    void (*prep)(uint8_t, uint8_t, uint8_t, uint16_t, uint16_t, rp_out_t *) =
        (void (*)(uint8_t, uint8_t, uint8_t, uint16_t, uint16_t, rp_out_t *))KIND_HOOK(out_kind,
                                                                                    prepare);
    prep((uint8_t)actuator, out_addr, out_channel, level, pwm_max, o);
}

void avr_out_commit(const rp_out_t *o)
{
    void (*commit)(const rp_out_t *) = (void (*)(const rp_out_t *))KIND_HOOK(o->kind, commit);
    commit(o);
}

uint32_t avr_out_lead(uint8_t kind)
{
    uint32_t (*lead)(void) = (uint32_t (*)(void))KIND_HOOK(kind, lead_ticks);
    return lead ? lead() : 0;
}

/* Interrupts off: every kind's fast all-off (direct pins: about 10 us). */
void board_all_off(void)
{
    for (uint8_t k = 0; k < AVR_OUT_KINDS; k++) {
        void (*off)(void) = (void (*)(void))KIND_HOOK(k, all_off);
        if (off)
            off();
    }
}

uint8_t board_output_ok(uint8_t out_kind, uint8_t out_addr, uint8_t out_channel)
{
    if (out_kind >= AVR_OUT_KINDS)
        return 0; /* no hooks for that kind on this board */
    uint8_t (*ok)(uint8_t, uint8_t) = (uint8_t (*)(uint8_t, uint8_t))KIND_HOOK(out_kind, ok);
    return ok && ok(out_addr, out_channel); /* no entry for that kind: refused */
}

/* ---- PCA9685 engine, interrupt-driven, one write transaction on the bus at a time.
 *
 * A commit (timer context) puts the write in a queue sorted by its due clock (the
 * command's clock + RP_PCA_LEAD_TICKS), then board and channel. The engine runs in the
 * Timer1 compare B interrupt: shortly after a commit, and after every STOP (the TWI
 * interrupt only moves bytes). It takes the group of writes due at the head's clock,
 * works out the bus time of its transactions (RP_PCA_XFER_TICKS), and starts the first
 * so that the STOPs are centred on that clock (compare B at the start); the others
 * follow back to back. Each channel write is the shortest tail of its four registers
 * (LEDn_ON stays 0, set at the board's set-up): off = OFF_H with the full-off bit (1
 * byte); a duty = OFF_L, OFF_H (2); full on = ON_H with the full-on bit, OFF_L, OFF_H
 * (3; 1 when the full-on bit is already set: OFF_H = 0 clears the full-off bit, which
 * wins over it); a duty after full on also clears ON_H (3). Adjacent channels of one
 * board due together go in one auto-increment transaction (up to 4: the channels after
 * the first with all four registers), so they change at the same STOP.
 *
 * Jobs, in order: ALL_LED_OFF to every board set up (all-off), a board's set-up, the
 * outputs switched off after a queue overflow, the queue. */
#define PCA_FIFO 20 /* writes committed, not yet on the bus: 7 B each */
#define PCA_RUN 4   /* channels in one transaction */
#define PCA_GROUP 16 /* writes of one group the planner looks at */
#define PCA_XFER_A (uint16_t)(RP_PCA_XFER_TICKS(0))
#define PCA_XFER_B (uint16_t)(RP_PCA_XFER_TICKS(1) - RP_PCA_XFER_TICKS(0))
/* A group's first transaction is built as soon as the group is planned (compare B
 * right after the commit, about 1.3 ms ahead) and waits with interrupts on
 * (TWI_READY) for compare B at PCA_GO_TICKS before its START: the hand-written
 * interrupt writes the START about that many cycles after the match (no C prologue, no
 * spin). (Was: compare B at 1200 ticks before the START to build it, again at 160
 * before it to spin to the tick: two interrupts and a pca_service() more per group,
 * 0.5 M of driver_load.py's 9.9 M busy cycles on the 88-key spec.) A START due within
 * PCA_SPIN_TICKS when its transaction is built (a group planned late) is spun to. */
#define PCA_GO_TICKS 8
#define PCA_SPIN_TICKS 160
typedef struct {
    uint32_t due;   /* the clock its STOP is for */
    uint16_t level; /* 12-bit count; 0 off, 4095 full on */
    uint8_t act;
} pca_write_t;
static pca_write_t pca_q[PCA_FIFO];
static uint8_t pca_qh, pca_qn;
static uint8_t pca_fullon[(RP_FW_MAX_ACTUATORS + 7) / 8]; /* its LEDn_ON_H full-on bit is set */
static uint8_t pca_spill[(RP_FW_MAX_ACTUATORS + 7) / 8];  /* to switch off (an overflow) */
static uint8_t pca_inited[64 / 8]; /* I2C addresses 0x40..0x7F */
static uint8_t pca_setup_due[64 / 8]; /* boards to set up, first thing (configure) */
static uint8_t pca_setup_n;           /* bits set in pca_setup_due: the engine looks at
                                        * the bitmap only then (it runs after every STOP) */
/* the last level queued for the output was not 0: an off for an output whose bit is
 * clear (off already, or turned off by the board's set-up or an ALL_LED_OFF) goes
 * nowhere, so the configuration's all-off writes nothing twice and overflows nothing */
static uint8_t pca_lit[(RP_FW_MAX_ACTUATORS + 7) / 8];
/* jobs before the queue: ALL_LED_OFF to every board (JOB_ALL_OFF, before anything
 * else); outputs in pca_spill to switch off (JOB_SPILL: the bitmap is scanned only then,
 * not after every STOP: the scan was 5 % of the busy cycles with PCA9685 outputs) */
static volatile uint8_t pca_jobs;
#define JOB_ALL_OFF 1
#define JOB_SPILL 2
static uint32_t pca_go_due;
static uint8_t pca_planned;          /* PLANNED | transactions: pca_start is the planned START
                                      * of the head group; PLANNING: plan_group() runs */
#define PLANNED 0x80
#define PLANNING 0x40
static uint8_t pca_go; /* the group due at pca_go_due has started: its transactions left to chain */
static uint32_t pca_start;

static uint8_t twi_addr, twi_len, twi_pos, twi_buf[1 + 3 + 4 * (PCA_RUN - 1)];
static volatile uint8_t twi_busy; /* 0 idle, TWI_ON_BUS, TWI_READY (built, waits for its START),
                                  * TWI_PLANNING */
#define TWI_ON_BUS 1
#define TWI_READY 2
#define TWI_PLANNING 3 /* the engine plans a group, interrupts on (plan_group()) */
#define TWI_HELD 4     /* a chain's transaction sent, the bus held for the next */
static volatile uint8_t twi_progress; /* bumped at every bus step: the stuck-bus check */
static volatile uint16_t twi_errors;  /* NACKs, bus errors, stuck buses, queue overflows */
static uint8_t alloff_next;           /* all-off: the next board index (0..127, two passes) */
static uint8_t setup_addr, setup_step; /* a board being set up (step 0: none) */
uint8_t avr_pca_prescale = 5;         /* PRE_SCALE of a set-up (configure_begin.pca_prescale) */

#define TWCR_GO (_BV(TWINT) | _BV(TWEN) | _BV(TWIE))

/* Interrupts off. Saturates: status.i2c_errors never wraps back to 0. */
static inline __attribute__((always_inline)) void count_error(void)
{
    if (twi_errors != 0xFFFF)
        twi_errors++;
}

uint16_t board_output_errors(void)
{
    uint8_t s = SREG;
    cli();
    uint16_t e = twi_errors;
    SREG = s;
    return e;
}

static uint8_t qidx(uint8_t i)
{
    uint8_t j = (uint8_t)(pca_qh + i);
    return j >= PCA_FIFO ? (uint8_t)(j - PCA_FIFO) : j;
}

static void pca_pop(void)
{
    pca_qh = qidx(1);
    pca_qn--;
}

static uint8_t inited(uint8_t addr)
{
    uint8_t ai = (uint8_t)(addr - 0x40);
    return pca_inited[ai >> 3] & BIT8(ai);
}

/* Interrupts off. The engine runs from compare B at `at` (within a timer period). */
static void arm_b(uint16_t at)
{
    OCR1B = at;
    TIFR1 = _BV(OCF1B);
    TIMSK1 |= _BV(OCIE1B);
}

/* Data bytes that give output n the level lv (see above): the shortest tail of its
 * four registers. */
static uint8_t pca_nbytes(uint8_t n, uint16_t lv)
{
    uint8_t fo = pca_fullon[n >> 3] & BIT8(n);
    if (lv == 0)
        return 1;
    if (lv >= 4095)
        return fo ? 1 : 3;
    return fo ? 3 : 2;
}

/* Writes the last k of output n's registers (ON_L, ON_H, OFF_L, OFF_H) for the level lv
 * at b and tracks its full-on bit; returns the end. */
static uint8_t *pca_put(uint8_t n, uint16_t lv, uint8_t k, uint8_t *b)
{
    uint8_t m = BIT8(n), *fo = &pca_fullon[n >> 3];
    uint8_t on_h = 0, off_l = (uint8_t)lv, off_h = (uint8_t)(lv >> 8);
    if (lv == 0) { /* full off: wins over full on, which may stay set */
        on_h = (*fo & m) ? 0x10 : 0;
        off_h = 0x10;
    } else if (lv >= 4095) { /* full on */
        on_h = 0x10;
        off_l = off_h = 0;
        *fo |= m;
    } else {
        *fo &= (uint8_t)~m;
    }
    if (k == 4)
        *b++ = 0; /* ON_L */
    if (k >= 3)
        *b++ = on_h;
    if (k >= 2)
        *b++ = off_l;
    *b++ = off_h;
    return b;
}

/* head_run()'s run of more than one channel, out of line (it saves 12 registers) */
static __attribute__((noinline)) uint8_t head_run_more(uint8_t from, const pca_write_t *h,
                                                       uint8_t *bytes)
{
    const rp_act *a = &rp_acts[h->act];
    uint8_t addr = a->out_addr, ch = a->out_channel;
    uint8_t run = 1, nb = *bytes;
    while ((uint8_t)(from + run) < pca_qn && run < PCA_RUN) {
        const pca_write_t *w = &pca_q[qidx((uint8_t)(from + run))];
        const rp_act *b = &rp_acts[w->act];
        if (w->due != h->due || b->out_addr != addr || b->out_channel != ch + run)
            break;
        run++;
        nb = (uint8_t)(nb + 4);
    }
    *bytes = nb;
    return run;
}

/* The transaction at queue position `from`: its run of adjacent channels of one board
 * due together (returned) and its data bytes (*bytes). Inline: a write alone on its
 * clock (the usual case) needs no look at the boards and no call. */
static inline __attribute__((always_inline)) uint8_t head_run(uint8_t from, uint8_t *bytes)
{
    const pca_write_t *h = &pca_q[qidx(from)];
    *bytes = pca_nbytes(h->act, h->level);
    uint8_t nx = (uint8_t)(from + 1);
    if (nx >= pca_qn || pca_q[qidx(nx)].due != h->due)
        return 1;
    return head_run_more(from, h, bytes);
}

static void twi_begin(uint8_t addr, uint8_t len)
{
    twi_addr = addr;
    twi_len = len;
    twi_pos = 0;
    twi_busy = TWI_ON_BUS;
    while (TWCR & _BV(TWSTO))
        ; /* the last STOP is still going out: about one SCL period */
    TWCR = (uint8_t)(TWCR_GO | _BV(TWSTA));
}

static void begin2(uint8_t addr, uint8_t reg, uint8_t v)
{
    pca_go = 0; /* (a set-up or an all-off ends any chain: it has its own STOP) */
    twi_buf[0] = reg;
    twi_buf[1] = v;
    twi_begin(addr, 2);
}

/* Interrupts off: starts the next job when the bus is free and its time has come. */

/* Clear and return the lowest set bit of a bitmap (bit index byte * 8 + bit), 0xFF if none. */
static uint8_t pop_bit(uint8_t *map, uint8_t bytes)
{
    for (uint8_t byte = 0; byte < bytes; byte++) {
        uint8_t d = map[byte];
        if (!d)
            continue;
        uint8_t bit = 0;
        while (!(d & (1 << bit)))
            bit++;
        map[byte] = (uint8_t)(d & ~(1 << bit));
        return (uint8_t)(byte * 8 + bit);
    }
    return 0xFF;
}

/* Interrupts off: spins to the planned START of a group (pca_start), at most
 * PCA_SPIN_TICKS plus the planning. */
static void start_on_tick(void)
{
    while ((int16_t)(TCNT1 - (uint16_t)pca_start) < 0)
        ;
}

/* Builds the transaction of the queue's head into twi_buf (popped): the first channel's
 * tail, then each adjacent one whole; returns its length. */
static uint8_t build_head(void)
{
    const pca_write_t *h = &pca_q[pca_qh];
    uint8_t nb, run = head_run(0, &nb);
    uint8_t k = (uint8_t)(nb - 4 * (run - 1)); /* the first's tail (head_run() counted it) */
    twi_buf[0] = (uint8_t)(0x06 + 4 * rp_acts[h->act].out_channel + 4 - k);
    uint8_t *b = pca_put(h->act, h->level, k, &twi_buf[1]);
    pca_pop();
    while (--run) {
        h = &pca_q[pca_qh];
        b = pca_put(h->act, h->level, 4, b);
        pca_pop();
    }
    return (uint8_t)(b - twi_buf);
}

/* Plans the group due at `due` (the head's): its transactions go out chained by repeated
 * STARTs and end in one STOP, at which every board written takes its values (MODE2.OCH
 * 0): pca_start is set so that the STOP comes on `due` (s_last after the START), and
 * pca_planned keeps the number of transactions (PLANNED | n). (Each transaction with
 * its own STOP, centred on `due`, spread a group's changes over its bus time: a strike
 * and another note's release on one clock landed up to 90 us beyond the half period.) Up to
 * PCA_GROUP writes: about 1300 cycles, so it runs with interrupts on (the bus counts as
 * busy: nothing else starts the engine meanwhile). A commit meanwhile (avr_pca_set()
 * clears pca_planned) or an all-off (it takes the bus) voids the plan: 0, and the engine
 * comes back (compare B) for the commit. Called and returns with interrupts off. */
static uint8_t plan_group(uint32_t due)
{
    twi_busy = TWI_PLANNING;
    pca_planned = PLANNING;
    sei();
    uint32_t s_last = 0;
    uint8_t i = 0, n = 0, nb;
    while (i < pca_qn && i < PCA_GROUP && pca_q[qidx(i)].due == due) {
        uint8_t run = head_run(i, &nb);
        uint16_t t = (uint16_t)(PCA_XFER_A + (uint16_t)nb * PCA_XFER_B);
        if (i) /* chained: a repeated START after the last one's ACK (no STOP) */
            t = (uint16_t)(t + RP_TWI_CHAIN_GAP_TICKS - RP_TWI_SCL_TICKS);
        s_last += t;
        i = (uint8_t)(i + run);
        n++;
    }
    cli();
    if (twi_busy != TWI_PLANNING)
        return 0; /* an all-off took the bus */
    twi_busy = 0;
    if (pca_planned != PLANNING) {
        arm_b((uint16_t)(TCNT1 + 64));
        return 0;
    }
    pca_start = due - s_last; /* the chain's one STOP on `due` */
    pca_planned = (uint8_t)(PLANNED | n);
    return 1;
}

/* pca_service()'s jobs before the queue (all-off, set-ups, spill), out of line: the
 * usual call (a group of the queue) skips them on one test and keeps their state out
 * of its registers (issue 8, CPU load). Returns 1 when it started a job's write (the
 * engine is done for now), 0 when the queue is next. */
static __attribute__((noinline)) uint8_t pca_service_jobs(void)
{
    if (pca_jobs & JOB_ALL_OFF) { /* OFF_H full off to every board set up, then ON_H 0 to each */
        while (alloff_next < 128) { /* a byte of the bitmap at a time: short with no board */
            uint8_t ai = (uint8_t)(alloff_next++ & 63), m = pca_inited[ai >> 3];
            if (!m) {
                alloff_next = (uint8_t)((alloff_next | 7) + 1);
            } else if (m & (1 << (ai & 7))) {
                uint8_t second = alloff_next > 64;
                begin2((uint8_t)(0x40 + ai), second ? 0xFB : 0xFD, second ? 0 : 0x10);
                return 1;
            }
        }
        alloff_next = 0;
        pca_jobs &= (uint8_t)~JOB_ALL_OFF;
    }
    if (pca_setup_n && !setup_step) { /* a board to set up first (see avr_pca_set) */
        uint8_t b = pop_bit(pca_setup_due, sizeof pca_setup_due);
        if (b != 0xFF) {
            pca_setup_n--;
            setup_addr = (uint8_t)(0x40 + b);
            setup_step = 1;
        }
    }
    if (setup_step) { /* MODE1: auto-increment + sleep; PRE_SCALE (5: ~1 kHz); every
                       * channel: ON = 0, full off; MODE1: wake. MODE1 keeps ALLCALL
                       * (bit 0, on at power-on): the boot all-off (pca_boot_all_off)
                       * reaches a board set up by an earlier run through 0x70. */
        static const uint8_t setup[6][2] PROGMEM = {
            {0x00, 0x31}, {0xFE, 0}, {0xFA, 0}, {0xFB, 0}, {0xFD, 0x10}, {0x00, 0x21}};
        uint8_t k = (uint8_t)(setup_step - 1);
        if (++setup_step == 7) {
            setup_step = 0;
            uint8_t ai = (uint8_t)(setup_addr - 0x40);
            pca_inited[ai >> 3] |= (uint8_t)(1 << (ai & 7));
        }
        begin2(setup_addr, pgm_read_byte(&setup[k][0]),
               k == 1 ? avr_pca_prescale : pgm_read_byte(&setup[k][1]));
        return 1;
    }
    if (pca_jobs & JOB_SPILL) {
        for (uint8_t n; (n = pop_bit(pca_spill, sizeof pca_spill)) != 0xFF;) {
            uint8_t a = rp_acts[n].out_addr;
            if (inited(a)) { /* LEDn_OFF_H: full off */
                begin2(a, (uint8_t)(0x06 + 4 * rp_acts[n].out_channel + 3), 0x10);
                return 1;
            }
        }
        pca_jobs &= (uint8_t)~JOB_SPILL;
    }
    return 0;
}

static void pca_service(void)
{
    if (twi_busy)
        return;
    if ((pca_jobs | pca_setup_n | setup_step) && pca_service_jobs())
        return;
    if (!pca_qn) {
        pca_go = 0;
        return;
    }
    const pca_write_t *h = &pca_q[pca_qh];
    uint8_t addr = rp_acts[h->act].out_addr;
    if (!inited(addr)) {
        uint8_t ai = (uint8_t)(addr - 0x40), bm = (uint8_t)(1 << (ai & 7));
        if (pca_setup_due[ai >> 3] & bm) {
            pca_setup_due[ai >> 3] &= (uint8_t)~bm;
            pca_setup_n--;
        }
        setup_addr = addr; /* set the board up first */
        setup_step = 1;
        pca_service();
        return;
    }
    uint8_t first = 0;
    if (!pca_go || h->due != pca_go_due) {
        if (!pca_planned && !plan_group(h->due))
            return; /* a commit or an all-off came while it planned */
        int32_t wait = (int32_t)(pca_start - board_clock());
        if (wait > 60000L) { /* beyond compare B's reach: come back, planned */
            arm_b((uint16_t)(TCNT1 + 50000U));
            return;
        }
        first = 1;
        pca_go = (uint8_t)(pca_planned & ~PLANNED);
        pca_go_due = h->due;
    } else {
        pca_go = 1; /* (a group's write after its chain ended: one transaction) */
    }
    pca_planned = 0;
    uint8_t len = build_head();
    if (first) { /* the group's first transaction: START on the planned tick */
        int32_t left = (int32_t)(pca_start - board_clock()); /* (late: no spin) */
        if (left > (int32_t)PCA_SPIN_TICKS) {
            /* built; compare B starts it, interrupts on meanwhile (no other job
             * starts: the bus counts as busy) */
            twi_addr = addr;
            twi_len = len;
            twi_pos = 0;
            twi_busy = TWI_READY;
            arm_b((uint16_t)((uint16_t)pca_start - PCA_GO_TICKS));
            return;
        }
        if (left > 0)
            start_on_tick();
    }
    twi_begin(addr, len);
}

/* Start the write engine within 64 ticks for a set-up, unless it runs or is due sooner. */
static void kick_setup(void)
{
    if (!twi_busy && (!(TIMSK1 & _BV(OCIE1B)) || (uint16_t)(OCR1B - TCNT1) > 64))
        arm_b((uint16_t)(TCNT1 + 64));
}

/* A configuration was applied (every output is off). A new PRE_SCALE takes a set-up:
 * boards set up with the old one are set up again, before any other write, and a
 * set-up under way starts over. */
void avr_pca_configured(uint8_t prescale)
{
    if (prescale == avr_pca_prescale)
        return;
    uint8_t sreg = SREG;
    cli();
    avr_pca_prescale = prescale;
    uint8_t n = 0;
    for (uint8_t i = 0; i < sizeof pca_setup_due; i++) {
        uint8_t b = (uint8_t)(pca_setup_due[i] | pca_inited[i]);
        pca_setup_due[i] = b;
        for (; b; b &= (uint8_t)(b - 1))
            n++;
    }
    pca_setup_n = n;
    if (setup_step)
        setup_step = 1;
    if (n)
        kick_setup();
    SREG = sreg;
}

/* The PCA9685 kind's lead: its commands are queued this much early (the write engine
 * centres each group of writes, aiming half a PWM period early). */
/* RP_PCA_LEAD_TICKS + RP_PCA_HALF_PERIOD_TICKS, its product in line (once per PCA9685
 * write: avr-gcc called its 16x16 routine) */
uint32_t avr_pca_lead_ticks(void)
{
    return RP_PCA_LEAD_TICKS + RP_PCA_HALF_PERIOD_STEP_TICKS +
           rp_mul_16x8(RP_PCA_HALF_PERIOD_STEP_TICKS, avr_pca_prescale);
}

/* avr_pca_set()'s rare paths, out of line (its common path saves fewer registers: it
 * runs in the core's commit, interrupts off). A board is set up as soon as an output of
 * it is written (the configuration's all-off: at configure), not when its first write
 * reaches the head of the queue: the six set-up transactions (about 600 us) would delay
 * that write past its clock, and a real PCA9685's oscillator needs 500 us after the
 * wake. */
static __attribute__((noinline)) void pca_note_setup(uint8_t addr)
{
    uint8_t ai = (uint8_t)(addr - 0x40), bm = (uint8_t)(1 << (ai & 7));
    if ((setup_step && setup_addr == addr) || (pca_setup_due[ai >> 3] & bm))
        return;
    pca_setup_due[ai >> 3] |= bm;
    pca_setup_n++;
    kick_setup();
}

/* no room: the output is switched off instead (the safe side), with the writes of it
 * still queued, and the fault counted */
static __attribute__((noinline)) void pca_overflow(uint8_t actuator, uint8_t m)
{
    for (uint8_t i = 0; i < pca_qn; i++)
        if (pca_q[qidx(i)].act == actuator)
            pca_q[qidx(i)].level = 0;
    pca_spill[actuator >> 3] |= m;
    pca_jobs |= JOB_SPILL;
    pca_lit[actuator >> 3] &= (uint8_t)~m;
    count_error();
}

/* the write into the queue, sorted by due clock, then board and channel; never before
 * the same output's write (from the tail: usually the tail itself, inline below) */
static __attribute__((noinline)) void pca_insert_sorted(uint8_t actuator, uint16_t level,
                                                        uint32_t due)
{
    uint8_t i = pca_qn;
    while (i) {
        pca_write_t *p = &pca_q[qidx((uint8_t)(i - 1))];
        int32_t d = (int32_t)(p->due - due);
        if (p->act == actuator || d < 0)
            break; /* (the usual case: after the tail, no look at the boards) */
        if (d == 0) {
            const rp_act *a = &rp_acts[actuator], *b = &rp_acts[p->act];
            if ((uint16_t)(b->out_addr << 4 | b->out_channel) <=
                (uint16_t)(a->out_addr << 4 | a->out_channel))
                break;
        }
        pca_q[qidx(i)] = *p;
        i--;
    }
    pca_write_t *w = &pca_q[qidx(i)];
    w->due = due;
    w->level = level;
    w->act = actuator;
    pca_qn++;
}

static inline __attribute__((always_inline)) void pca_insert(uint8_t actuator, uint16_t level,
                                                             uint32_t due)
{
    uint8_t n = pca_qn;
    if (n) {
        const pca_write_t *p = &pca_q[qidx((uint8_t)(n - 1))];
        if ((int32_t)(p->due - due) >= 0 && p->act != actuator) {
            pca_insert_sorted(actuator, level, due); /* not after the tail */
            return;
        }
    }
    pca_write_t *w = &pca_q[qidx(n)];
    w->due = due;
    w->level = level;
    w->act = actuator;
    pca_qn = (uint8_t)(n + 1);
}

/* Interrupts off (the timer context's commit, or a critical section): a write into the
 * queue, due RP_PCA_LEAD_TICKS after its command's clock (avr_out_clock). Inline in
 * pca_prep(). */
static inline __attribute__((always_inline)) void avr_pca_set(uint8_t actuator, uint16_t level)
{
    uint8_t m = BIT8(actuator), *lit = &pca_lit[actuator >> 3];
    uint8_t addr = rp_acts[actuator].out_addr;
    if (!inited(addr))
        pca_note_setup(addr);
    if (!level && !(*lit & m))
        return; /* off already, or will be: nothing to write */
    if (level)
        *lit |= m;
    else
        *lit &= (uint8_t)~m;
    if (pca_qn == PCA_FIFO)
        pca_overflow(actuator, m);
    else
        pca_insert(actuator, level, avr_out_clock + RP_PCA_LEAD_TICKS);
    pca_planned = 0;
    /* plan once the rest of this batch is committed: compare B just after the batch's
     * clock (its commits come during the core's lead before it, with interrupts on:
     * compare B 64 ticks after the first planned the group without the others, and the
     * group is built as soon as it is planned), or 64 ticks from now if that passed */
    uint16_t now = TCNT1, at = (uint16_t)((uint16_t)avr_out_clock + 64U);
    if ((int16_t)(at - now) < 64)
        at = (uint16_t)(now + 64U);
    if (!twi_busy && (!(TIMSK1 & _BV(OCIE1B)) || (uint16_t)(OCR1B - now) > (uint16_t)(at - now)))
        arm_b(at);
}

static void pca_all_off_now(void)
{
    if (twi_busy == TWI_READY || twi_busy == TWI_PLANNING)
        twi_busy = 0; /* built or being planned, not on the bus: dropped */
    pca_qn = 0;
    pca_go = pca_planned = 0;
    for (uint8_t i = 0; i < sizeof pca_spill; i++) {
        pca_spill[i] = 0;
        pca_fullon[i] = 0; /* the second pass of ALL_LED clears every ON_H */
        pca_lit[i] = 0;    /* ALL_LED_OFF: every channel of every board set up */
    }
    pca_jobs = JOB_ALL_OFF; /* (the spill is cleared above) */
    alloff_next = 0;
    pca_service();
}

/* Compare B: a built transaction's START (TWI_READY, the bus free: no STOP still going
 * out) in a few cycles, by hand (about 25 cycles from the match to the START); else the
 * engine in C (__vector_pca_compb). */
void __vector_pca_compb(void) __attribute__((signal, used, externally_visible));
ISR(TIMER1_COMPB_vect, ISR_NAKED)
{
    __asm__ __volatile__(
        "push r24\n\t"
        "in r24, __SREG__\n\t"
        "push r24\n\t"
        "lds r24, %[busy]\n\t"
        "cpi r24, %[ready]\n\t"
        "brne 1f\n\t"
        "lds r24, %[twcr]\n\t"
        "sbrc r24, %[twsto]\n\t"
        "rjmp 1f\n\t"
        "ldi r24, %[go]\n\t"
        "sts %[twcr], r24\n\t"      /* START */
        "ldi r24, %[onbus]\n\t"
        "sts %[busy], r24\n\t"
        "lds r24, %[timsk]\n\t"
        "andi r24, %[noie]\n\t"
        "sts %[timsk], r24\n\t"     /* one shot */
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n\t"
        "1:\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "jmp __vector_pca_compb\n\t"
        :
        : [busy] "i"(&twi_busy), [ready] "n"(TWI_READY), [onbus] "n"(TWI_ON_BUS),
          [twcr] "n"(_SFR_MEM_ADDR(TWCR)), [twsto] "I"(TWSTO),
          [go] "n"(TWCR_GO | _BV(TWSTA)), [timsk] "n"(_SFR_MEM_ADDR(TIMSK1)),
          [noie] "n"((uint8_t)~_BV(OCIE1B)));
}

void __vector_pca_compb(void)
{
    TIMSK1 &= (uint8_t)~_BV(OCIE1B); /* one shot */
    if (twi_busy == TWI_READY) { /* built, the last STOP still going out: twi_begin waits */
        twi_begin(twi_addr, twi_len);
        return;
    }
    if (twi_busy == TWI_HELD) { /* a transaction of a chain sent, no STOP yet */
        const pca_write_t *h = &pca_q[pca_qh];
        if (pca_go > 1 && pca_qn && h->due == pca_go_due && !pca_jobs && !setup_step &&
            !pca_setup_n && inited(rp_acts[h->act].out_addr)) {
            pca_go--; /* the next one: a repeated START */
            twi_addr = rp_acts[h->act].out_addr;
            twi_len = build_head();
            twi_pos = 0;
            twi_busy = TWI_ON_BUS;
            TWCR = (uint8_t)(TWCR_GO | _BV(TWSTA));
            return;
        }
        pca_go = 0; /* the chain's STOP: every board written takes its values now */
        TWCR = _BV(TWINT) | _BV(TWSTO) | _BV(TWEN);
        twi_busy = 0;
    }
    pca_service();
}

/* One bus step; short (no call): the engine goes on from compare B after the STOP. The
 * common steps (a START sent: the address; a byte ACKed: the next; the last one ACKed
 * outside a chain: the STOP, and compare B if there is more to do) by hand, with 4
 * registers saved (the C form saved 9 and RAMPZ: 88 cycles a step, 6500 steps in
 * driver_load.py's 88-key run, and 106 at the STOP); the rest (a chain's transaction
 * sent, a NACK, a bus error) in C (__vector_twi_slow), which does all of it. OCF1B and
 * OCIE1B are one bit (the asm sets the enable with the flag's mask). */
void __vector_twi_slow(void) __attribute__((signal, used, externally_visible));
#if OCF1B != OCIE1B
#error "TWI_vect: OCIE1B set with OCF1B's mask"
#endif
ISR(TWI_vect, ISR_NAKED)
{
    __asm__ __volatile__(
        "push r24\n\t"
        "in r24, __SREG__\n\t"
        "push r24\n\t"
        "push r25\n\t"
        "lds r24, %[twsr]\n\t"
        "andi r24, 0xF8\n\t"
        "cpi r24, 0x08\n\t"
        "breq 2f\n\t"
        "cpi r24, 0x10\n\t"
        "breq 2f\n\t"
        "cpi r24, 0x18\n\t"
        "breq 1f\n\t"
        "cpi r24, 0x28\n\t"
        "breq 1f\n\t"
        "rjmp 4f\n\t"                /* (4 is out of a branch's reach) */
        "1:\n\t"                      /* ACKed: the next byte, if any */
        "lds r24, %[pos]\n\t"
        "lds r25, %[len]\n\t"
        "cp r24, r25\n\t"
        "brsh 5f\n\t"
        "push r30\n\t"
        "push r31\n\t"
        "mov r30, r24\n\t"
        "ldi r31, 0\n\t"
        "subi r30, lo8(-(%[buf]))\n\t"
        "sbci r31, hi8(-(%[buf]))\n\t"
        "ld r25, Z\n\t"
        "sts %[twdr], r25\n\t"       /* TWDR = twi_buf[twi_pos++] */
        "subi r24, 0xFF\n\t"
        "sts %[pos], r24\n\t"
        "pop r31\n\t"
        "pop r30\n\t"
        "rjmp 3f\n\t"
        "2:\n\t"                      /* START sent: the address, write */
        "lds r24, %[addr]\n\t"
        "lsl r24\n\t"
        "sts %[twdr], r24\n\t"
        "3:\n\t"
        "ldi r24, %[go]\n\t"
        "sts %[twcr], r24\n\t"
        "lds r24, %[prog]\n\t"
        "subi r24, 0xFF\n\t"
        "sts %[prog], r24\n\t"       /* twi_progress++ */
        "pop r25\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n\t"
        "5:\n\t"                      /* the last byte ACKed, no chain: STOP */
        "lds r24, %[gocnt]\n\t"
        "cpi r24, 2\n\t"
        "brsh 4f\n\t"                /* a chain's transaction: C */
        "ldi r24, %[stop]\n\t"
        "sts %[twcr], r24\n\t"       /* the chips take the values now */
        "clr r25\n\t"                /* (r1 may be a MUL's result here: not zero) */
        "sts %[busy], r25\n\t"
        "lds r24, %[prog]\n\t"
        "subi r24, 0xFF\n\t"
        "sts %[prog], r24\n\t"
        "lds r24, %[qn]\n\t"
        "lds r25, %[jobs]\n\t"
        "or r24, r25\n\t"
        "lds r25, %[setn]\n\t"
        "or r24, r25\n\t"
        "lds r25, %[step]\n\t"
        "or r24, r25\n\t"
        "brne 6f\n\t"
        "sts %[gocnt], r24\n\t"     /* (0) nothing more to do: no compare B */
        "rjmp 7f\n\t"
        "6:\n\t"                      /* compare B in 32 ticks: the engine goes on */
        "lds r24, %[tcnt]\n\t"
        "lds r25, %[tcnt]+1\n\t"
        "adiw r24, 32\n\t"
        "sts %[ocr]+1, r25\n\t"
        "sts %[ocr], r24\n\t"
        "ldi r24, %[ocf]\n\t"
        "out %[tifr], r24\n\t"
        "lds r24, %[timsk]\n\t"
        "ori r24, %[ocf]\n\t"
        "sts %[timsk], r24\n\t"
        "7:\n\t"
        "pop r25\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "reti\n\t"
        "4:\n\t"
        "pop r25\n\t"
        "pop r24\n\t"
        "out __SREG__, r24\n\t"
        "pop r24\n\t"
        "jmp __vector_twi_slow\n\t"
        :
        : [twsr] "n"(_SFR_MEM_ADDR(TWSR)), [twdr] "n"(_SFR_MEM_ADDR(TWDR)),
          [twcr] "n"(_SFR_MEM_ADDR(TWCR)), [go] "n"(TWCR_GO), [pos] "i"(&twi_pos),
          [len] "i"(&twi_len), [buf] "i"(twi_buf), [addr] "i"(&twi_addr),
          [prog] "i"(&twi_progress), [gocnt] "i"(&pca_go),
          [stop] "n"(_BV(TWINT) | _BV(TWSTO) | _BV(TWEN)), [busy] "i"(&twi_busy),
          [qn] "i"(&pca_qn), [jobs] "i"(&pca_jobs), [setn] "i"(&pca_setup_n),
          [step] "i"(&setup_step), [tcnt] "n"(_SFR_MEM_ADDR(TCNT1)),
          [ocr] "n"(_SFR_MEM_ADDR(OCR1B)), [ocf] "n"(_BV(OCF1B)),
          [tifr] "I"(_SFR_IO_ADDR(TIFR1)), [timsk] "n"(_SFR_MEM_ADDR(TIMSK1)));
}

void __vector_twi_slow(void)
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
    if (st == 0x28 && pca_go > 1) {
        /* a chain's transaction sent: the bus held (TWINT stays set, its interrupt off)
         * until compare B chains the next (a repeated START) or ends it (STOP) */
        TWCR = _BV(TWEN);
        twi_busy = TWI_HELD;
    } else {
        if (st != 0x18 && st != 0x28)
            count_error(); /* NACK (no board there), arbitration lost, bus error: drop it */
        TWCR = _BV(TWINT) | _BV(TWSTO) | _BV(TWEN); /* STOP: the chips take the values now */
        twi_busy = 0;
        if (!pca_qn && !pca_jobs && !pca_setup_n && !setup_step) {
            pca_go = 0; /* nothing more to do: no compare B (a commit arms it) */
            return;
        }
    }
    OCR1B = (uint16_t)(TCNT1 + 32);
    TIFR1 = _BV(OCF1B);
    TIMSK1 |= _BV(OCIE1B);
}

/* Main loop, every timer period (4.1 ms): a transaction that made no progress for a
 * whole period (a slave holding the bus) is abandoned and the TWI reset. */
static void twi_check(void)
{
    static uint8_t last_progress, stuck;
    cli();
    if ((twi_busy == TWI_ON_BUS || twi_busy == TWI_HELD) && twi_progress == last_progress) {
        if (++stuck >= 2) {
            TWCR = 0; /* release the bus */
            twi_busy = 0;
            pca_go = 0;
            count_error();
            stuck = 0;
            pca_service();
        }
    } else {
        stuck = 0;
    }
    last_progress = twi_progress;
    sei();
}

/* ---------------------------------------------------------------- start and loop */

/* Polled (interrupts off, TWIE clear): waits for TWINT, at most 4096 polls (about 2 ms:
 * a slave holding SCL or SDA); 0 on a timeout. */
static uint8_t twi_wait(void)
{
    for (uint16_t n = 0; n < 4096; n++)
        if (TWCR & _BV(TWINT))
            return 1;
    return 0;
}

/* Boot, first thing on the bus: a PCA9685 keeps its outputs running while the MCU
 * resets (watchdog, brown-out, a reset button), and the boards are set up again only
 * at the next configure: a channel left on would stay on until then, or for ever if
 * the host is gone. One write to 0x70, the power-on ALL CALL address every board
 * answers (MODE1.ALLCALL, kept set by our set-up), of ALL_LED_OFF_H (0xFD) = full off
 * (bit 4, which wins over full on): every channel of every board off at its STOP, with
 * no configuration known. START, 3 bytes, STOP: 29 SCL periods, 73 us at 400 kHz. It
 * runs in .init3, before avr-libc's start-up copies .data and clears .bss (2.7 ms):
 * off 80 us after the reset (simavr). A NACK (no board on the bus) is no fault; a
 * stuck bus is released, and counted once main() runs (boot_bus_stuck). */
static uint8_t boot_bus_stuck __attribute__((section(".noinit"))); /* .bss comes after */

static __attribute__((noinline)) void pca_boot_all_off(void)
{
    static const uint8_t msg[3] PROGMEM = {0x70 << 1, 0xFD, 0x10};
    uint8_t ok = 1;
    TWSR = 0;
    TWBR = (uint8_t)RP_TWBR; /* RP_TWI_HZ */
    TWCR = _BV(TWINT) | _BV(TWSTA) | _BV(TWEN);
    for (uint8_t i = 0; ok && i < 3; i++) {
        ok = twi_wait();
        uint8_t st = TWSR & 0xF8;
        if (!ok || (i == 0 ? st != 0x08 : st != 0x18 && st != 0x28))
            break; /* no START, or a NACK: STOP */
        TWDR = pgm_read_byte(&msg[i]);
        TWCR = _BV(TWINT) | _BV(TWEN);
    }
    if (ok)
        ok = twi_wait(); /* the last byte's ACK (or the NACK that ended it) */
    if (ok) {
        TWCR = _BV(TWINT) | _BV(TWSTO) | _BV(TWEN); /* the boards take it now */
        for (uint16_t n = 0; n < 4096 && (TWCR & _BV(TWSTO)); n++)
            ;
    } else {
        TWCR = 0; /* release the bus */
    }
    boot_bus_stuck = !ok;
}

/* The watchdog stays enabled across its own reset: turn it off first thing; then every
 * PCA9685 output off (the stack is set up in .init2; nothing here needs .data/.bss). */
void wdt_off_early(void) __attribute__((naked, used, section(".init3")));
void wdt_off_early(void)
{
    MCUSR = 0;
    wdt_disable();
    pca_boot_all_off();
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
    TWBR = (uint8_t)RP_TWBR; /* RP_TWI_HZ */
    if (boot_bus_stuck) /* the boot's all-off (wdt_off_early) found the bus stuck */
        count_error();
    uart_init();
    /* interrupts on from here: the host's first bytes go into the receive ring while the
     * boot id's EEPROM write (up to 4 x 3.4 ms) and rp_init() run. With them off the
     * 2-byte receive buffer overran and the host's first frame was lost (the simavr
     * harness models it). rp_init() takes its own critical sections; no timer is armed. */
    sei();
    outputs_init();
    rp_init(make_boot_id());
    wdt_enable(WDTO_500MS);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sleep_enable(); /* SE stays set: only the SLEEP below reads it */
    for (;;) {
        wdt_reset();
        WAKE_CLEAR(); /* before the work is taken: what comes meanwhile sets it again */
        for (;;) {
            cli();
            rx_index_t head = rx_head;
            sei();
            rx_index_t tail = rx_tail;
            if (tail == head)
                break;
            /* the contiguous bytes from the tail, up to and including a frame's
             * delimiter (its frame runs), freed before the next frame is taken */
            uint16_t n = head > tail ? (uint16_t)(head - tail) : (uint16_t)(RX_RING - tail);
            uint8_t used = rp_rx_bytes((const uint8_t *)&rx_ring[tail], n > 255 ? 255 : (uint8_t)n);
            rx_tail = (rx_index_t)((tail + used) & (RX_RING - 1));
        }
        /* not on every wake-up (each byte in or out wakes us): events, and every tick */
        if (tick || RP_EVENT_PENDING()) {
            /* every tick (4.1 ms): the bus check and rp_poll() (watchdog, duty poll);
             * at once for events. (rp_poll() every other tick saved 0.1 point of load
             * at 100 notes/s, and moved the watchdog's shutdown by 4 ms.) */
            uint8_t t = tick;
            tick = 0;
            if (t)
                twi_check();
            rp_poll();
        }
        /* idle until there is work: a frame's delimiter, the 4 ms tick, an event. Every
         * interrupt wakes the CPU (each byte in or out); those that bring no work go
         * straight back to sleep here, in a few cycles (one flag; SE stays set). */
        cli();
        while (!WOKEN()) {
            sei(); /* the SLEEP after SEI runs before any interrupt: none is missed */
            sleep_cpu();
            /* an interrupt that was pending at the SEI runs here (simavr: the SLEEP does
             * not sleep then, and it serves the interrupt only after one more
             * instruction; with CLI right after the SLEEP it never would) */
            __asm__ __volatile__("nop");
            cli();
        }
        sei();
    }
}
