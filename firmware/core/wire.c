#include "wire.h"

#include "board_config.h" /* RP_TABLE, RP_TABLE_READ16: where a constant table lives */
#include "protocol_gen.h"

#if defined(__AVR__)
/* The CRC step by hand on the AVR (about 5800 bytes in and 3600 out in
 * firmware/sim/driver_load.py's run): the table aligned to 512 B, so an entry's
 * address is the table's high byte and 2 x index (avr-gcc: a 16-bit sum, and the
 * data pointer moved out of Z and back for each byte). The C form below is the
 * reference (the host build; the golden vectors hold them together). */
static const uint16_t crc_table[256] RP_TABLE __attribute__((aligned(512))) = {RP_CRC16_TABLE};
static inline uint16_t crc_step(uint16_t crc, uint8_t b)
{
    __asm__("mov r30, %B[c]\n\t" "eor r30, %[b]\n\t" "ldi r31, hi8(%[tab])\n\t"
            "lsl r30\n\t" "adc r31, __zero_reg__\n\t" /* Z = &crc_table[(crc >> 8) ^ b] */
            "mov %B[c], %A[c]\n\t" "lpm %A[c], Z+\n\t" "lpm __tmp_reg__, Z\n\t"
            "eor %B[c], __tmp_reg__\n\t" /* (crc << 8) ^ entry */
            : [c] "+r"(crc)
            : [b] "r"(b), [tab] "i"(crc_table)
            : "r30", "r31");
    return crc;
}
#else
static const uint16_t crc_table[256] RP_TABLE = {RP_CRC16_TABLE};
static inline uint16_t crc_step(uint16_t crc, uint8_t b)
{
    return (uint16_t)((crc << 8) ^ RP_TABLE_READ16(&crc_table[(uint8_t)((crc >> 8) ^ b)]));
}
#endif

int rp_get_vlq(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    const uint8_t *p = *pp;
    if (p >= end)
        return 0;
    uint8_t c = *p++;
    if (!(c & 0x80)) { /* the common case: one byte */
        *out = (c & 0x60) == 0x60 ? (int32_t)c - 128 : (int32_t)c;
        *pp = p;
        return 1;
    }
    uint32_t v = c & 0x7F;
    if ((c & 0x60) == 0x60)
        v |= ~(uint32_t)0x7F; /* negative: sign-extend the first group */
    uint8_t n = 1;
    while (c & 0x80) {
        if (p >= end || ++n > 5)
            return 0;
        c = *p++;
        v = (v << 7) | (c & 0x7F);
    }
    *pp = p;
    *out = (int32_t)v;
    return 1;
}

uint8_t *rp_put_vlq(uint8_t *p, int32_t v)
{
    if ((uint32_t)v + 0x20U < 0x80U) { /* the common case: one byte (-32..95) */
        *p = (uint8_t)((uint32_t)v & 0x7F);
        return p + 1;
    }
    if (v >= 0xC000000L || v < -0x4000000L) /* top group: bits 31..28, sign-extended */
        *p++ = (uint8_t)(((uint32_t)v >> 28) | (v < 0 ? 0x70 : 0x00) | 0x80);
    if (v >= 0x180000L || v < -0x80000L)
        *p++ = (uint8_t)(((uint32_t)v >> 21) & 0x7F) | 0x80;
    if (v >= 0x3000L || v < -0x1000L)
        *p++ = (uint8_t)(((uint32_t)v >> 14) & 0x7F) | 0x80;
    if (v >= 0x60L || v < -0x20L)
        *p++ = (uint8_t)(((uint32_t)v >> 7) & 0x7F) | 0x80;
    *p++ = (uint8_t)((uint32_t)v & 0x7F);
    return p;
}

int rp_get_uvar(const uint8_t **pp, const uint8_t *end, uint32_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) { /* the common case: one byte */
        *out = *p;
        *pp = p + 1;
        return 1;
    }
    uint32_t v = 0;
    for (uint8_t n = 0; n < 5; n++) {
        if (p >= end)
            return 0;
        uint8_t c = *p++;
        if (n == 4 && (v >> 25))
            return 0; /* would exceed 32 bits */
        v = (v << 7) | (c & 0x7F);
        if (!(c & 0x80)) {
            *pp = p;
            *out = v;
            return 1;
        }
    }
    return 0;
}

uint8_t *rp_put_uvar(uint8_t *p, uint32_t v)
{
    if (v >= (1UL << 28))
        *p++ = (uint8_t)((v >> 28) & 0x7F) | 0x80;
    if (v >= (1UL << 21))
        *p++ = (uint8_t)((v >> 21) & 0x7F) | 0x80;
    if (v >= (1UL << 14))
        *p++ = (uint8_t)((v >> 14) & 0x7F) | 0x80;
    if (v >= (1UL << 7))
        *p++ = (uint8_t)((v >> 7) & 0x7F) | 0x80;
    *p++ = (uint8_t)(v & 0x7F);
    return p;
}

uint16_t rp_crc16(const uint8_t *data, uint16_t len, uint16_t crc)
{
    /* table-driven: the table is in flash on the AVR (RP_TABLE = PROGMEM) */
    while (len--)
        crc = crc_step(crc, *data++);
    return crc;
}

uint16_t rp_cobs_encode(const uint8_t *in, uint16_t len, uint8_t *out)
{
    uint16_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (uint16_t i = 0; i < len; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
            continue;
        }
        out[o++] = in[i];
        if (++code == 0xFF) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        }
    }
    out[code_at] = code;
    return o;
}

int16_t rp_cobs_decode(uint8_t *buf, uint16_t len)
{
    uint16_t i = 0, o = 0;
    while (i < len) {
        uint8_t code = buf[i];
        if (code == 0)
            return -1;
        i++;
        uint16_t end = i + code - 1;
        if (end > len)
            return -1;
        while (i < end) {
            uint8_t b = buf[i++];
            if (b == 0)
                return -1;
            buf[o++] = b;
        }
        if (code != 0xFF && i < len)
            buf[o++] = 0;
    }
    return (int16_t)o;
}

/* rp_cobs_encode_frame(): the COBS writer, a byte at a time */
typedef struct {
    uint8_t *o, *code_at;
    uint8_t code;
} cobs_w;

static inline void cobs_put(cobs_w *w, uint8_t b)
{
    if (b) {
        *w->o++ = b;
        if (++w->code != 0xFF)
            return;
    }
    *w->code_at = w->code; /* a zero, or a full block */
    w->code_at = w->o++;
    w->code = 1;
}


uint16_t rp_cobs_encode_frame(uint8_t h0, uint8_t h1, const uint8_t *payload, uint8_t len,
                              uint16_t xorout, uint8_t *out)
{
    cobs_w w = {out + 1, out, 1};
    uint16_t crc = crc_step(RP_CRC16_INIT, h0);
    cobs_put(&w, h0);
    crc = crc_step(crc, h1);
    cobs_put(&w, h1);
    for (uint8_t k = len; k; k--) {
        uint8_t b = *payload++;
        crc = crc_step(crc, b);
        cobs_put(&w, b);
    }
    crc ^= xorout;
    cobs_put(&w, (uint8_t)(crc >> 8));
    cobs_put(&w, (uint8_t)crc);
    *w.code_at = w.code;
    return (uint16_t)(w.o - out);
}

int16_t rp_cobs_decode_crc(uint8_t *buf, uint8_t len, uint16_t *crc_out)
{
    uint16_t crc = RP_CRC16_INIT;
    const uint8_t *src = buf, *end = buf + len;
    uint8_t *dst = buf; /* (pointers, not indices: no address sums per byte) */
    while (src < end) {
        uint8_t code = *src++;
        if ((uint8_t)(code - 1) > (uint8_t)(end - src))
            return -1; /* the block runs past the end */
        for (uint8_t k = (uint8_t)(code - 1); k; k--) {
            uint8_t b = *src++;
            *dst++ = b;
            crc = crc_step(crc, b);
        }
        if (code != 0xFF && src < end) {
            *dst++ = 0;
            crc = crc_step(crc, 0);
        }
    }
    *crc_out = crc;
    return (int16_t)(dst - buf);
}

int rp_get_record(const uint8_t **pp, const uint8_t *end, rp_record *r)
{
    const uint8_t *p = *pp;
    uint32_t v;
    if (p >= end)
        return 0;
    uint8_t b = *p++;
    r->strike = b >> 7;
    r->actuator = b & 0x7F;
    r->ddrive = 0;
    r->has_pulse_hold = 0;
    r->pulse_us = r->hold = 0;
    if (r->actuator == RP_RECORD_ACT_ESCAPE) { /* a wide index: 127 + uvar */
        if (!rp_get_uvar1(&p, end, &v) || v >= RP_MAX_ACTUATORS - RP_RECORD_ACT_ESCAPE)
            return 0;
        r->actuator = (uint16_t)(RP_RECORD_ACT_ESCAPE + v);
    }
    if (!rp_get_uvar1(&p, end, &r->dclock))
        return 0;
    /* protocol 7: the time code; 1..RP_RECENT_GAPS name a recent gap (run_record) */
    r->recent = 0;
    if (r->dclock <= RP_RECENT_GAPS) {
        r->recent = (uint8_t)r->dclock;
        r->dclock = 0;
    } else {
        r->dclock -= RP_RECENT_GAPS;
    }
    if (r->strike) {
        if (!rp_get_uvar1(&p, end, &v))
            return 0;
        r->has_pulse_hold = v & 1;
        uint32_t z = v >> 1;
        if (z > 2UL * 4095) /* zigzag of +-4095 */
            return 0;
        r->ddrive = (z & 1) ? -(int16_t)((z + 1) >> 1) : (int16_t)(z >> 1);
        if (r->has_pulse_hold) {
            if (!rp_get_uvar1(&p, end, &v) || v > 65535UL)
                return 0;
            r->pulse_us = (uint16_t)v;
            if (!rp_get_uvar1(&p, end, &v) || v > 4095UL)
                return 0;
            r->hold = (uint16_t)v;
        }
    }
    *pp = p;
    return 1;
}

uint32_t rp_fnv1a(const uint8_t *data, uint16_t len, uint32_t h)
{
    while (len--) {
        h ^= *data++;
        h *= 0x01000193UL;
    }
    return h;
}
