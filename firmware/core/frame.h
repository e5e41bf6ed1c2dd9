/* Streaming frame parser: bytes in, whole checked frames out. It never hands out a
 * frame whose COBS, length, reserved bits or CRC is wrong, and it resyncs at the next
 * 0x00 whatever came before. Memory: one buffer of RP_MAX_ENCODED bytes. */
#ifndef RP_FRAME_H
#define RP_FRAME_H

#include <stdint.h>
#include "protocol_gen.h"

typedef struct {
    uint8_t buf[RP_MAX_ENCODED];
    uint8_t len;
    uint8_t overflow;
} rp_framer;

typedef struct {
    uint8_t kind, seq, ack, len;
    const uint8_t *payload; /* points into the framer's buffer until the next byte */
} rp_frame;

enum {
    RP_FRAMER_NONE = 0,  /* nothing yet */
    RP_FRAMER_FRAME = 1, /* *out holds a good frame */
    RP_FRAMER_BAD = -1,  /* a chunk was dropped: COBS, length or reserved bits */
    RP_FRAMER_CRC = -2   /* a chunk was dropped: CRC */
};

void rp_framer_init(rp_framer *f);
int rp_framer_byte(rp_framer *f, uint8_t b, rp_frame *out);

/* Build COBS(hdr0 hdr1 payload crc) + 0x00 into out (RP_MAX_ENCODED + 1 bytes);
 * returns the length. */
uint16_t rp_frame_encode(uint8_t kind, uint8_t seq, uint8_t ack, const uint8_t *payload,
                         uint8_t len, uint8_t *out);

#endif
