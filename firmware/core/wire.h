/* Wire primitives: VLQ and unsigned varints, CRC-16/CCITT-FALSE, COBS.
 * Portable C99, no allocation; the Python twin is robo_player/protocol/varint.py
 * and framing.py, and tests/golden/protocol_vectors.json checks that they agree. */
#ifndef RP_WIRE_H
#define RP_WIRE_H

#include <stdint.h>

/* Signed VLQ (1 byte for -32..95, 5 bytes for any 32-bit value). Returns 0 when the
 * value is truncated or longer than 5 bytes; *pp is then unspecified. */
int rp_get_vlq(const uint8_t **pp, const uint8_t *end, int32_t *out);
uint8_t *rp_put_vlq(uint8_t *p, int32_t v);

/* Unsigned varint (1 byte for 0..127, 5 bytes for any 32-bit value). */
int rp_get_uvar(const uint8_t **pp, const uint8_t *end, uint32_t *out);
uint8_t *rp_put_uvar(uint8_t *p, uint32_t v);

/* The same, with the one-byte values inline (issue 8: CPU load): for the hot callers (a
 * message's id, a packed record's values, the ACK's credits); a one-byte value through
 * the functions was a call, a 32-bit loop and a return. (Inline in all of
 * protocol_gen.h's 77 callers, the AVR build's flash grew by 8 KB.) */
static inline int rp_get_vlq1(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) {
        uint8_t c = *p;
        *out = (c & 0x60) == 0x60 ? (int32_t)c - 128 : (int32_t)c; /* -32..-1: 0x60..0x7F */
        *pp = p + 1;
        return 1;
    }
    return rp_get_vlq(pp, end, out);
}

static inline uint8_t *rp_put_vlq1(uint8_t *p, int32_t v)
{
    if ((uint32_t)v + 0x20U < 0x80U) { /* -32..95 */
        *p = (uint8_t)((uint32_t)v & 0x7F);
        return p + 1;
    }
    return rp_put_vlq(p, v);
}

static inline int rp_get_uvar1(const uint8_t **pp, const uint8_t *end, uint32_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && !(*p & 0x80)) {
        *out = *p;
        *pp = p + 1;
        return 1;
    }
    return rp_get_uvar(pp, end, out);
}

uint16_t rp_crc16(const uint8_t *data, uint16_t len, uint16_t crc);
#define RP_CRC16_INIT 0xFFFFu

/* COBS: encode len bytes (no delimiter written); returns the encoded length. */
uint16_t rp_cobs_encode(const uint8_t *in, uint16_t len, uint8_t *out);
/* Decode in place (buf holds the bytes between delimiters); returns the decoded
 * length, or -1 for a malformed block. */
int16_t rp_cobs_decode(uint8_t *buf, uint16_t len);
/* The same for a buffer without 0x00 bytes (the framer's: it splits at them), in one
 * pass with the CRC register over every decoded byte (into *crc, from RP_CRC16_INIT):
 * a frame whose last two bytes are its CRC (rp_crc16(...) ^ RP_CRC16_XOROUT, big-endian)
 * leaves RP_CRC16_RESIDUE there, and any other two bytes do not (issue 8, CPU load: the
 * decode and the CRC were two passes over the frame). */
int16_t rp_cobs_decode_crc(uint8_t *buf, uint8_t len, uint16_t *crc);
#define RP_CRC16_RESIDUE_OF_FFFF 0x1D0Fu /* the register after 0xFF 0xFF from 0 */
/* COBS of (h0 h1 payload crc), crc = rp_crc16(h0 h1 payload) ^ xorout big-endian, in
 * one pass (no delimiter written); returns the encoded length. The same bytes as
 * rp_cobs_encode() of that raw frame (issue 8, CPU load: a copy, a CRC pass and an
 * encoding pass per frame sent). */
uint16_t rp_cobs_encode_frame(uint8_t h0, uint8_t h1, const uint8_t *payload, uint8_t len,
                              uint16_t xorout, uint8_t *out);

/* One packed schedule record (docs/protocol.md). Returns 0 when it is truncated or a
 * value is out of range (actuator >= RP_MAX_ACTUATORS, |ddrive| > 4095, pulse > 65535,
 * hold > 4095). An actuator index from 127 on is the escape byte then uvar(index - 127).
 * Its time code gives either `recent` (1..RP_RECENT_GAPS: a recent gap, dclock 0) or a
 * gap `dclock` (0: none); the caller keeps the recent gaps (fw.c record_gap()). */
typedef struct {
    uint32_t dclock;
    uint8_t recent;
    int16_t ddrive;
    uint16_t pulse_us, hold;
    uint16_t actuator;
    uint8_t strike, has_pulse_hold;
} rp_record;
int rp_get_record(const uint8_t **pp, const uint8_t *end, rp_record *r);

/* FNV-1a 32 (the config hash). */
#define RP_FNV_OFFSET 0x811C9DC5UL
uint32_t rp_fnv1a(const uint8_t *data, uint16_t len, uint32_t h);

#endif
