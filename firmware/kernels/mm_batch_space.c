/* mm_batch_space.c - pixel moves between space and batch; padded pixels take the zero point. */
#include <string.h>
#include "mm_batch_space.h"

void mm_space_to_batch(const mm_batch_space_params *p, const void *in, void *out)
{
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out;
    const int32_t px = p->pixel_bytes;
    for (int32_t ob = 0; ob < p->out_b; ++ob) {
        const int32_t b = ob % p->in_b;
        const int32_t shift = ob / p->in_b;
        const int32_t shift_h = shift / p->block_w, shift_w = shift % p->block_w;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy = oy * p->block_h + shift_h - p->pad_top;
            for (int32_t ox = 0; ox < p->out_w; ++ox, dst += px) {
                const int32_t ix = ox * p->block_w + shift_w - p->pad_left;
                if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                    memset(dst, p->pad_byte, (size_t)px);
                else
                    memcpy(dst, src + (((size_t)b * p->in_h + iy) * p->in_w + ix) * px, (size_t)px);
            }
        }
    }
}

void mm_batch_to_space(const mm_batch_space_params *p, const void *in, void *out)
{
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out;
    const int32_t px = p->pixel_bytes;
    for (int32_t ib = 0; ib < p->in_b; ++ib) {
        const int32_t b = ib % p->out_b;
        const int32_t shift = ib / p->out_b;
        const int32_t off_h = shift / p->block_w, off_w = shift % p->block_w;
        for (int32_t iy = 0; iy < p->in_h; ++iy) {
            const int32_t oy = iy * p->block_h + off_h - p->pad_top;
            if (oy < 0 || oy >= p->out_h) continue;
            for (int32_t ix = 0; ix < p->in_w; ++ix) {
                const int32_t ox = ix * p->block_w + off_w - p->pad_left;
                if (ox < 0 || ox >= p->out_w) continue;
                memcpy(dst + (((size_t)b * p->out_h + oy) * p->out_w + ox) * px,
                       src + (((size_t)ib * p->in_h + iy) * p->in_w + ix) * px, (size_t)px);
            }
        }
    }
}
