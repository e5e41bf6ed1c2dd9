/* simavr harness: runs the AVR firmware ELF with UART0 on a pty, in real time, and
 * records every direct-output pin change with its cycle count.
 *
 *   robo_sim [--elf FILE] [--pty-link PATH] [--trace FILE] [--boot-id N]
 *            [--speed X] [--max-seconds S]
 *
 * Prints "PTY <path>" on stdout once UART0 is on a pty (and symlinks PATH to it).
 * --speed: simulated seconds per wall second (default 1: the MCU clock keeps pace
 * with the host's clock, as a real board does; 0 = as fast as possible).
 *
 * Trace file: a header "# robo_sim avr clock_hz=16000000 boot_id=<hex>", then one
 * line per output change: "<clock> <out_kind> <out_addr> <out_channel> <level>" —
 * clock: the firmware's own clock (Timer1 ticks = cycles since Timer1 started, see
 * the "# timer1 started at cycle N" line), so that it compares with scheduled clocks;
 * out_kind 0 = direct pin (out_channel = output number of boards/avr/pins.h, level
 * 0/1). Every simulated second (and at exit) a line "# cycles <total> busy <busy>"
 * gives the cycles the CPU spent awake (not in SLEEP): the firmware's CPU load.
 * PCA9685 outputs (TWI) are not decoded here: the sim and the timing benchmarks use
 * direct outputs. Exits on SIGTERM/SIGINT, or after --max-seconds of simulated time. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avr_eeprom.h"
#include "avr_ioport.h"
#include "parts/uart_pty.h"
#include "sim_io.h"
#include "sim_avr.h"
#include "sim_elf.h"

#include "pins.h"

static const uint8_t pins[RP_AVR_DIRECT_OUTPUTS] = RP_AVR_PINS_INIT;
static int8_t output_of[11][8]; /* port, bit -> direct output number, or -1 */
static uint8_t port_state[11];
static FILE *trace;
static avr_t *avr;
static volatile sig_atomic_t stop;
static uart_pty_t uart_pty;

/* The firmware's clock is Timer1 (no prescaler): it counts from the cycle its clock
 * select bits are first written. Trace times are in that clock, like the host build's. */
#define TCCR1B_ADDR 0x81
static uint64_t timer_start_cycle;
static int timer_started;

static void on_tccr1b(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    if (!timer_started && (v & 0x07)) {
        timer_started = 1;
        timer_start_cycle = a->cycle;
        if (trace)
            fprintf(trace, "# timer1 started at cycle %" PRIu64 "\n", timer_start_cycle);
    }
}

/* Check the mapping at every Timer1 compare-A match: the firmware's clock then equals
 * OCR1A in its low 16 bits. The first match corrects the start cycle (simavr starts
 * counting a few cycles after the TCCR1B write); later ones count disagreements. */
#define OCR1AL_ADDR 0x88
#define TIMSK1_ADDR 0x6F
#define TIMER1_COMPA_VECTOR 17
static int clock_checked;
static uint64_t clock_mismatches;

static void on_compa(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if (!value || !timer_started || !(avr->data[TIMSK1_ADDR] & 0x02))
        return; /* simavr signals every match; only armed ones (OCIE1A set) count */
    uint16_t ocr = (uint16_t)(avr->data[OCR1AL_ADDR] | avr->data[OCR1AL_ADDR + 1] << 8);
    int16_t diff = (int16_t)(uint16_t)((avr->cycle - timer_start_cycle) - ocr);
    if (!clock_checked) {
        clock_checked = 1;
        timer_start_cycle += (int64_t)diff;
        if (trace)
            fprintf(trace, "# timer1 clock = cycle - %" PRIu64 " (checked at a compare match)\n",
                    timer_start_cycle);
    } else if (diff) {
        clock_mismatches++;
    }
}

static const char port_letters[11] = {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'J', 'K', 'L'};

static void on_port(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    int port = (int)(intptr_t)param;
    uint8_t v = (uint8_t)value, changed = (uint8_t)(v ^ port_state[port]);
    port_state[port] = v;
    for (int bit = 0; bit < 8; bit++) {
        if (!(changed & (1 << bit)) || output_of[port][bit] < 0)
            continue;
        if (trace)
            fprintf(trace, "%" PRIu64 " 0 0 %d %d\n", (uint64_t)(avr->cycle - timer_start_cycle),
                    output_of[port][bit], (v >> bit) & 1);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: robo_sim [--elf FILE] [--pty-link PATH] [--trace FILE] "
                    "[--boot-id N] [--speed X] [--max-seconds S]\n");
    exit(2);
}

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *elf = "build/avr/robo_fw.elf", *link_path = NULL, *trace_path = NULL;
    uint32_t boot_id = 0;
    double speed = 1.0, max_seconds = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--elf"))
            elf = argv[++i];
        else if (!strcmp(argv[i], "--pty-link"))
            link_path = argv[++i];
        else if (!strcmp(argv[i], "--trace"))
            trace_path = argv[++i];
        else if (!strcmp(argv[i], "--boot-id"))
            boot_id = (uint32_t)strtoul(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--speed"))
            speed = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-seconds"))
            max_seconds = atof(argv[++i]);
        else
            usage();
    }
    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(elf, &fw)) {
        fprintf(stderr, "robo_sim: --elf %s: cannot read the firmware\n", elf);
        return 1;
    }
    if (!fw.mmcu[0])
        strcpy(fw.mmcu, "atmega2560");
    if (!fw.frequency)
        fw.frequency = 16000000;
    avr = avr_make_mcu_by_name(fw.mmcu);
    if (!avr) {
        fprintf(stderr, "robo_sim: MCU %s unknown to simavr\n", fw.mmcu);
        return 1;
    }
    avr_init(avr);
    avr->log = 0;
    avr_load_firmware(avr, &fw);

    /* boot_id seed in EEPROM dword 0, boot counter (dword 4) 0 */
    uint8_t ee[8] = {(uint8_t)boot_id, (uint8_t)(boot_id >> 8), (uint8_t)(boot_id >> 16),
                     (uint8_t)(boot_id >> 24), 0, 0, 0, 0};
    avr_eeprom_desc_t d = {.ee = ee, .offset = 0, .size = sizeof ee};
    avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &d);

    memset(output_of, -1, sizeof output_of);
    for (int k = 0; k < RP_AVR_DIRECT_OUTPUTS; k++)
        output_of[pins[k] >> 3][pins[k] & 7] = (int8_t)k;
    for (int p = 0; p < 11; p++) {
        avr_irq_t *irq =
            avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port_letters[p]), IOPORT_IRQ_PIN_ALL);
        if (irq)
            avr_irq_register_notify(irq, on_port, (void *)(intptr_t)p);
    }

    avr_register_io_write(avr, TCCR1B_ADDR, on_tccr1b, NULL);
    avr_irq_register_notify(avr_get_interrupt_irq(avr, TIMER1_COMPA_VECTOR) + AVR_INT_IRQ_PENDING,
                            on_compa, NULL);
    if (trace_path) {
        trace = fopen(trace_path, "w");
        if (!trace) {
            fprintf(stderr, "robo_sim: --trace %s: %s\n", trace_path, strerror(errno));
            return 1;
        }
        setvbuf(trace, NULL, _IOLBF, 0); /* readers follow it while the sim runs */
        fprintf(trace, "# robo_sim avr clock_hz=%" PRIu32 " boot_id=0x%08" PRIx32 "\n",
                (uint32_t)fw.frequency, boot_id);
        fflush(trace);
    }

    uart_pty_init(avr, &uart_pty);
    uart_pty_connect(&uart_pty, '0');
    if (link_path) {
        unlink(link_path);
        if (symlink(uart_pty.pty.slavename, link_path)) {
            fprintf(stderr, "robo_sim: --pty-link %s: %s\n", link_path, strerror(errno));
            return 1;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("PTY %s\n", uart_pty.pty.slavename);
    fflush(stdout);

    uint64_t busy = 0, next_report = fw.frequency;
    uint64_t max_cycles = max_seconds > 0 ? (uint64_t)(max_seconds * fw.frequency) : 0;
    double start = wall();
    int state = cpu_Running;
    while (!stop && state != cpu_Done && state != cpu_Crashed) {
        uint64_t c0 = avr->cycle;
        int was_running = avr->state == cpu_Running;
        state = avr_run(avr);
        /* One call runs one instruction; a call that ends asleep has also skipped the
         * sleep that followed its SLEEP instruction: only its first cycle was busy. */
        if (was_running)
            busy += state == cpu_Sleeping ? 1 : avr->cycle - c0;
        if (avr->cycle >= next_report) {
            if (trace) {
                fprintf(trace, "# cycles %" PRIu64 " busy %" PRIu64 "\n", (uint64_t)avr->cycle,
                        busy);
                fflush(trace);
            }
            next_report += fw.frequency;
        }
        if (max_cycles && avr->cycle >= max_cycles)
            break;
        if (speed > 0 && avr->cycle / 16000 != c0 / 16000) { /* about every ms */
            /* keep simulated time at `speed` x wall time */
            double ahead = (double)avr->cycle / fw.frequency / speed - (wall() - start);
            if (ahead > 0.001) {
                struct timespec ts = {0, (long)(ahead * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
    }
    if (trace) {
        fprintf(trace, "# cycles %" PRIu64 " busy %" PRIu64 "\n", (uint64_t)avr->cycle, busy);
        fprintf(trace, "# clock mismatches %" PRIu64 "\n", clock_mismatches);
        fprintf(trace, "# exit state=%d\n", state);
        fclose(trace);
    }
    if (link_path)
        unlink(link_path);
    /* not uart_pty_stop(): its thread does not always leave select() (it joins forever);
     * _exit ends it with the process */
    fflush(NULL);
    _exit(state == cpu_Crashed ? 1 : 0);
}
