#include "mm_cobs.h"

size_t mm_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t code_at = 0, o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

long mm_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0) return -1;
        size_t run = (size_t)code - 1u;
        if (run > n - i || o + run > cap) return -1;
        for (size_t k = 0; k < run; k++) {
            uint8_t b = in[i++];
            if (b == 0) return -1;
            out[o++] = b;
        }
        /* A block shorter than 254 data bytes stands for a zero, unless it ends the frame. */
        if (code != 0xFF && i < n) {
            if (o >= cap) return -1;
            out[o++] = 0;
        }
    }
    return (long)o;
}
