/* Fuzz target: the host build's frame parser and message handling, byte by byte.
 *
 * With clang: a libFuzzer target (LLVMFuzzerTestOneInput). Without it (the default,
 * gcc with AddressSanitizer and UBSan): a standalone driver that runs N inputs made
 * of random bytes, valid frames with random payloads, valid frames of real messages,
 * and bit-flipped copies of those:
 *
 *   fuzz_frame [RUNS] [SEED]
 *
 * Checked on every input, besides memory safety:
 *   - an input with no CRC-valid frame in it never changes an output, never queues a
 *     command and never changes the firmware's state;
 *   - the firmware never writes more than it may (every frame it sends decodes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "frame.h"
#include "fw.h"
#include "protocol_gen.h"
#include "sched.h"
#include "wire.h"

static uint32_t fake_now;
static uint32_t outputs_on;

uint32_t board_clock(void) { return fake_now; }
void board_timer_arm(uint32_t clock) { (void)clock; }
void board_wait_until(uint32_t clock) { (void)clock; }
void board_output_prepare(uint16_t a, uint8_t k, uint8_t ad, uint8_t ch, uint16_t level,
                          uint16_t pm, rp_out_t *o)
{
    (void)k, (void)ad, (void)ch, (void)pm;
    o->actuator = a;
    o->level = level;
}
void host_output_write(uint16_t a, uint16_t level)
{
    (void)a;
    if (level)
        outputs_on++;
}
void board_all_off(void) {}
uint8_t board_output_ok(uint8_t k, uint8_t a, uint8_t c)
{
    (void)k, (void)a, (void)c;
    return 1;
}

static rp_framer tx_check;
void board_write(const uint8_t *data, uint16_t len)
{
    for (uint16_t i = 0; i < len; i++) {
        rp_frame f;
        if (rp_framer_byte(&tx_check, data[i], &f) < 0) {
            fprintf(stderr, "fuzz: the firmware sent a frame that does not decode\n");
            abort();
        }
    }
}

static int has_valid_frame(const uint8_t *data, size_t size)
{
    rp_framer f;
    rp_framer_init(&f);
    for (size_t i = 0; i < size; i++) {
        rp_frame fr;
        if (rp_framer_byte(&f, data[i], &fr) == RP_FRAMER_FRAME)
            return 1;
    }
    rp_frame fr;
    return rp_framer_byte(&f, 0, &fr) == RP_FRAMER_FRAME;
}

/* A configured firmware (2 actuators), so that schedule messages would act. */
static void setup(void)
{
    /* 2 actuators, 2 concurrent, watchdog 10 s, duty window 100 ms, shifts 0, PCA prescale 5,
     * no watchdog drain */
    static const uint8_t begin[] = {RP_MSG_CONFIGURE_BEGIN, 2, 2, 0xCE, 0x10, 0x80, 100, 0, 0, 5, 0};
    uint8_t cfg[128], *p = cfg, w[RP_MAX_ENCODED + 2];
    memcpy(p, begin, sizeof begin);
    p += sizeof begin;
    uint32_t h = rp_fnv1a(cfg, (uint16_t)(p - cfg), RP_FNV_OFFSET);
    for (int a = 0; a < 2; a++) {
        uint8_t *s = p;
        p = rp_put_vlq(p, RP_MSG_CONFIGURE_ACTUATOR);
        int32_t f[] = {a, 0, 0, a, 4095, 4095, 1000000, 50000, 1000};
        for (unsigned i = 0; i < sizeof f / sizeof f[0]; i++)
            p = rp_put_vlq(p, f[i]);
        h = rp_fnv1a(s, (uint16_t)(p - s), h);
    }
    p = rp_put_vlq(p, RP_MSG_CONFIGURE_END);
    p = rp_put_vlq(p, (int32_t)h);
    fake_now = 1000;
    rp_init(1);
    rp_framer_init(&tx_check);
    uint16_t n = rp_frame_encode(RP_FRAME_SYNC, 0, 0, NULL, 0, w);
    for (uint16_t i = 0; i < n; i++)
        rp_rx_byte(w[i]);
    n = rp_frame_encode(RP_FRAME_DATA, 0, 0, cfg, (uint8_t)(p - cfg), w);
    for (uint16_t i = 0; i < n; i++)
        rp_rx_byte(w[i]);
    if (rp_state() != RP_STATE_READY) {
        fprintf(stderr, "fuzz: setup configuration refused\n");
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    uint32_t ok_before = rp_link.frames_ok;
    outputs_on = 0;
    for (size_t i = 0; i < size; i++)
        rp_rx_byte(data[i]);
    rp_rx_byte(0);
    for (int step = 0; step < 50; step++) { /* let anything queued come due */
        fake_now += 20000;
        rp_timer();
        rp_poll();
    }
    if (!has_valid_frame(data, size)) {
        if (outputs_on || rp_link.frames_ok != ok_before || rp_sched_queued() ||
            rp_state() != RP_STATE_READY) {
            fprintf(stderr, "fuzz: an input without a valid frame acted (outputs %u)\n",
                    (unsigned)outputs_on);
            abort();
        }
    }
    return 0;
}

#ifndef RP_LIBFUZZER
static uint64_t rng;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng >> 33);
}

int main(int argc, char **argv)
{
    long runs = argc > 1 ? atol(argv[1]) : 100000;
    rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
    static uint8_t buf[4096];
    long valid = 0;
    for (long r = 0; r < runs; r++) {
        size_t n = 0;
        int kind = (int)(rnd() % 4);
        int frames = 1 + (int)(rnd() % 4);
        for (int f = 0; f < frames && n + RP_MAX_ENCODED + 2 < sizeof buf; f++) {
            if (kind == 0) { /* random bytes */
                size_t len = rnd() % 200;
                for (size_t i = 0; i < len && n < sizeof buf; i++)
                    buf[n++] = (uint8_t)(rnd() % 4 ? rnd() : 0);
                continue;
            }
            uint8_t payload[RP_MAX_PAYLOAD];
            uint8_t len = (uint8_t)(rnd() % (RP_MAX_PAYLOAD + 1));
            if (kind == 1) {
                for (uint8_t i = 0; i < len; i++)
                    payload[i] = (uint8_t)rnd();
            } else { /* plausible messages: an id, then small VLQs */
                uint8_t *p = payload;
                while (p < payload + RP_MAX_PAYLOAD - 12) {
                    *p++ = (uint8_t)(1 + rnd() % 12);
                    int fields = (int)(rnd() % 12);
                    for (int i = 0; i < fields && p < payload + RP_MAX_PAYLOAD - 6; i++)
                        p = rp_put_vlq(p, (int32_t)(rnd() % 3 ? rnd() % 120 : rnd()));
                    if (rnd() % 3 == 0)
                        break;
                }
                len = (uint8_t)(p - payload);
            }
            buf[n++] = 0;
            n += rp_frame_encode((uint8_t)(rnd() % 4), (uint8_t)(rnd() % 3), 0, payload, len,
                                 buf + n);
            if (kind == 3) { /* flip some bits of what we built */
                int flips = 1 + (int)(rnd() % 3);
                for (int i = 0; i < flips; i++)
                    buf[rnd() % n] ^= (uint8_t)(1 << (rnd() % 8));
            }
        }
        valid += has_valid_frame(buf, n);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz_frame: %ld inputs (%ld with a valid frame), no failure\n", runs, valid);
    return 0;
}
#endif
