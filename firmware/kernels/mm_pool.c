/* mm_pool.c - pooling kernels: portable, with int8 average pooling on DSP (M4) / MVE (M55). */
#include <float.h>
#include "mm_pool.h"
#include "mm_isa.h"

/* Window of output position (oy, ox) clipped to the input: rows [*y0, *y1), cols [*x0, *x1),
 * relative to the input origin (iy0, ix0). */
typedef struct {
    int32_t iy0, ix0, y0, y1, x0, x1;
} mm_window;

static mm_window mm_pool_window(const mm_pool_params *p, int32_t oy, int32_t ox)
{
    mm_window w;
    w.iy0 = oy * p->stride_h - p->pad_h;
    w.ix0 = ox * p->stride_w - p->pad_w;
    w.y0 = w.iy0 < 0 ? -w.iy0 : 0;
    w.x0 = w.ix0 < 0 ? -w.ix0 : 0;
    w.y1 = mm_min_i32(p->filter_h, p->in_h - w.iy0);
    w.x1 = mm_min_i32(p->filter_w, p->in_w - w.ix0);
    return w;
}

/* Integer average: sum, then divide rounding half away from zero (as TFLM). */
#define MM_AVG_POOL_INT(NAME, T)                                                                             \
    void NAME(const mm_pool_params *p, const T *in, T *out)                                                  \
    {                                                                                                        \
        const int32_t depth = p->depth;                                                                      \
        for (int32_t b = 0; b < p->batches; ++b) {                                                           \
            const T *ib = in + (size_t)b * p->in_h * p->in_w * depth;                                        \
            for (int32_t oy = 0; oy < p->out_h; ++oy) {                                                      \
                for (int32_t ox = 0; ox < p->out_w; ++ox) {                                                  \
                    const mm_window w = mm_pool_window(p, oy, ox);                                           \
                    const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);                                     \
                    for (int32_t c = 0; c < depth; ++c) {                                                    \
                        int32_t acc = 0;                                                                     \
                        for (int32_t fy = w.y0; fy < w.y1; ++fy) {                                           \
                            const T *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c;        \
                            for (int32_t fx = w.x0; fx < w.x1; ++fx) acc += row[fx * depth];                 \
                        }                                                                                    \
                        if (count > 0)                                                                       \
                            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;           \
                        *out++ = (T)mm_clamp_i32(acc, p->act_min, p->act_max);                               \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

#define MM_MAX_POOL_INT(NAME, T, LOWEST)                                                                     \
    void NAME(const mm_pool_params *p, const T *in, T *out)                                                  \
    {                                                                                                        \
        const int32_t depth = p->depth;                                                                      \
        for (int32_t b = 0; b < p->batches; ++b) {                                                           \
            const T *ib = in + (size_t)b * p->in_h * p->in_w * depth;                                        \
            for (int32_t oy = 0; oy < p->out_h; ++oy) {                                                      \
                for (int32_t ox = 0; ox < p->out_w; ++ox) {                                                  \
                    const mm_window w = mm_pool_window(p, oy, ox);                                           \
                    for (int32_t c = 0; c < depth; ++c) {                                                    \
                        int32_t m = LOWEST;                                                                  \
                        for (int32_t fy = w.y0; fy < w.y1; ++fy) {                                           \
                            const T *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c;        \
                            for (int32_t fx = w.x0; fx < w.x1; ++fx)                                         \
                                m = row[fx * depth] > m ? row[fx * depth] : m;                               \
                        }                                                                                    \
                        *out++ = (T)mm_clamp_i32(m, p->act_min, p->act_max);                                 \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

MM_INLINE int32_t pool_avg(int32_t acc, int32_t count)
{
    return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

/* int8 average pool: channel sums in 16-bit lanes (windows of at most 256 pixels cannot
 * overflow them); raster order, each pixel's channel block written after its window is read.
 * avg_channels_s8 does the channels its ISA path covers, from channel 0 on, and returns how
 * many; `base` is the window's first pixel. */
#if MM_TARGET_ISA == MM_ISA_MVE
/* Helium: 16 channels at a time, the last block predicated: all of them */
MM_INLINE int32_t avg_channels_s8(int32_t depth, const int8_t *base, int32_t nrows, int32_t ncols,
                                  int32_t row_step, int32_t count, int32_t lo, int32_t hi, int8_t *out)
{
    for (int32_t c = 0; c < depth; c += 16) {
        const mve_pred16_t p0 = vctp16q((uint32_t)(depth - c));
        const mve_pred16_t p1 = vctp16q((uint32_t)(depth - c > 8 ? depth - c - 8 : 0));
        int16x8_t s0 = vdupq_n_s16(0), s1 = vdupq_n_s16(0);
        const int8_t *row = base + c;
        for (int32_t fy = 0; fy < nrows; ++fy, row += row_step) {
            const int8_t *px = row;
            for (int32_t fx = 0; fx < ncols; ++fx, px += depth) {
                s0 = vaddq_s16(s0, vldrbq_z_s16(px, p0));
                s1 = vaddq_s16(s1, vldrbq_z_s16(px + 8, p1));
            }
        }
        int16_t sums[16];
        vst1q_s16(sums, s0);
        vst1q_s16(sums + 8, s1);
        const int32_t n = depth - c < 16 ? depth - c : 16;
        for (int32_t k = 0; k < n; ++k) out[c + k] = (int8_t)mm_clamp_i32(pool_avg(sums[k], count), lo, hi);
    }
    return depth;
}
#elif MM_TARGET_ISA == MM_ISA_DSP
/* DSP: 4 channels a word, SXTAB16 sums of channels (c, c+2) and (c+1, c+3); depth & ~3 of them */
MM_INLINE int32_t avg_channels_s8(int32_t depth, const int8_t *base, int32_t nrows, int32_t ncols,
                                  int32_t row_step, int32_t count, int32_t lo, int32_t hi, int8_t *out)
{
    int32_t c = 0;
    for (; c + 4 <= depth; c += 4) {
        int32_t se = 0, so = 0;
        const int8_t *row = base + c;
        for (int32_t fy = 0; fy < nrows; ++fy, row += row_step) {
            const int8_t *px = row;
            for (int32_t fx = 0; fx < ncols; ++fx, px += depth) {
                const int32_t v = mm_read_s32(px);
                se = mm_sxtab16(se, v);
                so = mm_sxtab16_ror8(so, v);
            }
        }
        out[c] = (int8_t)mm_clamp_i32(pool_avg((int16_t)se, count), lo, hi);
        out[c + 1] = (int8_t)mm_clamp_i32(pool_avg((int16_t)so, count), lo, hi);
        out[c + 2] = (int8_t)mm_clamp_i32(pool_avg(se >> 16, count), lo, hi);
        out[c + 3] = (int8_t)mm_clamp_i32(pool_avg(so >> 16, count), lo, hi);
    }
    return c;
}
#endif

#if MM_TARGET_ISA != MM_ISA_PLAIN
static void avg_pool_s8_fast(const mm_pool_params *p, const int8_t *in, int8_t *out)
{
    const int32_t depth = p->depth, lo = p->act_min, hi = p->act_max;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *ib = in + (size_t)b * p->in_h * p->in_w * depth;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            for (int32_t ox = 0; ox < p->out_w; ++ox, out += depth) {
                const mm_window w = mm_pool_window(p, oy, ox);
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
                const int8_t *base = ib + ((size_t)(w.iy0 + w.y0) * p->in_w + w.ix0 + w.x0) * depth;
                const int32_t ncols = w.x1 - w.x0, nrows = w.y1 - w.y0;
                const int32_t row_step = p->in_w * depth;
                int32_t c =
                    count > 0 ? avg_channels_s8(depth, base, nrows, ncols, row_step, count, lo, hi, out) : 0;
                for (; c < depth; ++c) {
                    int32_t acc = 0;
                    const int8_t *row = base + c;
                    for (int32_t fy = 0; fy < nrows; ++fy, row += row_step)
                        for (int32_t fx = 0; fx < ncols; ++fx) acc += row[fx * depth];
                    if (count > 0) acc = pool_avg(acc, count);
                    out[c] = (int8_t)mm_clamp_i32(acc, lo, hi);
                }
            }
        }
    }
}
#endif

static MM_AVG_POOL_INT(avg_pool_s8_plain, int8_t)

    void mm_avg_pool_s8(const mm_pool_params *p, const int8_t *in, int8_t *out)
{
#if MM_TARGET_ISA != MM_ISA_PLAIN
    if (p->filter_h * p->filter_w <= 256) {
        avg_pool_s8_fast(p, in, out);
        return;
    }
#endif
    avg_pool_s8_plain(p, in, out);
}
MM_AVG_POOL_INT(mm_avg_pool_s16, int16_t)
MM_MAX_POOL_INT(mm_max_pool_s8, int8_t, -128)
MM_MAX_POOL_INT(mm_max_pool_s16, int16_t, -32768)

static float mm_pool_clamp_f32(const mm_pool_params *p, float v)
{
    v = v < p->act_min_f ? p->act_min_f : v;
    return p->act_max_f < v ? p->act_max_f : v;
}

void mm_avg_pool_f32(const mm_pool_params *p, const float *in, float *out)
{
    const int32_t depth = p->depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *ib = in + (size_t)b * p->in_h * p->in_w * depth;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const mm_window w = mm_pool_window(p, oy, ox);
                const float count = (float)((w.y1 - w.y0) * (w.x1 - w.x0));
                for (int32_t c = 0; c < depth; ++c) {
                    float total = 0.0f;
                    for (int32_t fy = w.y0; fy < w.y1; ++fy) {
                        const float *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c;
                        for (int32_t fx = w.x0; fx < w.x1; ++fx) total += row[fx * depth];
                    }
                    *out++ = mm_pool_clamp_f32(p, total / count);
                }
            }
        }
    }
}

void mm_max_pool_f32(const mm_pool_params *p, const float *in, float *out)
{
    const int32_t depth = p->depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *ib = in + (size_t)b * p->in_h * p->in_w * depth;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const mm_window w = mm_pool_window(p, oy, ox);
                for (int32_t c = 0; c < depth; ++c) {
                    float m = -FLT_MAX;
                    for (int32_t fy = w.y0; fy < w.y1; ++fy) {
                        const float *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c;
                        for (int32_t fx = w.x0; fx < w.x1; ++fx)
                            m = m < row[fx * depth] ? row[fx * depth] : m;
                    }
                    *out++ = mm_pool_clamp_f32(p, m);
                }
            }
        }
    }
}
