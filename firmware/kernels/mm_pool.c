/* mm_pool.c - portable pooling kernels. */
#include <float.h>
#include "mm_pool.h"

/* Window of output position (oy, ox) clipped to the input: rows [*y0, *y1), cols [*x0, *x1),
 * relative to the input origin (iy0, ix0). */
typedef struct { int32_t iy0, ix0, y0, y1, x0, x1; } mm_window;

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
#define MM_AVG_POOL_INT(NAME, T)                                                          \
void NAME(const mm_pool_params *p, const T *in, T *out)                                   \
{                                                                                         \
    const int32_t depth = p->depth;                                                       \
    for (int32_t b = 0; b < p->batches; ++b) {                                            \
        const T *ib = in + (size_t)b * p->in_h * p->in_w * depth;                         \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                       \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                   \
                const mm_window w = mm_pool_window(p, oy, ox);                            \
                const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);                      \
                for (int32_t c = 0; c < depth; ++c) {                                     \
                    int32_t acc = 0;                                                      \
                    for (int32_t fy = w.y0; fy < w.y1; ++fy) {                            \
                        const T *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c; \
                        for (int32_t fx = w.x0; fx < w.x1; ++fx) acc += row[fx * depth]; \
                    }                                                                     \
                    if (count > 0)                                                        \
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count; \
                    *out++ = (T)mm_clamp_i32(acc, p->act_min, p->act_max);                \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
}

#define MM_MAX_POOL_INT(NAME, T, LOWEST)                                                  \
void NAME(const mm_pool_params *p, const T *in, T *out)                                   \
{                                                                                         \
    const int32_t depth = p->depth;                                                       \
    for (int32_t b = 0; b < p->batches; ++b) {                                            \
        const T *ib = in + (size_t)b * p->in_h * p->in_w * depth;                         \
        for (int32_t oy = 0; oy < p->out_h; ++oy) {                                       \
            for (int32_t ox = 0; ox < p->out_w; ++ox) {                                   \
                const mm_window w = mm_pool_window(p, oy, ox);                            \
                for (int32_t c = 0; c < depth; ++c) {                                     \
                    int32_t m = LOWEST;                                                   \
                    for (int32_t fy = w.y0; fy < w.y1; ++fy) {                            \
                        const T *row = ib + ((size_t)(w.iy0 + fy) * p->in_w + w.ix0) * depth + c; \
                        for (int32_t fx = w.x0; fx < w.x1; ++fx)                          \
                            m = row[fx * depth] > m ? row[fx * depth] : m;                \
                    }                                                                     \
                    *out++ = (T)mm_clamp_i32(m, p->act_min, p->act_max);                  \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
}

MM_AVG_POOL_INT(mm_avg_pool_s8, int8_t)
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
