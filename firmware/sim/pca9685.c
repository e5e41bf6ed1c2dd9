/* PCA9685 model for the simavr harness (see pca9685.h).
 *
 * The boards are the slaves of the harness's TWI master (twi.c), which calls them at
 * the end of each bus step: the SLA+R/W byte, each data byte (its ACK), the STOP.
 *
 * What the model does, from the datasheet (NXP PCA9685 rev. 4):
 * - Power-on registers: MODE1 0x11 (SLEEP, ALLCALL), MODE2 0x04, SUBADR1..3 0xE2/0xE4/
 *   0xE8, ALLCALLADR 0xE0, every LEDn_OFF_H 0x10 (full off), PRE_SCALE 0x1E (200 Hz).
 * - The first data byte of a write is the register pointer; then each byte goes to the
 *   pointer, which moves on when MODE1.AI is set (0x45 -> 0x00, 0xFF -> 0x00); without
 *   AI every byte rewrites the same register.
 * - ALL_LED_ON/OFF_L/H (0xFA..0xFD) write that byte of every channel (they read as 0).
 * - PRE_SCALE takes a write only while MODE1.SLEEP is set (else it is ignored).
 * - LED registers are staged as they arrive and are latched at the STOP (MODE2.OCH 0)
 *   or, with OCH 1, at the ACK of a channel's LEDn_OFF_H (the last of its four). The
 *   outputs show what is latched at the end of the running PWM period (the chip
 *   updates "at the end of the LOW cycle", so that no period is cut short): the period
 *   is 4096 (PRE_SCALE + 1) / 25 MHz, counted from the wake (MODE1.SLEEP cleared), so a
 *   change lands 0 .. 1/f_PWM after its STOP (up to 983 us at 1017 Hz); a second
 *   change latched within the same period replaces the first, which never shows.
 *   MODE1/MODE2 take effect at once.
 * - A channel's duty: 0 when LEDn_OFF_H bit 4 (full off, wins), 4096 when LEDn_ON_H bit
 *   4 (full on), else (OFF - ON) mod 4096 counts (0 when they are equal); MODE2.INVRT
 *   inverts it; while MODE1.SLEEP is set the oscillator is off and the model counts
 *   every channel as off.
 * Not modelled: the 500 us oscillator start after SLEEP is cleared, the tolerance of
 * the 25 MHz oscillator (exact here, so the period grid stays put), the general-call
 * software reset, the OE pin, and reads beyond returning the registers. */
#include "pca9685.h"

#include <inttypes.h>
#include <string.h>

#include "sim_cycle_timers.h"
#include "twi.h"

#define MODE1 0x00
#define MODE2 0x01
#define SUBADR1 0x02
#define ALLCALLADR 0x05
#define LED0 0x06 /* LEDn_ON_L = LED0 + 4n, ON_H +1, OFF_L +2, OFF_H +3 */
#define LED_END 0x46
#define ALL_LED 0xFA
#define PRE_SCALE 0xFE

#define MODE1_AI 0x20
#define MODE1_SLEEP 0x10
#define MODE1_ALLCALL 0x01
#define MODE2_INVRT 0x10
#define MODE2_OCH 0x08
#define FULL 0x10 /* bit 4 of LEDn_ON_H / LEDn_OFF_H */

typedef struct {
    uint8_t addr;      /* 7-bit */
    uint8_t regs[256]; /* as written (LED registers: staged) */
    uint8_t led[64];   /* LED registers in effect */
    uint8_t ptr;
    uint8_t selected; /* addressed in the transaction on the bus */
    uint8_t have_ptr; /* the transaction's first data byte (the pointer) has come */
    uint8_t written;  /* LED registers staged since they last took effect */
    uint16_t duty[16]; /* effective outputs, as last reported */
    uint64_t prescale_ignored;
    uint8_t latched[64]; /* LED registers latched, shown from `due` on */
    uint64_t due;        /* cycle of the period end that shows `latched` (0: none) */
    uint64_t wake;       /* cycle MODE1.SLEEP was last cleared: the PWM periods' origin */
} board_t;

static board_t boards[PCA9685_MAX_BOARDS];
static int n_boards;
static avr_t *sim_avr;
static pca9685_change_fn change_cb;
static FILE *bus_log;

/* bus counters for the exit summary */
static int in_xfer;
static uint8_t sla; /* SLA+R/W of the transaction on the bus */
static uint64_t n_xfers, n_bytes, n_nack_addr, n_nack_data, n_repeated, n_reads;
static uint64_t xfer_bytes_max;
static uint32_t xfer_bytes;

static void reset_board(board_t *b)
{
    memset(b->regs, 0, sizeof b->regs);
    b->regs[MODE1] = MODE1_SLEEP | MODE1_ALLCALL;
    b->regs[MODE2] = 0x04;
    b->regs[SUBADR1] = 0xE2;
    b->regs[SUBADR1 + 1] = 0xE4;
    b->regs[SUBADR1 + 2] = 0xE8;
    b->regs[ALLCALLADR] = 0xE0;
    for (int ch = 0; ch < 16; ch++)
        b->regs[LED0 + 4 * ch + 3] = FULL;
    b->regs[ALL_LED + 3] = FULL;
    b->regs[PRE_SCALE] = 0x1E;
    memcpy(b->led, b->regs + LED0, sizeof b->led);
    memcpy(b->latched, b->led, sizeof b->led);
    b->due = b->wake = 0;
    memset(b->duty, 0, sizeof b->duty);
    b->ptr = 0;
    b->selected = b->have_ptr = b->written = 0;
}

/* Does board b answer 7-bit address a? */
static int answers(const board_t *b, uint8_t a)
{
    uint8_t m1 = b->regs[MODE1];
    if (a == b->addr)
        return 1;
    if ((m1 & MODE1_ALLCALL) && a == b->regs[ALLCALLADR] >> 1)
        return 1;
    for (int k = 0; k < 3; k++) /* SUB1..SUB3: MODE1 bits 3..1 */
        if ((m1 & (0x08 >> k)) && a == b->regs[SUBADR1 + k] >> 1)
            return 1;
    return 0;
}

static uint16_t duty_of(const board_t *b, int ch)
{
    if (b->regs[MODE1] & MODE1_SLEEP)
        return 0;
    const uint8_t *r = b->led + 4 * ch;
    uint16_t d;
    if (r[3] & FULL)
        d = 0;
    else if (r[1] & FULL)
        d = 4096;
    else {
        uint16_t on = (uint16_t)(r[0] | (r[1] & 0x0F) << 8);
        uint16_t off = (uint16_t)(r[2] | (r[3] & 0x0F) << 8);
        d = (uint16_t)((off - on) & 0x0FFF);
    }
    return (b->regs[MODE2] & MODE2_INVRT) ? (uint16_t)(4096 - d) : d;
}

/* Report every channel whose effective output changed. */
static void settle(board_t *b)
{
    for (int ch = 0; ch < 16; ch++) {
        uint16_t d = duty_of(b, ch);
        if (d != b->duty[ch]) {
            b->duty[ch] = d;
            if (change_cb)
                change_cb(b->addr, (uint8_t)ch, d, sim_avr->cycle);
        }
    }
}

/* One cycle timer for every board: it shows what each board latched, at its due
 * period end, and is re-armed for the earliest one still to come. */
static avr_cycle_count_t period_end(avr_t *avr, avr_cycle_count_t when, void *param);

static void arm_period_end(void)
{
    uint64_t first = 0;
    for (int i = 0; i < n_boards; i++)
        if (boards[i].due && (!first || boards[i].due < first))
            first = boards[i].due;
    avr_cycle_timer_cancel(sim_avr, period_end, NULL);
    if (first)
        avr_cycle_timer_register(sim_avr, first > sim_avr->cycle ? first - sim_avr->cycle : 1,
                                 period_end, NULL);
}

static avr_cycle_count_t period_end(avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)when, (void)param;
    for (int i = 0; i < n_boards; i++) {
        board_t *b = &boards[i];
        if (b->due && b->due <= avr->cycle) {
            b->due = 0;
            memcpy(b->led, b->latched, sizeof b->led);
            settle(b);
        }
    }
    arm_period_end();
    return 0;
}

/* LED registers latched now (`latched` holds them): shown at the end of the running
 * PWM period; at once while the board sleeps (its outputs are off then anyway). */
static void latch(board_t *b)
{
    if (b->regs[MODE1] & MODE1_SLEEP) {
        memcpy(b->led, b->latched, sizeof b->led);
        b->due = 0;
        settle(b);
        arm_period_end();
        return;
    }
    if (b->due)
        return; /* the period end already due shows the newest latch */
    double period = 4096.0 * (b->regs[PRE_SCALE] + 1) * (double)sim_avr->frequency / 25e6;
    uint64_t now = sim_avr->cycle, k = (uint64_t)((double)(now - b->wake) / period) + 1;
    b->due = b->wake + (uint64_t)((double)k * period + 0.5);
    if (b->due <= now)
        b->due = now + 1;
    arm_period_end();
}

void pca9685_rearm(void)
{
    if (sim_avr)
        arm_period_end();
}

static void log_event(const char *what, uint8_t a8, int data, int ack)
{
    if (!bus_log)
        return;
    fprintf(bus_log, "# i2c %" PRIu64 " %s 0x%02x", (uint64_t)sim_avr->cycle, what, a8 >> 1);
    if (data >= 0)
        fprintf(bus_log, " 0x%02x", data);
    fprintf(bus_log, " %s\n", ack ? "ack" : "nack");
}

static void write_reg(board_t *b, uint8_t v)
{
    uint8_t r = b->ptr;
    if (r == MODE1) {
        if ((b->regs[MODE1] & MODE1_SLEEP) && !(v & MODE1_SLEEP)) {
            b->wake = sim_avr->cycle; /* the PWM counter starts over */
            if (bus_log)
                fprintf(bus_log, "# i2c %" PRIu64 " wake 0x%02x\n", (uint64_t)b->wake, b->addr);
        }
        b->regs[MODE1] = (uint8_t)(v & 0x7F); /* RESTART (bit 7) is not kept */
    } else if (r == PRE_SCALE) {
        if (b->regs[MODE1] & MODE1_SLEEP)
            b->regs[PRE_SCALE] = v < 3 ? 3 : v; /* the chip's minimum */
        else
            b->prescale_ignored++;
    } else if (r >= LED0 && r < LED_END) {
        b->regs[r] = v;
        b->written = 1;
    } else if (r >= ALL_LED && r < PRE_SCALE) {
        for (int ch = 0; ch < 16; ch++)
            b->regs[LED0 + 4 * ch + (r - ALL_LED)] = v;
        b->written = 1;
    } else if (r < LED0) {
        b->regs[r] = v;
    } /* 0x46..0xF9 reserved, 0xFF test mode: ignored */

    if (b->regs[MODE2] & MODE2_OCH) { /* latched on ACK: a channel's last byte */
        if (r >= LED0 && r < LED_END && (r - LED0) % 4 == 3) {
            memcpy(b->latched + (r - LED0 - 3), b->regs + r - 3, 4);
            latch(b);
        } else if (r == ALL_LED + 3) {
            memcpy(b->latched, b->regs + LED0, sizeof b->latched);
            latch(b);
        }
    }
    if (b->regs[MODE1] & MODE1_AI)
        b->ptr = r == LED_END - 1 ? 0 : (uint8_t)(r + 1);
}

static void end_xfer(void)
{
    if (!in_xfer)
        return;
    if (xfer_bytes > xfer_bytes_max)
        xfer_bytes_max = xfer_bytes;
    in_xfer = 0;
}

static void bus_stop(void)
{
    log_event("stop", sla, -1, 1);
    for (int i = 0; i < n_boards; i++) {
        board_t *b = &boards[i];
        if (b->written && !(b->regs[MODE2] & MODE2_OCH)) {
            memcpy(b->latched, b->regs + LED0, sizeof b->latched);
            latch(b);
        }
        b->written = 0;
        b->selected = b->have_ptr = 0;
    }
    end_xfer();
}

/* SLA+R/W: a new transaction, or a repeated START */
static int bus_address(uint8_t a8)
{
    if (in_xfer)
        n_repeated++;
    else {
        n_xfers++;
        in_xfer = 1;
        xfer_bytes = 0;
    }
    sla = a8;
    int any = 0;
    for (int i = 0; i < n_boards; i++) {
        board_t *b = &boards[i];
        b->selected = answers(b, (uint8_t)(a8 >> 1)) ? (uint8_t)(1 + (a8 & 1)) : 0;
        b->have_ptr = 0;
        any |= b->selected != 0;
    }
    if (!any)
        n_nack_addr++;
    log_event(a8 & 1 ? "start-read" : "start-write", a8, -1, any);
    return any;
}

static int bus_write(uint8_t data)
{
    int any = 0;
    xfer_bytes++;
    n_bytes++;
    for (int i = 0; i < n_boards; i++) {
        board_t *b = &boards[i];
        if (b->selected != 1)
            continue;
        any = 1;
        if (!b->have_ptr) {
            b->ptr = data;
            b->have_ptr = 1;
            continue;
        }
        uint8_t r = b->ptr;
        write_reg(b, data);
        /* MODE1/MODE2 act at once (sleep, invert); LED registers at a period end */
        if (r == MODE1 || r == MODE2)
            settle(b);
    }
    if (!any)
        n_nack_data++;
    log_event("write", sla, data, any);
    return any;
}

static uint8_t bus_read(void)
{
    for (int i = 0; i < n_boards; i++) {
        board_t *b = &boards[i];
        if (b->selected != 2)
            continue;
        uint8_t r = b->ptr, v = r >= ALL_LED && r < PRE_SCALE ? 0 : b->regs[r];
        if (b->regs[MODE1] & MODE1_AI)
            b->ptr = r == LED_END - 1 ? 0 : (uint8_t)(r + 1);
        n_reads++;
        return v;
    }
    return 0xFF;
}

static const twi_slaves_t slaves = {bus_address, bus_write, bus_read, bus_stop};

int pca9685_attach(avr_t *avr, const uint8_t *addrs, int n, pca9685_change_fn on_change,
                   FILE *log)
{
    if (n < 0 || n > PCA9685_MAX_BOARDS)
        return -1;
    sim_avr = avr;
    change_cb = on_change;
    bus_log = log;
    n_boards = n;
    for (int i = 0; i < n; i++) {
        boards[i].addr = addrs[i];
        reset_board(&boards[i]);
    }
    return twi_master_attach(avr, &slaves);
}

void pca9685_report(FILE *f)
{
    fprintf(f,
            "# pca9685 boards %d transactions %" PRIu64 " bytes %" PRIu64 " nack_addr %" PRIu64
            " nack_data %" PRIu64 " repeated_start %" PRIu64 " reads %" PRIu64
            " longest %" PRIu64 " bytes\n",
            n_boards, n_xfers, n_bytes, n_nack_addr, n_nack_data, n_repeated, n_reads,
            xfer_bytes_max);
    twi_master_report(f);
    for (int i = 0; i < n_boards; i++) {
        const board_t *b = &boards[i];
        int on = 0;
        for (int ch = 0; ch < 16; ch++)
            on += b->duty[ch] != 0;
        /* f_PWM = 25 MHz / (4096 * (PRE_SCALE + 1)) */
        fprintf(f,
                "# pca9685 0x%02x mode1 0x%02x mode2 0x%02x prescale %u pwm_hz %.1f on %d"
                " prescale_ignored %" PRIu64 "\n",
                b->addr, b->regs[MODE1], b->regs[MODE2], b->regs[PRE_SCALE],
                25e6 / (4096.0 * (b->regs[PRE_SCALE] + 1)), on, b->prescale_ignored);
    }
}
