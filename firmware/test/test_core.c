/* The firmware core against tests/golden/protocol_vectors.json (one vector per line).
 *
 *   test_core VECTORS.json
 *
 * Checks every vector kind: vlq, uvar, crc16, cobs, frame, stream (the real frame
 * parser), h2d (the generated decoder + record parser, as canonical text), d2h (the
 * generated encoders), sched (payloads through the real firmware's message handling,
 * seen at its enqueue hook), config_hash (fnv1a, and the firmware's config_result when
 * configured through real frames). Prints one line per failure and a summary; exit 1
 * on any failure. */
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

/* ---------------------------------------------------------------- test board */

static uint32_t fake_now;
static uint8_t written[65536];
static uint32_t written_len;
static char enq_text[65536];

static int timer_armed;
static uint32_t timer_at;
static uint16_t out_level[RP_FW_MAX_ACTUATORS];
static uint32_t out_on_since[RP_FW_MAX_ACTUATORS];

uint32_t board_clock(void) { return fake_now; }
void board_timer_arm(uint32_t clock)
{
    timer_armed = 1;
    timer_at = clock;
}
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
    if (a >= RP_FW_MAX_ACTUATORS)
        return;
    if (level && !out_level[a])
        out_on_since[a] = fake_now;
    out_level[a] = level;
}
void board_all_off(void) {}
uint8_t board_output_ok(uint8_t k, uint8_t a, uint8_t c)
{
    (void)k, (void)a, (void)c;
    return 1;
}
void board_write(const uint8_t *data, uint16_t len)
{
    if (written_len + len <= sizeof written) {
        memcpy(written + written_len, data, len);
        written_len += len;
    }
}

void test_enqueue_hook(uint32_t index, uint32_t clock, uint8_t op, uint16_t n, int32_t level,
                       uint16_t pulse, uint16_t hold)
{
    char line[96];
    snprintf(line, sizeof line, "%s%lu,%lu,%u,%u,%ld,%u,%u", enq_text[0] ? ";" : "",
             (unsigned long)index, (unsigned long)clock, op, n, (long)level, pulse, hold);
    strncat(enq_text, line, sizeof enq_text - strlen(enq_text) - 1);
}

/* ---------------------------------------------------------------- tiny JSON line scanner */

static int failures, checks;

#define FAIL(...)                                                                              \
    do {                                                                                       \
        failures++;                                                                            \
        fprintf(stderr, "FAIL line %d: ", lineno);                                             \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                   \
    } while (0)

static int lineno;

/* The string value of "key" in line (into out), or 0. */
static int jstr(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    size_t i = 0;
    while (*p && *p != '"' && i + 1 < cap)
        out[i++] = *p++;
    out[i] = 0;
    return 1;
}

static int jint(const char *line, const char *key, long long *out)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    *out = strtoll(p + strlen(pat), NULL, 10);
    return 1;
}

static int unhex(const char *h, uint8_t *out, int cap)
{
    int n = 0;
    while (h[0] && h[1] && n < cap) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
        h += 2;
    }
    return n;
}

static void tohex(const uint8_t *d, int n, char *out)
{
    for (int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[2 * n] = 0;
}

/* ---------------------------------------------------------------- checks */

static char want[65536], got[65536], hexbuf[65536];
static uint8_t bin[32768], bin2[32768];

static void check_vlq(const char *line, int unsigned_var)
{
    long long value;
    jint(line, "value", &value);
    jstr(line, "hex", want, sizeof want);
    uint8_t *e = unsigned_var ? rp_put_uvar(bin, (uint32_t)value) : rp_put_vlq(bin, (int32_t)value);
    tohex(bin, (int)(e - bin), got);
    checks++;
    if (strcmp(got, want))
        FAIL("%s %lld: encoded %s, want %s", unsigned_var ? "uvar" : "vlq", value, got, want);
    int n = unhex(want, bin, sizeof bin);
    const uint8_t *p = bin;
    long long back;
    int ok;
    if (unsigned_var) {
        uint32_t u;
        ok = rp_get_uvar(&p, bin + n, &u);
        back = u;
    } else {
        int32_t s;
        ok = rp_get_vlq(&p, bin + n, &s);
        back = s;
    }
    checks++;
    if (!ok || back != value || p != bin + n)
        FAIL("decode %s: got %lld, want %lld", want, back, value);
}

static void check_crc(const char *line)
{
    long long crc;
    jstr(line, "data", want, sizeof want);
    jint(line, "crc", &crc);
    int n = unhex(want, bin, sizeof bin);
    checks++;
    if (rp_crc16(bin, (uint16_t)n, RP_CRC16_INIT) != (uint16_t)crc)
        FAIL("crc16 of %s", want);
}

static void check_cobs(const char *line)
{
    char raw[2048], enc[2048];
    jstr(line, "raw", raw, sizeof raw);
    jstr(line, "enc", enc, sizeof enc);
    int n = unhex(raw, bin, sizeof bin);
    uint16_t m = rp_cobs_encode(bin, (uint16_t)n, bin2);
    tohex(bin2, m, got);
    checks++;
    if (strcmp(got, enc))
        FAIL("cobs encode %s: %s, want %s", raw, got, enc);
    n = unhex(enc, bin, sizeof bin);
    int16_t k = rp_cobs_decode(bin, (uint16_t)n);
    checks++;
    if (k < 0) {
        FAIL("cobs decode %s failed", enc);
        return;
    }
    tohex(bin, k, got);
    if (strcmp(got, raw))
        FAIL("cobs decode %s: %s, want %s", enc, got, raw);
}

static void check_frame(const char *line)
{
    long long kind, seq, ack;
    char payload[1024];
    jint(line, "frame_kind", &kind);
    jint(line, "seq", &seq);
    jint(line, "ack", &ack);
    jstr(line, "payload", payload, sizeof payload);
    jstr(line, "wire", want, sizeof want);
    int n = unhex(payload, bin, sizeof bin);
    uint16_t m = rp_frame_encode((uint8_t)kind, (uint8_t)seq, (uint8_t)ack, bin, (uint8_t)n, bin2);
    tohex(bin2, m, got);
    checks++;
    if (strcmp(got, want))
        FAIL("frame encode: %s, want %s", got, want);
}

static void check_stream(const char *line)
{
    long long crc_want, bad_want;
    jstr(line, "wire", hexbuf, sizeof hexbuf);
    jstr(line, "frames", want, sizeof want);
    jint(line, "crc_errors", &crc_want);
    jint(line, "framing_errors", &bad_want);
    int n = unhex(hexbuf, bin, sizeof bin);
    rp_framer f;
    rp_framer_init(&f);
    got[0] = 0;
    long long crc = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        rp_frame fr;
        int r = rp_framer_byte(&f, bin[i], &fr);
        if (r == RP_FRAMER_FRAME) {
            char one[600], ph[520];
            tohex(fr.payload, fr.len, ph);
            snprintf(one, sizeof one, "%s%u,%u,%u,%s", got[0] ? ";" : "", fr.kind, fr.seq, fr.ack,
                     ph);
            strcat(got, one);
        } else if (r == RP_FRAMER_CRC) {
            crc++;
        } else if (r == RP_FRAMER_BAD) {
            bad++;
        }
    }
    checks++;
    if (strcmp(got, want) || crc != crc_want || bad != bad_want)
        FAIL("stream: frames %s (crc %lld, bad %lld), want %s (crc %lld, bad %lld)", got, crc, bad,
             want, crc_want, bad_want);
}

/* Canonical text of a host->device payload, as golden.messages_text makes it. */
static void h2d_text(const uint8_t *p, const uint8_t *end, char *out)
{
    out[0] = 0;
    while (p < end) {
        int32_t id;
        uint32_t args[RP_MAX_FIELDS];
        if (!rp_get_vlq(&p, end, &id) || id < 1 || id > 31) {
            strcpy(out, "ERR");
            return;
        }
        int nf = rp_decode_args((uint8_t)id, &p, end, args);
        if (nf < 0) {
            strcpy(out, "ERR");
            return;
        }
        char part[8192];
        int k = snprintf(part, sizeof part, "%s%ld:", out[0] ? ";" : "", (long)id);
        if (id == RP_MSG_SCHEDULE) {
            k += snprintf(part + k, sizeof part - (size_t)k, "[");
            for (uint32_t i = 0; i < args[0]; i++) {
                rp_record r;
                if (!rp_get_record(&p, end, &r)) {
                    strcpy(out, "ERR");
                    return;
                }
                k += snprintf(part + k, sizeof part - (size_t)k, "%s%u %u %lu %u %d %ld %ld",
                              i ? "|" : "", r.strike, r.actuator, (unsigned long)r.dclock,
                              r.recent, r.ddrive, r.has_pulse_hold ? (long)r.pulse_us : -1L,
                              r.has_pulse_hold ? (long)r.hold : -1L);
            }
            snprintf(part + k, sizeof part - (size_t)k, "]");
        } else {
            for (int i = 0; i < nf; i++)
                k += snprintf(part + k, sizeof part - (size_t)k, "%s%lu", i ? "," : "",
                              (unsigned long)args[i]);
        }
        strcat(out, part);
    }
}

static void check_h2d(const char *line)
{
    jstr(line, "payload", hexbuf, sizeof hexbuf);
    jstr(line, "text", want, sizeof want);
    int n = unhex(hexbuf, bin, sizeof bin);
    h2d_text(bin, bin + n, got);
    checks++;
    if (strcmp(got, want))
        FAIL("h2d %s: %s, want %s", hexbuf, got, want);
}

static void check_d2h(const char *line)
{
    long long id;
    char args_s[512], bytes_s[128];
    jint(line, "id", &id);
    jstr(line, "args", args_s, sizeof args_s);
    jstr(line, "bytes", bytes_s, sizeof bytes_s);
    jstr(line, "payload", want, sizeof want);
    uint32_t args[RP_MAX_FIELDS];
    int na = 0;
    for (char *t = strtok(args_s, ","); t && na < RP_MAX_FIELDS; t = strtok(NULL, ","))
        args[na++] = (uint32_t)strtoul(t, NULL, 10);
    uint8_t blob[64];
    int nb = unhex(bytes_s, blob, sizeof blob);
    uint8_t *e = rp_encode_args((uint8_t)id, args, blob, (uint8_t)nb, bin);
    checks++;
    if (!e) {
        FAIL("d2h id %lld unknown", id);
        return;
    }
    tohex(bin, (int)(e - bin), got);
    if (strcmp(got, want))
        FAIL("d2h id %lld: %s, want %s", id, got, want);
}

/* ---- driving the real firmware through frames ---- */

static uint8_t host_seq;

static void send(uint8_t kind, const uint8_t *payload, uint8_t len)
{
    uint8_t w[RP_MAX_ENCODED + 2];
    uint16_t n = rp_frame_encode(kind, host_seq, 0, payload, len, w);
    if (kind == RP_FRAME_DATA)
        host_seq = (uint8_t)((host_seq + 1) & 63);
    rp_rx_byte(0);
    for (uint16_t i = 0; i < n; i++)
        rp_rx_byte(w[i]);
}

/* Find the last message `id` the firmware wrote; its fields into args. */
static int find_reply(uint8_t id, uint32_t *args, int max)
{
    rp_framer f;
    rp_framer_init(&f);
    int found = 0;
    for (uint32_t i = 0; i < written_len; i++) {
        rp_frame fr;
        if (rp_framer_byte(&f, written[i], &fr) != RP_FRAMER_FRAME || fr.kind != RP_FRAME_DATA)
            continue;
        const uint8_t *p = fr.payload, *end = fr.payload + fr.len;
        while (p < end) {
            int32_t mid, v;
            rp_get_vlq(&p, end, &mid);
            int k = 0;
            /* d2h fields: all VLQs except identify_resp.board (bytes) */
            int nf = mid == RP_MSG_CONFIG_RESULT ? RP_CONFIG_RESULT_NFIELDS
                   : mid == RP_MSG_STATUS        ? RP_STATUS_NFIELDS
                   : mid == RP_MSG_EVENT         ? RP_EVENT_NFIELDS
                   : mid == RP_MSG_CLOCK         ? RP_CLOCK_NFIELDS
                   : mid == RP_MSG_SHUTDOWN_NOTICE ? RP_SHUTDOWN_NOTICE_NFIELDS
                                                   : -1;
            if (nf < 0)
                break;
            for (; k < nf; k++) {
                rp_get_vlq(&p, end, &v);
                if (mid == id && k < max)
                    args[k] = (uint32_t)v;
            }
            if (mid == id)
                found = 1;
        }
    }
    return found;
}

static uint8_t cfg_payload[4096];

static int configure(uint16_t count, uint8_t time_shift, uint8_t level_shift, uint32_t *hash_out)
{
    written_len = 0;
    send(RP_FRAME_SYNC, NULL, 0);
    uint8_t *p = cfg_payload;
    p = rp_put_vlq(p, RP_MSG_CONFIGURE_BEGIN);
    p = rp_put_vlq(p, count);
    p = rp_put_vlq(p, count);
    p = rp_put_vlq(p, 1000);
    p = rp_put_vlq(p, 10000);
    p = rp_put_vlq(p, time_shift);
    p = rp_put_vlq(p, level_shift);
    p = rp_put_vlq(p, 5); /* pca_prescale */
    p = rp_put_vlq(p, 0); /* watchdog_drain_ms */
    uint32_t h = rp_fnv1a(cfg_payload, (uint16_t)(p - cfg_payload), RP_FNV_OFFSET);
    send(RP_FRAME_DATA, cfg_payload, (uint8_t)(p - cfg_payload));
    for (uint16_t a = 0; a < count; a++) {
        p = cfg_payload;
        p = rp_put_vlq(p, RP_MSG_CONFIGURE_ACTUATOR);
        int32_t f[] = {a, 0, a >> 8, a & 255, 4095, 4095, 60000000, 65535, 1000};
        for (unsigned i = 0; i < sizeof f / sizeof f[0]; i++)
            p = rp_put_vlq(p, f[i]);
        h = rp_fnv1a(cfg_payload, (uint16_t)(p - cfg_payload), h);
        send(RP_FRAME_DATA, cfg_payload, (uint8_t)(p - cfg_payload));
    }
    p = rp_put_vlq(cfg_payload, RP_MSG_CONFIGURE_END);
    p = rp_put_vlq(p, (int32_t)h);
    send(RP_FRAME_DATA, cfg_payload, (uint8_t)(p - cfg_payload));
    uint32_t r[3] = {99, 0, 0};
    if (hash_out)
        *hash_out = h;
    return find_reply(RP_MSG_CONFIG_RESULT, r, 3) && r[0] == 0 && r[2] == h;
}

static void check_sched(const char *line)
{
    long long ts, ls, n_act = 8;
    jint(line, "time_shift", &ts);
    jint(line, "actuators", &n_act); /* absent: 8 */
    jint(line, "level_shift", &ls);
    jstr(line, "payload", hexbuf, sizeof hexbuf);
    jstr(line, "commands", want, sizeof want);
    checks++;
    if (!configure((uint16_t)n_act, (uint8_t)ts, (uint8_t)ls, NULL)) {
        FAIL("sched: configure refused");
        return;
    }
    enq_text[0] = 0;
    for (char *t = strtok(hexbuf, ","); t; t = strtok(NULL, ",")) {
        int n = unhex(t, bin, sizeof bin);
        send(RP_FRAME_DATA, bin, (uint8_t)n);
    }
    if (strcmp(enq_text, want))
        FAIL("sched (time_shift %lld, level_shift %lld):\n got  %s\n want %s", ts, ls, enq_text,
             want);
}

static void check_config_hash(const char *line)
{
    long long hash;
    jstr(line, "payload", hexbuf, sizeof hexbuf);
    jint(line, "hash", &hash);
    int n = unhex(hexbuf, bin, sizeof bin);
    /* hash each message's bytes, as the firmware does */
    uint32_t h = RP_FNV_OFFSET;
    const uint8_t *p = bin, *end = bin + n;
    while (p < end) {
        const uint8_t *start = p;
        int32_t id;
        uint32_t args[RP_MAX_FIELDS];
        rp_get_vlq(&p, end, &id);
        if (rp_decode_args((uint8_t)id, &p, end, args) < 0)
            break;
        h = rp_fnv1a(start, (uint16_t)(p - start), h);
    }
    checks++;
    if (h != (uint32_t)hash)
        FAIL("config_hash: %08lx, want %08lx", (unsigned long)h, (unsigned long)(uint32_t)hash);
    /* and through the firmware: the same messages, then configure_end with that hash */
    written_len = 0;
    send(RP_FRAME_SYNC, NULL, 0);
    send(RP_FRAME_DATA, bin, (uint8_t)n);
    uint8_t *q = rp_put_vlq(bin2, RP_MSG_CONFIGURE_END);
    q = rp_put_vlq(q, (int32_t)hash);
    send(RP_FRAME_DATA, bin2, (uint8_t)(q - bin2));
    uint32_t r[3] = {99, 0, 0};
    checks++;
    if (!find_reply(RP_MSG_CONFIG_RESULT, r, 3) || r[0] != 0 || r[2] != (uint32_t)hash)
        FAIL("config through the firmware: reason %lu hash %08lx", (unsigned long)r[0],
             (unsigned long)r[2]);
}

/* Issue 9 §7: max on-time must be enforced whatever the queue holds. rp_sched_run()
 * stops after a budget of due items per call; it must re-arm the timer then, or the
 * rest (cutoffs included) waits for the next command. 1000 strikes 4 ticks apart with
 * 1 us pulses on 8 coils, all due in one call (2000 items: more than the budget), then
 * the timer runs whenever it is armed and due; every coil must go off by its max
 * on-time. Drives the scheduler directly on the fake clock. */
static void check_cutoffs_with_a_full_queue(void)
{
    const uint32_t max_on = 100000UL * RP_TICKS_PER_US, t0 = 50000;
    lineno = 0;
    fake_now = 1000;
    rp_sched_reset();
    rp_act_count = 8;
    rp_profile_count = 1;
    rp_max_concurrent = 8;
    rp_profiles[0].max_on_ticks = max_on;
    rp_profiles[0].pwm_max = rp_profiles[0].max_drive = 4095;
    rp_profiles[0].max_pulse_us = 50000;
    rp_profiles[0].duty_permille = 1000;
    rp_profiles[0].drain_k = (uint16_t)(64UL * 256UL);
    rp_profiles[0].cap_us = 10000UL * 1000UL;
    for (uint16_t a = 0; a < 8; a++) {
        rp_acts[a].out_kind = 0;
        rp_acts[a].out_channel = (uint8_t)a;
        rp_acts[a].profile = 0;
        out_level[a] = 0;
    }
    for (uint16_t i = 0; i < 1000; i++) {
        rp_cmd c = {0};
        c.clock = t0 + 4UL * i;
        c.index = i;
        c.actuator = (rp_aid)(i % 8);
        c.level = 4000;
        c.pulse_us = 1;
        c.hold = 100;
        c.op = RP_OP_STRIKE;
        if (!rp_sched_push(&c))
            FAIL("cutoffs: push %u refused", i);
    }
    timer_armed = 0;
    fake_now = t0 + 4000; /* everything due, inside the late slack */
    rp_sched_run();
    /* the timer context, as a board runs it: whenever armed and due, on a clock that
     * moves 100 us at a time, up to 3 max on-times */
    for (uint32_t now = fake_now; (int32_t)(now - (t0 + 3 * max_on)) < 0; now += 100) {
        fake_now = now;
        if (timer_armed && (int32_t)(now - timer_at) >= 0) {
            timer_armed = 0;
            rp_sched_run();
        }
        for (uint16_t a = 0; a < 8; a++) {
            checks++;
            if (out_level[a] && now - out_on_since[a] > max_on + 100) {
                FAIL("cutoffs: coil %u on for %lu ticks (max on %lu; played %lu, late %lu, "
                     "cutoffs %lu, queued %u)", a, (unsigned long)(now - out_on_since[a]),
                     (unsigned long)max_on, (unsigned long)rp_count.played,
                     (unsigned long)rp_count.late, (unsigned long)rp_count.cutoffs,
                     rp_sched_queued());
                return;
            }
        }
    }
    checks++;
    if (rp_count.played != 1000 || rp_count.cutoffs != 8 || rp_sched_queued())
        FAIL("cutoffs: played %lu cutoffs %lu queued %u (want 1000, 8, 0)",
             (unsigned long)rp_count.played, (unsigned long)rp_count.cutoffs, rp_sched_queued());
    rp_act_count = 0;
    rp_sched_reset();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_core VECTORS.json\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fake_now = 1000;
    rp_init(0x1234);
    static char line[1 << 16];
    int vectors = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char kind[32];
        if (!jstr(line, "kind", kind, sizeof kind))
            continue;
        vectors++;
        if (!strcmp(kind, "vlq"))
            check_vlq(line, 0);
        else if (!strcmp(kind, "uvar"))
            check_vlq(line, 1);
        else if (!strcmp(kind, "crc16"))
            check_crc(line);
        else if (!strcmp(kind, "cobs"))
            check_cobs(line);
        else if (!strcmp(kind, "frame"))
            check_frame(line);
        else if (!strcmp(kind, "stream"))
            check_stream(line);
        else if (!strcmp(kind, "h2d"))
            check_h2d(line);
        else if (!strcmp(kind, "d2h"))
            check_d2h(line);
        else if (!strcmp(kind, "sched"))
            check_sched(line);
        else if (!strcmp(kind, "config_hash"))
            check_config_hash(line);
        else
            FAIL("unknown vector kind %s", kind);
    }
    fclose(f);
    check_cutoffs_with_a_full_queue();
    printf("test_core: %d vectors, %d checks, %d failures\n", vectors, checks, failures);
    return failures ? 1 : 0;
}
