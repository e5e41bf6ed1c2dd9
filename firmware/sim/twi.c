/* TWI master model for the simavr harness (see twi.h). */
#include "twi.h"

#include <inttypes.h>

#include "sim_cycle_timers.h"
#include "sim_interrupts.h"
#include "sim_io.h"

/* ATmega2560 TWI registers (data-space addresses) and TWCR bits */
#define TWBR 0xB8
#define TWSR 0xB9
#define TWDR 0xBB
#define TWCR 0xBC
#define TWINT 0x80
#define TWSTA 0x20
#define TWSTO 0x10
#define TWEN 0x04

/* master status codes (TWSR & 0xF8) */
#define ST_START 0x08
#define ST_REP_START 0x10
#define ST_SLA_W_ACK 0x18
#define ST_SLA_W_NACK 0x20
#define ST_DATA_W_ACK 0x28
#define ST_DATA_W_NACK 0x30
#define ST_SLA_R_ACK 0x40
#define ST_SLA_R_NACK 0x48
#define ST_DATA_R_ACK 0x50
#define ST_DATA_R_NACK 0x58
#define ST_IDLE 0xF8

enum { STEP_NONE, STEP_START, STEP_BYTE, STEP_STOP };

static avr_t *sim;
static const twi_slaves_t *bus;
static avr_int_vector_t *twi_vector; /* raised flag = TWCR.TWINT */
static int step, owned, after_sla, reading, start_after_stop;
static uint64_t bus_free_at; /* cycle from which a START may begin */
static uint64_t step_end;    /* when the step on the bus ends */
static uint64_t xfer_start, xfer_longest, n_steps, n_xfers;
static uint32_t last_period;

static uint32_t period(void)
{
    uint32_t p = 16u + 2u * sim->data[TWBR] * (1u << (2u * (sim->data[TWSR] & 3u)));
    last_period = p;
    return p;
}

static void set_status(uint8_t code)
{
    sim->data[TWSR] = (uint8_t)(code | (sim->data[TWSR] & 3u));
}

static void set_twint(void)
{
    if (twi_vector)
        avr_raise_interrupt(sim, twi_vector); /* sets TWINT; interrupts only if TWIE */
    else
        sim->data[TWCR] |= TWINT;
}

static avr_cycle_count_t step_done(struct avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)a, (void)param;
    int s = step;
    step = STEP_NONE;
    n_steps++;
    if (s == STEP_START) {
        set_status(owned ? ST_REP_START : ST_START);
        if (!owned) {
            n_xfers++;
            xfer_start = when;
        }
        owned = 1;
        after_sla = 1;
        set_twint();
    } else if (s == STEP_BYTE) {
        uint8_t byte = sim->data[TWDR];
        if (after_sla) {
            after_sla = 0;
            reading = byte & 1;
            int ack = bus->address(byte);
            set_status(reading ? (ack ? ST_SLA_R_ACK : ST_SLA_R_NACK)
                               : (ack ? ST_SLA_W_ACK : ST_SLA_W_NACK));
        } else if (!reading) {
            set_status(bus->write(byte) ? ST_DATA_W_ACK : ST_DATA_W_NACK);
        } else {
            sim->data[TWDR] = bus->read();
            set_status((sim->data[TWCR] & 0x40) ? ST_DATA_R_ACK : ST_DATA_R_NACK); /* TWEA */
        }
        set_twint();
    } else if (s == STEP_STOP) {
        bus->stop();
        owned = 0;
        if (when - xfer_start > xfer_longest)
            xfer_longest = when - xfer_start;
        sim->data[TWCR] &= (uint8_t)~TWSTO; /* cleared by the hardware once sent */
        set_status(ST_IDLE);
        bus_free_at = when + period();
        if (start_after_stop) {
            start_after_stop = 0;
            step = STEP_START;
            step_end = bus_free_at + period();
            return step_end;
        }
    }
    return 0;
}

static void begin(int s, avr_cycle_count_t cycles)
{
    step = s;
    step_end = sim->cycle + (cycles ? cycles : 1);
    avr_cycle_timer_register(sim, cycles ? cycles : 1, step_done, NULL);
}

static void on_twcr(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    uint8_t old = a->data[TWCR];
    if (step != STEP_NONE && a->cycle > step_end + 1) { /* an MCU reset dropped the timer */
        step = STEP_NONE;
        owned = 0;
    }
    /* TWINT: writing 1 clears it, writing 0 leaves it */
    a->data[TWCR] = (uint8_t)((v & ~TWINT) | ((v & TWINT) ? 0 : (old & TWINT)));
    if ((v & TWINT) && twi_vector)
        avr_clear_interrupt(a, twi_vector);
    if (!(v & TWEN)) { /* the module off: the bus released, nothing pending */
        avr_cycle_timer_cancel(a, step_done, NULL);
        step = STEP_NONE;
        owned = 0;
        set_status(ST_IDLE);
        return;
    }
    if (!(v & TWINT) || step != STEP_NONE)
        return; /* a step only starts when TWINT is written 1 with the bus step done */
    uint32_t p = period();
    if ((v & TWSTO) && owned) {
        start_after_stop = (v & TWSTA) != 0;
        begin(STEP_STOP, p);
    } else if (v & TWSTA) {
        uint64_t at = a->cycle > bus_free_at ? a->cycle : bus_free_at;
        begin(STEP_START, at - a->cycle + p);
    } else if (owned) {
        begin(STEP_BYTE, 9u * p);
    }
}

static void on_twdr(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    if (step == STEP_NONE)
        a->data[TWDR] = v;
    else
        a->data[TWCR] |= 0x08; /* TWWC: written while a byte is on the bus */
}

static void on_twsr(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    a->data[TWSR] = (uint8_t)((a->data[TWSR] & 0xF8) | (v & 3u)); /* only TWPS is written */
}

static void take_write(avr_t *a, avr_io_addr_t addr, avr_io_write_t fn)
{
    a->io[AVR_DATA_TO_IO(addr)].w.c = fn;
    a->io[AVR_DATA_TO_IO(addr)].w.param = NULL;
}

int twi_master_attach(avr_t *avr, const twi_slaves_t *slaves)
{
    sim = avr;
    bus = slaves;
    for (int i = 0; i < avr->interrupts.vector_count; i++) {
        avr_int_vector_t *vec = avr->interrupts.vector[i];
        if (vec && vec->raised.reg == TWCR && vec->raised.bit == 7)
            twi_vector = vec;
    }
    take_write(avr, TWCR, on_twcr);
    take_write(avr, TWDR, on_twdr);
    take_write(avr, TWSR, on_twsr);
    avr->data[TWSR] = ST_IDLE;
    return 0;
}

void twi_master_reset(void)
{
    /* avr_reset() cleared the registers and the cycle timers: the module is off, its
     * bus lines released. The slaves saw no STOP: a board mid-transaction stays
     * selected until the next START (a repeated START to it). */
    step = STEP_NONE;
    owned = after_sla = reading = start_after_stop = 0;
    sim->data[TWSR] = ST_IDLE;
    sim->data[TWDR] = 0xFF;
    bus_free_at = sim->cycle;
}

void twi_master_report(FILE *f)
{
    fprintf(f,
            "# twi scl_period %" PRIu32 " cycles, transactions %" PRIu64 " steps %" PRIu64
            " longest %" PRIu64 " cycles\n",
            last_period, n_xfers, n_steps, xfer_longest);
}
