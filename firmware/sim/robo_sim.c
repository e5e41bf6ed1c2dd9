/* simavr harness: runs the AVR firmware ELF with UART0 on a pty, paced, and
 * records every direct-output pin change and every PCA9685 channel change (a model of
 * the chip on the TWI bus, pca9685.c) with its cycle count.
 *
 *   robo_sim [--elf FILE] [--pty-link PATH] [--trace FILE] [--boot-id N]
 *            [--speed X] [--max-seconds S] [--clock-file PATH] [--profile FILE]
 *            [--pca ADDRS] [--i2c-log 1]
 *
 * --pca: the 7-bit addresses of the PCA9685 boards on the bus, "0x40,0x41", ranges
 * "0x40-0x47" (the default), or "none". A write to any other address is NACKed.
 * --i2c-log 1: one trace comment per bus event ("# i2c <cycle> start-write|write|stop
 * <addr> [<byte>] ack|nack"), for debugging.
 *
 * --profile: at exit, write the busy cycles spent at each program address ("<pc hex>
 * <cycles>" per line, byte addresses as avr-objdump prints them), for a per-function
 * profile (avr-nm maps them to symbols).
 * Prints "PTY <path>" on stdout once UART0 is on a pty (and symlinks PATH to it).
 * --speed: simulated seconds per wall second (default 1: the MCU clock keeps pace
 * with the host's clock, as a real board does; 0 = as fast as possible). It is a cap:
 * when simavr cannot keep up it runs slower, and catches up at most 20 ms of wall time.
 * --clock-file: a 16-byte file, shared (mmap), that always holds the simulated clock:
 * bytes 0..3 "RPCK", 4..7 the MCU clock in Hz (little-endian u32), 8..15 the cycle
 * count (little-endian u64, stored atomically after every instruction). A host that
 * runs on simulated time reads it instead of scaling its wall clock by --speed, so its
 * clock stays exactly the MCU's even when simavr runs slower than --speed.
 *
 * Trace file: a header "# robo_sim avr clock_hz=16000000 boot_id=<hex>", then one
 * line per output change: "<clock> <out_kind> <out_addr> <out_channel> <level>" —
 * clock: the firmware's own clock (Timer1 ticks = cycles since Timer1 started, see
 * the "# timer1 started at cycle N" line), so that it compares with scheduled clocks;
 * out_kind 0 = direct pin (out_channel = output number of boards/avr/pins.h, level
 * 0/1); out_kind 1 = PCA9685 channel (out_addr = the board's 7-bit address in decimal,
 * out_channel 0..15, level = its duty in 1/4096: 0 off, 4096 full on), at the cycle of
 * the STOP (or, with MODE2.OCH, the ACK) that made it take effect. Every simulated second (and at exit) a line "# cycles <total> busy <busy>
 * wall <s>" gives the cycles the CPU spent awake (not in SLEEP): the firmware's CPU
 * load; and the wall seconds since the start: simulated s / wall s is the speed.
 * At exit: "# clock mismatches N" (compare-A matches off the cycle mapping), "# interrupts
 * off for at most N cycles (from pc .. to ..)" (after the timer started; and the same
 * "outside interrupt handlers": the main loop's critical sections), "# stack pointer at
 * least 0x.. (N bytes below RAMEND ..)" (the deepest stack), "# timer1 flags
 * kept on TIFR1 writes N" and "# timer1 overflows R serviced S of N" (see on_tifr1).
 * At exit also "# pca9685 ..." lines: bus totals (transactions, bytes, NACKs, the longest
 * transaction) and each board's MODE1/MODE2, prescale and channels left on. Exits on SIGTERM/SIGINT, or after --max-seconds of simulated time, or (--parent PID) once that process, the one that started it, is gone (checked every simulated ms).
 *
 * SIGUSR1 resets the MCU (as its RESET pin would) and nothing else: the PCA9685 boards
 * keep their registers and outputs, the pty stays open. The trace gets "# mcu reset at
 * cycle N clock C" (C in the trace's clock); every direct output's pin becomes an input
 * (off: a line "C 0 0 k 0" for each that was high); the firmware starts again from its
 * reset vector. Trace clocks go on counting from the first run's Timer1 start (the
 * firmware's own clock restarts from 0: "# timer1 restarted at cycle M"). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "avr_eeprom.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_cycle_timers.h"
#include "sim_io.h"
#include "sim_avr.h"
#include "sim_elf.h"

#include "pca9685.h"
#include "pins.h"
#include "twi.h"

static const uint8_t pins[RP_AVR_DIRECT_OUTPUTS] = RP_AVR_PINS_INIT;
static int8_t output_of[11][8]; /* port, bit -> direct output number, or -1 */
static uint8_t port_state[11];
static FILE *trace;
static avr_t *avr;
/* ATmega2560: 57 vectors of 4 bytes (jmp); an interrupt taken puts the PC there */
#define VECTOR_TABLE_END (57 * 4)
static volatile sig_atomic_t stop, reset_req;

/* The firmware's clock is Timer1 (no prescaler): it counts from the cycle its clock
 * select bits are first written. Trace times are in that clock, like the host build's. */
#define TCCR1B_ADDR 0x81
static uint64_t timer_start_cycle; /* this run's Timer1 start (the compare check) */
static uint64_t trace_base;        /* trace clock = cycle - trace_base (the first run's) */
static int timer_started, mcu_resets;

static void on_tccr1b(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)addr, (void)param;
    if (!timer_started && (v & 0x07)) {
        timer_started = 1;
        timer_start_cycle = a->cycle;
        if (!mcu_resets)
            trace_base = timer_start_cycle;
        if (trace)
            fprintf(trace, "# timer1 %s at cycle %" PRIu64 "\n",
                    mcu_resets ? "restarted" : "started", timer_start_cycle);
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
        if (!mcu_resets)
            trace_base = timer_start_cycle;
        if (trace)
            fprintf(trace, "# timer1 clock = cycle - %" PRIu64 " (checked at a compare match)\n",
                    timer_start_cycle);
    } else if (diff) {
        clock_mismatches++;
    }
}

/* Timer1 overflows simavr raised, against those the cycle count says happened: simavr
 * 1.6 loses some when OCR1A is rewritten often (the firmware's clock then lags). */
#define TIMER1_OVF_VECTOR 20
static uint64_t overflows, overflows_run;

static void on_ovf_run(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if (value && timer_started)
        overflows_run++;
}

static void on_ovf(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if (value && timer_started)
        overflows++;
}

/* simavr 1.6 clears every raised Timer1 flag on any write to TIFR1, where the hardware
 * clears only the flags written as 1: the firmware's `TIFR1 = _BV(OCF1A)` (arming the
 * compare) then loses a pending overflow, and its 32-bit clock falls 4.096 ms behind
 * each time (measured: 70 of 756 overflows lost at 300 notes/s). The harness wraps
 * simavr's TIFR1 write handler and raises again what a hardware write would leave. */
#define TIFR1_ADDR 0x36
static avr_io_write_t tifr1_write;
static void *tifr1_param;
static avr_int_vector_t *timer1_vectors[8]; /* TIFR1 bit -> vector */
static uint64_t tifr1_kept;

static void on_tifr1(struct avr_t *a, avr_io_addr_t addr, uint8_t v, void *param)
{
    (void)param;
    uint8_t before = a->data[TIFR1_ADDR];
    tifr1_write(a, addr, v, tifr1_param);
    uint8_t lost = (uint8_t)(before & ~v & ~a->data[TIFR1_ADDR]);
    for (int bit = 0; bit < 8; bit++)
        if ((lost & (1 << bit)) && timer1_vectors[bit]) {
            avr_raise_interrupt(a, timer1_vectors[bit]);
            tifr1_kept++;
        }
}

static void hardware_tifr1(avr_t *a)
{
    int io = AVR_DATA_TO_IO(TIFR1_ADDR);
    tifr1_write = a->io[io].w.c;
    tifr1_param = a->io[io].w.param;
    if (!tifr1_write)
        return;
    for (int i = 0; i < a->interrupts.vector_count; i++) {
        avr_int_vector_t *vec = a->interrupts.vector[i];
        if (vec && vec->raised.reg == TIFR1_ADDR)
            timer1_vectors[vec->raised.bit] = vec;
    }
    a->io[io].w.c = on_tifr1;
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
            fprintf(trace, "%" PRIu64 " 0 0 %d %d\n", (uint64_t)(avr->cycle - trace_base),
                    output_of[port][bit], (v >> bit) & 1);
    }
}

/* A PCA9685 channel's output changed (pca9685.c): a trace line of out_kind 1. */
static void on_pca(uint8_t addr, uint8_t channel, uint16_t duty, uint64_t cycle)
{
    if (trace)
        fprintf(trace, "%" PRIu64 " 1 %u %u %u\n", (uint64_t)(cycle - trace_base),
                (unsigned)addr, (unsigned)channel, (unsigned)duty);
}

/* "0x40,0x41", "0x40-0x47" or "none" -> addresses; the count, or -1 if malformed. */
static int parse_pca(const char *s, uint8_t *out)
{
    int n = 0;
    if (!strcmp(s, "none"))
        return 0;
    while (*s) {
        char *end;
        unsigned long lo = strtoul(s, &end, 0), hi = lo;
        if (end == s)
            return -1;
        if (*end == '-') {
            s = end + 1;
            hi = strtoul(s, &end, 0);
            if (end == s)
                return -1;
        }
        if (lo > 0x7F || hi > 0x7F || hi < lo || n + (int)(hi - lo) >= PCA9685_MAX_BOARDS)
            return -1;
        for (unsigned long a = lo; a <= hi; a++)
            out[n++] = (uint8_t)a;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        s = end;
    }
    return n;
}

/* simavr's own sleep handler usleeps through the MCU's SLEEP in real time; the harness
 * paces simulated time itself (--speed), so a sleeping MCU costs no wall time here. */
static void no_sleep(struct avr_t *a, avr_cycle_count_t how_long)
{
    (void)a, (void)how_long;
}

/* UART0 <-> pty bridge, all on the simulation thread. (simavr's uart_pty part injects
 * received bytes from its own thread, which races with the cycle timers of the AVR
 * thread: under a steady stream the UART's receive pump or a Timer1 event can get
 * lost, and the firmware's watchdog then fires with bytes still waiting.) Every
 * POLL_CYCLES the harness writes what the AVR sent and, while simavr's 64-byte UART
 * input FIFO has room (XON/XOFF), hands it the bytes the host wrote; simavr itself
 * delivers them to UDR0 one byte time apart. */
#define POLL_CYCLES 512 /* 32 us at 16 MHz, a third of a byte time at 115200 baud */
static int pty_master = -1, pty_slave = -1;
static char pty_name[128];
static avr_irq_t *uart_in;
static int uart_xon; /* simavr raises XON once the firmware enables the receiver */
static uint8_t host_buf[256], avr_buf[4096];
static size_t host_len, host_done, avr_len;
static uint64_t avr_dropped;
static int avr_spoke; /* the firmware sent a byte: it runs (bytes lost before: booting) */

static void on_uart_out(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    avr_spoke = 1;
    if (avr_len < sizeof avr_buf)
        avr_buf[avr_len++] = (uint8_t)value;
    else
        avr_dropped++; /* the host does not read: like a line nobody listens to */
}

static void on_uart_xon(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if (value)
        uart_xon = 1;
}

static void on_uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq, (void)param;
    if (value)
        uart_xon = 0;
}

/* The ATmega2560's receiver (data sheet, "USART Receiver": a two-level receive buffer,
 * and Data OverRun when a third byte's stop bit comes while both are unread; that byte
 * is lost). simavr 1.6 instead holds the host's bytes in a 64-byte FIFO and hands them
 * over as the firmware reads, so a firmware that keeps interrupts off too long is never
 * caught. The harness puts the host's bytes on the line itself, one byte time apart
 * (the UART's own cycles per byte at the firmware's UBRR), and drops a byte that
 * arrives while two are unread in simavr's FIFO (which then models the chip's two-level
 * buffer: simavr makes a byte readable one byte time after it is raised, i.e. when the
 * next one is on the line), counting it: "# uart rx overruns N" at exit. */
static avr_uart_t *uart0;
static uint64_t rx_overruns, rx_bytes, rx_boot_overruns;

static unsigned uart0_unread(void) /* bytes in simavr's receive FIFO (fifo_declare.h) */
{
    return (unsigned)((uart0->input.write + uart_fifo_fifo_size) - uart0->input.read) &
           (uart_fifo_fifo_size - 1);
}

/* simavr makes a received byte readable (RXC) one byte time after it reaches an empty
 * FIFO, and after each UDR read the next one another byte time later: under a steady
 * stream its FIFO falls further behind the line the later the firmware reads, which the
 * chip does not do (a byte is readable when its stop bit is in, and RXC stays set while
 * the buffer holds one). So the harness raises RXC itself when a byte arrives and after
 * a read that leaves one unread: the FIFO then holds what the chip's buffer holds. */
static avr_io_read_t udr_read_orig;
static void *udr_read_param;

static uint8_t udr_read(struct avr_t *a, avr_io_addr_t addr, void *param)
{
    (void)param;
    uint8_t v = udr_read_orig(a, addr, udr_read_param);
    if (uart0_unread())
        avr_raise_interrupt(a, &uart0->rxc);
    return v;
}

static avr_cycle_count_t uart_rx(struct avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)param;
    avr_cycle_count_t per_byte = uart0 && uart0->cycles_per_byte ? uart0->cycles_per_byte : 1389;
    if (uart_xon && host_done < host_len) {
        uint8_t b = host_buf[host_done++];
        if (uart0 && uart0_unread() >= 2) {
            *(avr_spoke ? &rx_overruns : &rx_boot_overruns) += 1; /* lost, as on the chip */
        } else {
            avr_raise_irq(uart_in, b);
            if (uart0 && udr_read_orig && uart0_unread())
                avr_raise_interrupt(a, &uart0->rxc); /* readable now, as on the chip */
        }
        rx_bytes++;
    }
    return when + per_byte;
}

static avr_cycle_count_t uart_poll(struct avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)a, (void)param;
    if (avr_len) {
        ssize_t w = write(pty_master, avr_buf, avr_len);
        if (w > 0) {
            memmove(avr_buf, avr_buf + w, avr_len - (size_t)w);
            avr_len -= (size_t)w;
        }
    }
    if (host_done == host_len && uart_xon) {
        ssize_t r = read(pty_master, host_buf, sizeof host_buf);
        host_len = r > 0 ? (size_t)r : 0;
        host_done = 0;
    }
    return when + POLL_CYCLES;
}

static int uart_bridge(avr_t *a)
{
    struct termios tio;
    if (openpty(&pty_master, &pty_slave, pty_name, NULL, NULL) < 0)
        return -1;
    tcgetattr(pty_slave, &tio);
    cfmakeraw(&tio);
    tcsetattr(pty_slave, TCSANOW, &tio);
    tcgetattr(pty_master, &tio);
    cfmakeraw(&tio);
    tcsetattr(pty_master, TCSANOW, &tio);
    fcntl(pty_master, F_SETFL, fcntl(pty_master, F_GETFL) | O_NONBLOCK);
    /* pty_slave stays open: the master does not see a hang-up between host opens */
    uint32_t f = 0;
    avr_ioctl(a, AVR_IOCTL_UART_GET_FLAGS('0'), &f);
    f &= ~AVR_UART_FLAG_STDIO;
    avr_ioctl(a, AVR_IOCTL_UART_SET_FLAGS('0'), &f);
    uart_in = avr_io_getirq(a, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_t *out = avr_io_getirq(a, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
    avr_irq_t *xon = avr_io_getirq(a, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON);
    avr_irq_t *xoff = avr_io_getirq(a, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF);
    if (!uart_in || !out || !xon || !xoff)
        return -1;
    avr_irq_register_notify(out, on_uart_out, NULL);
    avr_irq_register_notify(xon, on_uart_xon, NULL);
    avr_irq_register_notify(xoff, on_uart_xoff, NULL);
    avr_cycle_timer_register(a, POLL_CYCLES, uart_poll, NULL);
    avr_cycle_timer_register(a, POLL_CYCLES, uart_rx, NULL);
    for (avr_io_t *io = a->io_port; io; io = io->next)
        if (io->kind && !strcmp(io->kind, "uart") && ((avr_uart_t *)io)->name == '0')
            uart0 = (avr_uart_t *)io;
    if (!uart0) {
        fprintf(stderr, "robo_sim: UART0 not found: no receive overrun model\n");
    } else {
        int io = AVR_DATA_TO_IO(uart0->r_udr); /* wrap simavr's UDR0 read: udr_read() */
        udr_read_orig = a->io[io].r.c;
        udr_read_param = a->io[io].r.param;
        if (udr_read_orig)
            a->io[io].r.c = udr_read;
    }
    return 0;
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        reset_req = 1;
    else
        stop = 1;
}

/* SIGUSR1: the MCU's RESET pin, between two instructions. avr_reset() clears the I/O
 * registers (every DDR and PORT 0: each pin an input, off), SRAM and the cycle timers;
 * the boards, the EEPROM (its boot counter) and the pty are outside the MCU. */
static void mcu_reset(void)
{
    mcu_resets++;
    if (trace)
        fprintf(trace, "# mcu reset at cycle %" PRIu64 " clock %" PRIu64 "\n",
                (uint64_t)avr->cycle, (uint64_t)(avr->cycle - trace_base));
    avr_reset(avr);
    avr->state = cpu_Running;
    for (int p = 0; p < 11; p++) { /* the pins' new level, traced by on_port */
        avr_irq_t *irq =
            avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port_letters[p]), IOPORT_IRQ_PIN_ALL);
        if (irq)
            avr_raise_irq(irq, 0);
        port_state[p] = 0;
    }
    twi_master_reset();
    avr_cycle_timer_register(avr, POLL_CYCLES, uart_poll, NULL); /* dropped by the reset */
    avr_cycle_timer_register(avr, POLL_CYCLES, uart_rx, NULL);
    pca9685_rearm();                                              /* the same */
    uart_xon = 0; /* until the firmware enables its receiver again */
    timer_started = clock_checked = 0;
    avr_spoke = 0; /* booting again */
}

static void usage(void)
{
    fprintf(stderr, "usage: robo_sim [--elf FILE] [--pty-link PATH] [--trace FILE] "
                    "[--boot-id N] [--speed X] [--max-seconds S] [--clock-file PATH] "
                    "[--profile FILE] [--pca ADDRS|none] [--i2c-log 1] [--parent PID]\n");
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
    const char *clock_path = NULL, *profile_path = NULL, *pca_list = "0x40-0x47";
    int i2c_log = 0, parent = 0;
    uint32_t boot_id = 0;
    double speed = 1.0, max_seconds = 0;
    /* every option takes one value: 's' a string, 'u' a number (0x.. too), 'd' a real, 'i' an int */
    const struct { const char *name; char kind; void *dst; } opts[] = {
        {"--elf", 's', &elf},           {"--pty-link", 's', &link_path},
        {"--trace", 's', &trace_path},  {"--boot-id", 'u', &boot_id},
        {"--speed", 'd', &speed},       {"--max-seconds", 'd', &max_seconds},
        {"--clock-file", 's', &clock_path}, {"--profile", 's', &profile_path},
        {"--pca", 's', &pca_list},      {"--i2c-log", 'i', &i2c_log},
        {"--parent", 'i', &parent},
    };
    for (int i = 1; i < argc; i += 2) {
        size_t k = 0;
        while (k < sizeof opts / sizeof opts[0] && strcmp(argv[i], opts[k].name))
            k++;
        if (i + 1 >= argc || k == sizeof opts / sizeof opts[0])
            usage();
        const char *v = argv[i + 1];
        switch (opts[k].kind) {
        case 's': *(const char **)opts[k].dst = v; break;
        case 'u': *(uint32_t *)opts[k].dst = (uint32_t)strtoul(v, NULL, 0); break;
        case 'd': *(double *)opts[k].dst = atof(v); break;
        default: *(int *)opts[k].dst = atoi(v); break;
        }
    }
    uint8_t pca_addrs[PCA9685_MAX_BOARDS];
    int n_pca = parse_pca(pca_list, pca_addrs);
    if (n_pca < 0) {
        fprintf(stderr, "robo_sim: --pca %s: want addresses 0x00..0x7F like 0x40,0x41 or "
                        "0x40-0x47, at most %d, or none\n", pca_list, PCA9685_MAX_BOARDS);
        return 2;
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
    avr->sleep = no_sleep;
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

    hardware_tifr1(avr);
    avr_register_io_write(avr, TCCR1B_ADDR, on_tccr1b, NULL);
    avr_irq_register_notify(avr_get_interrupt_irq(avr, TIMER1_COMPA_VECTOR) + AVR_INT_IRQ_PENDING,
                            on_compa, NULL);
    avr_irq_register_notify(avr_get_interrupt_irq(avr, TIMER1_OVF_VECTOR) + AVR_INT_IRQ_PENDING,
                            on_ovf, NULL);
    avr_irq_register_notify(avr_get_interrupt_irq(avr, TIMER1_OVF_VECTOR) + AVR_INT_IRQ_RUNNING,
                            on_ovf_run, NULL);
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
    if (pca9685_attach(avr, pca_addrs, n_pca, on_pca, i2c_log ? trace : NULL)) {
        fprintf(stderr, "robo_sim: cannot attach the PCA9685 model to TWI\n");
        return 1;
    }

    /* the simulated clock, shared with the host (see --clock-file above) */
    static uint64_t no_clock;
    uint64_t *shared_cycle = &no_clock;
    if (clock_path) {
        int fd = open(clock_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, 16)) {
            fprintf(stderr, "robo_sim: --clock-file %s: %s\n", clock_path, strerror(errno));
            return 1;
        }
        uint8_t *m = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED) {
            fprintf(stderr, "robo_sim: --clock-file %s: mmap: %s\n", clock_path, strerror(errno));
            return 1;
        }
        uint32_t hz = (uint32_t)fw.frequency;
        memcpy(m, "RPCK", 4);
        for (int b = 0; b < 4; b++)
            m[4 + b] = (uint8_t)(hz >> (8 * b));
        shared_cycle = (uint64_t *)(m + 8); /* page-aligned + 8: an aligned u64 */
        __atomic_store_n(shared_cycle, 0, __ATOMIC_RELEASE);
    }

    if (uart_bridge(avr)) {
        fprintf(stderr, "robo_sim: cannot put UART0 on a pty: %s\n", strerror(errno));
        return 1;
    }
    if (link_path) {
        unlink(link_path);
        if (symlink(pty_name, link_path)) {
            fprintf(stderr, "robo_sim: --pty-link %s: %s\n", link_path, strerror(errno));
            return 1;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGUSR1, on_signal);
    printf("PTY %s\n", pty_name);
    fflush(stdout);

    uint64_t busy = 0, next_report = fw.frequency, cli_since = 0, cli_max = 0;
    uint32_t cli_pc = 0, cli_max_pc = 0, cli_max_end = 0;
    /* critical sections of the main loop (cli / SREG writes), apart from the handlers */
    uint64_t cli_main_max = 0;
    uint32_t cli_main_pc = 0, cli_main_end = 0;
    int cli_in_isr = 0;
    uint32_t cli_vec = 0, cli_max_vec = 0; /* the vector that opened the stretch (0: none) */
    uint64_t *profile = profile_path ? calloc(avr->flashend + 1, sizeof *profile) : NULL;
    uint16_t sp_min = 0xFFFF; /* the deepest stack pointer seen (after the timer started) */
    uint64_t max_cycles = max_seconds > 0 ? (uint64_t)(max_seconds * fw.frequency) : 0;
    double start = wall(), start0 = start;
    int state = cpu_Running;
    while (!stop && state != cpu_Done && state != cpu_Crashed) {
        if (reset_req) {
            reset_req = 0;
            mcu_reset();
            cli_since = 0;
        }
        uint64_t c0 = avr->cycle;
        uint32_t pc0 = avr->pc;
        int was_running = avr->state == cpu_Running;
        state = avr_run(avr);
        /* One call runs one instruction; a call that ends asleep has also skipped the
         * sleep that followed its SLEEP instruction: only its first cycle was busy. */
        if (was_running) {
            uint64_t used = state == cpu_Sleeping ? 1 : avr->cycle - c0;
            busy += used;
            if (profile && pc0 <= avr->flashend)
                profile[pc0] += used;
        }
        if (timer_started) {
            uint16_t sp = (uint16_t)(avr->data[R_SPL] | avr->data[R_SPH] << 8);
            if (sp < sp_min)
                sp_min = sp;
        }
        __atomic_store_n(shared_cycle, (uint64_t)avr->cycle, __ATOMIC_RELEASE);
        if (clock_checked && !avr->sreg[S_I] && state == cpu_Running) { /* interrupts off */
            if (!cli_since) {
                cli_since = c0;
                cli_pc = pc0;
                /* taken by an interrupt: the next instruction is in the vector table */
                cli_in_isr = avr->pc < VECTOR_TABLE_END;
                cli_vec = cli_in_isr ? avr->pc / 4 : 0;
            }
            if (avr->cycle - cli_since > cli_max) {
                cli_max = avr->cycle - cli_since;
                cli_max_pc = cli_pc;
                cli_max_vec = cli_vec;
                cli_max_end = avr->pc;
            }
            if (!cli_in_isr && avr->cycle - cli_since > cli_main_max) {
                cli_main_max = avr->cycle - cli_since;
                cli_main_pc = cli_pc;
                cli_main_end = avr->pc;
            }
        } else {
            cli_since = 0;
        }
        if (avr->cycle >= next_report) {
            if (trace) {
                fprintf(trace, "# cycles %" PRIu64 " busy %" PRIu64 " wall %.3f\n",
                        (uint64_t)avr->cycle, busy, wall() - start0);
                fflush(trace);
            }
            next_report += fw.frequency;
        }
        if (max_cycles && avr->cycle >= max_cycles)
            break;
        if (parent > 0 && avr->cycle / 16000 != c0 / 16000 && getppid() != parent)
            break; /* the process that started us died (even by SIGKILL): re-parented */
        if (speed > 0 && avr->cycle / 16000 != c0 / 16000) { /* about every ms */
            /* keep simulated time at `speed` x wall time */
            double ahead = (double)avr->cycle / fw.frequency / speed - (wall() - start);
            if (ahead > 0.001) {
                struct timespec ts = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
                nanosleep(&ts, NULL);
            } else if (ahead < -0.02) {
                start -= ahead + 0.02; /* behind: do not race to catch up more than 20 ms */
            }
        }
    }
    if (trace) {
        fprintf(trace, "# cycles %" PRIu64 " busy %" PRIu64 " wall %.3f\n", (uint64_t)avr->cycle,
                busy, wall() - start0);
        fprintf(trace, "# clock mismatches %" PRIu64 "\n", clock_mismatches);
        fprintf(trace,
                "# interrupts off for at most %" PRIu64 " cycles (from pc 0x%x to 0x%x; "
                "entered by vector %u, 0: none)\n",
                cli_max, cli_max_pc, cli_max_end, cli_max_vec);
        fprintf(trace,
                "# interrupts off outside interrupt handlers for at most %" PRIu64
                " cycles (from pc 0x%x to 0x%x)\n",
                cli_main_max, cli_main_pc, cli_main_end);
        if (sp_min != 0xFFFF)
            fprintf(trace, "# stack pointer at least 0x%04x (%u bytes below RAMEND 0x%04x)\n",
                    sp_min, (unsigned)(avr->ramend - sp_min), (unsigned)avr->ramend);
        fprintf(trace, "# timer1 flags kept on TIFR1 writes %" PRIu64 "\n", tifr1_kept);
        fprintf(trace, "# timer1 overflows %" PRIu64 " serviced %" PRIu64 " of %" PRIu64 "\n",
                overflows, overflows_run,
                timer_started ? (uint64_t)(avr->cycle - trace_base) >> 16 : 0);
        pca9685_report(trace);
        fprintf(trace,
                "# uart rx overruns %" PRIu64 " of %" PRIu64
                " bytes (lost: the 2-byte receive buffer was full; %" PRIu64
                " more before the firmware first sent)\n",
                rx_overruns, rx_bytes, rx_boot_overruns);
        if (avr_dropped)
            fprintf(trace, "# uart bytes dropped %" PRIu64 " (the host did not read)\n",
                    avr_dropped);
        fprintf(trace, "# exit state=%d\n", state);
        fclose(trace);
    }
    if (profile) {
        FILE *pf = fopen(profile_path, "w");
        if (pf) {
            for (uint32_t a = 0; a <= avr->flashend; a++)
                if (profile[a])
                    fprintf(pf, "%x %" PRIu64 "\n", a, profile[a]);
            fclose(pf);
        } else {
            fprintf(stderr, "robo_sim: --profile %s: %s\n", profile_path, strerror(errno));
        }
    }
    if (link_path)
        unlink(link_path);
    fflush(NULL);
    _exit(state == cpu_Crashed ? 1 : 0);
}
