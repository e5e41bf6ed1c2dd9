#include "frame.h"

#include "wire.h"

void rp_framer_init(rp_framer *f)
{
    f->len = 0;
    f->overflow = 0;
}

int rp_framer_byte(rp_framer *f, uint8_t b, rp_frame *out)
{
    if (b != 0) {
        if (f->len < sizeof f->buf)
            f->buf[f->len++] = b;
        else
            f->overflow = 1; /* the rest of this chunk is dropped at the delimiter */
        return RP_FRAMER_NONE;
    }
    if (f->overflow) {
        f->overflow = 0;
        f->len = 0;
        return RP_FRAMER_BAD;
    }
    if (!f->len)
        return RP_FRAMER_NONE; /* an empty chunk: two delimiters in a row */
    /* decoded and checked in one pass: the register over the whole frame, its CRC
     * included (rp_crc16() over all but the last two bytes, ^ RP_CRC16_XOROUT, equal to
     * them; protocol 5: the final XOR, docs/protocol.md) */
    uint16_t reg;
    int16_t n = rp_cobs_decode_crc(f->buf, f->len, &reg);
    f->len = 0;
    if (n < RP_MIN_RAW || n > RP_MAX_RAW || (f->buf[1] & 0xC0))
        return RP_FRAMER_BAD;
#if RP_CRC16_XOROUT != 0xFFFFu
#error "frame.c: RP_CRC16_RESIDUE_OF_FFFF is the residue of XOROUT 0xFFFF"
#endif
    if (reg != RP_CRC16_RESIDUE_OF_FFFF)
        return RP_FRAMER_CRC;
    out->kind = f->buf[0] >> 6;
    out->seq = f->buf[0] & 0x3F;
    out->ack = f->buf[1];
    out->payload = f->buf + 2;
    out->len = (uint8_t)(n - 4);
    return RP_FRAMER_FRAME;
}

uint16_t rp_frame_encode(uint8_t kind, uint8_t seq, uint8_t ack, const uint8_t *payload,
                         uint8_t len, uint8_t *out)
{
    uint16_t n = rp_cobs_encode_frame((uint8_t)(kind << 6 | (seq & 0x3F)), ack & 0x3F, payload,
                                      len, RP_CRC16_XOROUT, out);
    out[n] = 0;
    return (uint16_t)(n + 1);
}
