/* Host board: the firmware as a POSIX process on a pseudo-terminal.
 *
 *   robo_fw [--pty-link PATH] [--trace FILE] [--clock-ppm PPM] [--boot-id N] [--parent PID]
 *           [--realtime 1]
 *
 * Prints "PTY <path>" on stdout once the pty is ready (and symlinks PATH to it).
 * The clock is CLOCK_MONOTONIC since start at 1 MHz, scaled by (1 + PPM/1e6) to
 * model a crystal's error. The trace file gets one line per output change:
 * "<clock> <actuator> <level>" (clock: 64-bit ticks since start), after a header
 * line "# robo_fw host clock_hz=1000000 boot_id=<hex> t0_monotonic_ns=<ns>" (t0: clock 0
 * on CLOCK_MONOTONIC, which Python's time.monotonic_ns() reads too, so a test can place
 * its own events on the trace's clock). Exits on SIGTERM/SIGINT with every output off,
 * and (--parent) when process PID, the one that started it, is gone: a killed
 * robo-player leaves no firmware behind (checked at every wake-up, 5 ms at most).
 * --realtime 1 asks the OS to run it before other work, as an MCU would be: SCHED_FIFO
 * (priority 10; Linux keeps 5 % of each second for others), else nice -10, else as
 * it is (a user without the right); the timer slack goes to 1 us. The trace's
 * "# sched=..." line says which it got (fifo, nice, normal).
 * The loop sleeps until the next received byte, the core's timer, or the watchdog's
 * next action (rp_watchdog_next()), and at most 5 ms. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "board.h"
#include "fw.h"
#include "sched.h"

static int master_fd = -1, slave_fd = -1;
static FILE *trace;
static double ppm;
static struct timespec t0;
static volatile sig_atomic_t stop;
static int armed;
static uint64_t armed_at; /* 64-bit clock the core asked for */
static const char *link_path;

static uint64_t clock64(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    double us = (double)(t.tv_sec - t0.tv_sec) * 1e6 + (double)(t.tv_nsec - t0.tv_nsec) / 1e3;
    return (uint64_t)(us * (1.0 + ppm * 1e-6));
}

uint32_t board_clock(void) { return (uint32_t)clock64(); }

void board_timer_arm(uint32_t clock)
{
    uint64_t now = clock64();
    int32_t ahead = (int32_t)(clock - (uint32_t)now);
    armed_at = (uint64_t)((int64_t)now + ahead);
    armed = 1;
}

void board_wait_until(uint32_t clock)
{
    while ((int32_t)(board_clock() - clock) < 0)
        ;
}

void board_output_prepare(uint16_t actuator, uint8_t out_kind, uint8_t out_addr,
                          uint8_t out_channel, uint16_t level, uint16_t pwm_max, rp_out_t *o)
{
    (void)out_kind, (void)out_addr, (void)out_channel, (void)pwm_max;
    o->actuator = actuator;
    o->level = level;
}

void host_output_write(uint16_t actuator, uint16_t level)
{
    static uint16_t last[RP_FW_MAX_ACTUATORS]; /* outputs start off */
    if (actuator >= RP_FW_MAX_ACTUATORS || last[actuator] == level)
        return; /* the trace has changes only */
    last[actuator] = level;
    if (trace)
        fprintf(trace, "%" PRIu64 " %u %u\n", clock64(), actuator, level);
}

/* a step of a positioner (out_step.c): its own clock, 32 bits, near now */
void host_trace_line(uint32_t clock, uint16_t actuator, uint16_t level)
{
    uint64_t now = clock64();
    if (trace)
        fprintf(trace, "%" PRIu64 " %u %u\n", now - (uint32_t)((uint32_t)now - clock), actuator,
                level);
}
uint32_t host_steps_run(uint32_t now);
void host_steps_all_off(void);
void host_servos_run(uint32_t now);
void host_servos_all_off(uint32_t now);
uint8_t host_servo_ok(uint8_t addr, uint8_t channel);

/* The host build has no fast path: the core turns each output off (with a trace line);
 * the carriages stop where they are. */
void board_all_off(void)
{
    host_steps_all_off();
    host_servos_all_off(board_clock());
}

/* The output kinds of the host build: each only checks its address; every output is
 * a trace line (board_output_prepare() is the same for all). */
static uint8_t direct_ok(uint8_t addr, uint8_t channel) { return (void)addr, (void)channel, 1; }
static uint8_t pca_ok(uint8_t addr, uint8_t channel) { return addr >= 0x40 && channel < 16; }
static uint8_t (*const out_kind_ok[])(uint8_t addr, uint8_t channel) = {
    [RP_OUT_DIRECT] = direct_ok, /* any "pin" */
    [RP_OUT_PCA9685] = pca_ok,
    [RP_OUT_SERVO] = host_servo_ok, /* a "pin" with a slot (boards/host/out_servo.c) */
    [RP_OUT_STEP_DIR] = direct_ok, /* step "pin" (dir: the next), out_addr: its presser */
};

uint8_t board_output_ok(uint8_t out_kind, uint8_t out_addr, uint8_t out_channel)
{
    return out_kind < sizeof out_kind_ok / sizeof out_kind_ok[0] && out_kind_ok[out_kind] &&
           out_kind_ok[out_kind](out_addr, out_channel);
}

/* A UART sends whether anyone listens or not. The pty is non-blocking: when its
 * reader stopped reading (a hung or killed host) and its buffer is full, the bytes that
 * do not fit are dropped and counted (the trace's exit line) instead of stalling the
 * loop, whose timer, cutoffs and watchdog must run on time. (A blocking write used to
 * stop the firmware, coils on, until someone read.) */
static unsigned long tx_dropped;

void board_write(const uint8_t *data, uint16_t len)
{
    while (len) {
        ssize_t n = write(master_fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            tx_dropped += len; /* full (EAGAIN), or the other end is gone */
            return;
        }
        data += n;
        len -= (uint16_t)n;
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* --realtime: the OS's real-time class if it lets us, else a higher priority */
static const char *ask_realtime(void)
{
#ifdef __linux__
    prctl(PR_SET_TIMERSLACK, 1UL); /* wake-ups within 1 us of the time asked (default 50) */
    /* <sched.h> is core/sched.h here (-Icore): the system call itself, SCHED_FIFO = 1 */
    struct {
        int sched_priority;
    } sp = {10};
    if (!syscall(SYS_sched_setscheduler, 0, 1, &sp))
        return "fifo";
#endif
    if (!setpriority(PRIO_PROCESS, 0, -10))
        return "nice";
    return "normal";
}

static void usage(void)
{
    fprintf(stderr, "usage: robo_fw [--pty-link PATH] [--trace FILE] [--clock-ppm PPM] "
                    "[--boot-id N] [--parent PID] [--realtime 1]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *trace_path = NULL;
    uint32_t boot_id = 0;
    int have_boot_id = 0;
    long parent = 0; /* --parent: exit (all off) once this process is gone */
    int realtime = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--pty-link"))
            link_path = argv[++i];
        else if (!strcmp(argv[i], "--trace"))
            trace_path = argv[++i];
        else if (!strcmp(argv[i], "--clock-ppm"))
            ppm = atof(argv[++i]);
        else if (!strcmp(argv[i], "--boot-id")) {
            boot_id = (uint32_t)strtoul(argv[++i], NULL, 0);
            have_boot_id = 1;
        } else if (!strcmp(argv[i], "--parent"))
            parent = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--realtime"))
            realtime = atoi(argv[++i]);
        else
            usage();
    }
    if (ppm < -1000 || ppm > 1000) {
        fprintf(stderr, "robo_fw: --clock-ppm %g out of range (allowed -1000..1000)\n", ppm);
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!have_boot_id) {
        struct timespec r;
        clock_gettime(CLOCK_REALTIME, &r);
        boot_id = (uint32_t)(r.tv_nsec ^ (r.tv_sec << 20) ^ ((uint32_t)getpid() << 8));
    }
    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd)) {
        perror("robo_fw: posix_openpt");
        return 1;
    }
    const char *slave = ptsname(master_fd);
    /* Hold the slave open in raw mode: no echo or line editing before a client opens
     * it, and no EIO on the master while no client has it open. */
    slave_fd = open(slave, O_RDWR | O_NOCTTY);
    struct termios tio;
    if (slave_fd < 0 || tcgetattr(slave_fd, &tio)) {
        perror("robo_fw: pty slave");
        return 1;
    }
    cfmakeraw(&tio);
    tcsetattr(slave_fd, TCSANOW, &tio);
    int fl = fcntl(master_fd, F_GETFL);
    if (fl < 0 || fcntl(master_fd, F_SETFL, fl | O_NONBLOCK) < 0) { /* see board_write() */
        perror("robo_fw: pty O_NONBLOCK");
        return 1;
    }
    if (link_path) {
        unlink(link_path);
        if (symlink(slave, link_path)) {
            fprintf(stderr, "robo_fw: --pty-link %s: %s\n", link_path, strerror(errno));
            return 1;
        }
    }
    if (trace_path) {
        trace = fopen(trace_path, "w");
        if (!trace) {
            fprintf(stderr, "robo_fw: --trace %s: %s\n", trace_path, strerror(errno));
            return 1;
        }
        fprintf(trace, "# robo_fw host clock_hz=%lu boot_id=0x%08" PRIx32 " t0_monotonic_ns=%lld\n",
                (unsigned long)RP_CLOCK_HZ, boot_id,
                (long long)t0.tv_sec * 1000000000LL + (long long)t0.tv_nsec);
    }
    const char *sched = realtime ? ask_realtime() : "normal";
    if (trace) {
        fprintf(trace, "# sched=%s\n", sched);
        fflush(trace);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (parent > 0 && (long)getppid() != parent) {
        fprintf(stderr, "robo_fw: --parent %ld is gone\n", parent);
        return 1;
    }
    rp_init(boot_id);
    printf("PTY %s\n", slave);
    fflush(stdout);

    uint8_t buf[512];
    while (!stop) {
        struct timespec to = {0, 5 * 1000 * 1000}; /* wake at least every 5 ms for rp_poll */
        /* the positioners' steps due by now: trace lines at their own clocks (no
         * wake-up per step: the busy check and the next move go by the clock) */
        host_steps_run(board_clock());
        /* the servos' pulses up to the core's next work (a move there may change a
         * width from its clock on) */
        uint64_t upto = clock64();
        host_servos_run((uint32_t)(armed && armed_at <= upto ? armed_at - 1U : upto));
        uint64_t wait_us = 5000;
        uint64_t now = clock64();
        if (armed)
            wait_us = armed_at > now ? armed_at - now : 0;
        uint32_t wd;
        if (rp_watchdog_next(&wd)) { /* the watchdog acts on its clock, not a poll later */
            int32_t ahead = (int32_t)(wd - (uint32_t)now);
            uint64_t wd_us = ahead > 0 ? (uint64_t)ahead : 0;
            if (wd_us < wait_us)
                wait_us = wd_us;
        }
        if (wait_us < 5000) {
            /* ppm scaling: wait in real microseconds, a hair short, then re-check */
            to.tv_sec = 0;
            to.tv_nsec = (long)(wait_us * 1000);
        }
        struct pollfd p = {master_fd, POLLIN, 0};
        int r = ppoll(&p, 1, &to, NULL);
        if (r > 0 && (p.revents & POLLIN)) {
            ssize_t n = read(master_fd, buf, sizeof buf); /* -1 (EAGAIN): nothing */
            for (ssize_t i = 0; i < n; i++)
                rp_rx_byte(buf[i]);
        }
        if (armed && clock64() >= armed_at) {
            armed = 0;
            rp_timer();
        }
        rp_poll();
        if (trace)
            fflush(trace);
        if (parent > 0 && (long)getppid() != parent)
            stop = 1; /* the host process died (even by SIGKILL): we were re-parented */
    }
    rp_sched_all_off(0); /* everything off on the way out */
    if (trace) {
        fprintf(trace, "# exit tx_dropped=%lu\n", tx_dropped);
        fclose(trace);
    }
    if (link_path)
        unlink(link_path);
    return 0;
}
