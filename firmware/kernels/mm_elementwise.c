/* mm_elementwise.c - portable ADD / SUB / MUL kernels with compile-time broadcasting. */
#include "mm_elementwise.h"

/* One row of the loop nest: n outputs, inputs advancing by as / bs elements. */
typedef void (*mm_row_fn)(const void *p, int32_t n, const void *a, int32_t as,
                          const void *b, int32_t bs, void *out);

/* Walk the loop nest row by row; the output is written contiguously. */
static void run_rows(const mm_broadcast *bc, int32_t size, int32_t esize, const void *p,
                     const void *a, const void *b, void *out, mm_row_fn row)
{
    const char *pa = (const char *)a;
    const char *pb = (const char *)b;
    char *po = (char *)out;
    if (bc == NULL) {
        row(p, size, pa, 1, pb, 1, po);
        return;
    }
    const int32_t inner_dim = bc->ndims - 1;
    const int32_t inner = bc->shape[inner_dim];
    const int32_t rows = inner > 0 ? size / inner : 0;
    int32_t idx[MM_BCAST_MAX_DIMS] = {0};
    int32_t ao = 0, bo = 0;
    for (int32_t r = 0; r < rows; ++r) {
        row(p, inner, pa + (ptrdiff_t)ao * esize, bc->a_stride[inner_dim],
            pb + (ptrdiff_t)bo * esize, bc->b_stride[inner_dim], po + (ptrdiff_t)r * inner * esize);
        for (int32_t d = inner_dim - 1; d >= 0; --d) {
            ao += bc->a_stride[d];
            bo += bc->b_stride[d];
            if (++idx[d] < bc->shape[d]) break;
            idx[d] = 0;
            ao -= bc->a_stride[d] * bc->shape[d];
            bo -= bc->b_stride[d] * bc->shape[d];
        }
    }
}

/* ------------------------------------------------------------ quantized ADD / SUB */
/* Both inputs on a common scale (offset, left shift, multiplier < 1), then
 * combined and rescaled; `sub` is a compile-time constant in each caller. */
MM_INLINE int32_t addsub_core(const mm_add_params *p, int32_t x, int32_t y, int sub)
{
    const int32_t sx = (x + p->input1_offset) * (1 << p->left_shift);
    const int32_t sy = (y + p->input2_offset) * (1 << p->left_shift);
    const int32_t rx = mm_requantize_lt1(sx, p->input1_multiplier, p->input1_shift);
    const int32_t ry = mm_requantize_lt1(sy, p->input2_multiplier, p->input2_shift);
    const int32_t raw = sub ? rx - ry : rx + ry;
    const int32_t r = mm_requantize_lt1(raw, p->output_multiplier, p->output_shift) + p->output_offset;
    return mm_clamp_i32(r, p->act_min, p->act_max);
}

#define MM_ADDSUB_ROW(name, T, sub)                                                       \
    static void name(const void *pv, int32_t n, const void *av, int32_t as,              \
                     const void *bv, int32_t bs, void *ov)                                \
    {                                                                                     \
        const mm_add_params q = *(const mm_add_params *)pv; /* local: out may alias */  \
        const T *a = (const T *)av, *b = (const T *)bv;                                   \
        T *o = (T *)ov;                                                                   \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs)                                 \
            o[i] = (T)addsub_core(&q, *a, *b, sub);                                       \
    }

MM_ADDSUB_ROW(add_row_s8, int8_t, 0)
MM_ADDSUB_ROW(add_row_s16, int16_t, 0)
MM_ADDSUB_ROW(sub_row_s8, int8_t, 1)
MM_ADDSUB_ROW(sub_row_s16, int16_t, 1)

void mm_add_s8(const mm_add_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    run_rows(p->bcast, p->size, 1, p, a, b, out, add_row_s8);
}

void mm_add_s16(const mm_add_params *p, const int16_t *a, const int16_t *b, int16_t *out)
{
    run_rows(p->bcast, p->size, 2, p, a, b, out, add_row_s16);
}

void mm_sub_s8(const mm_add_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    run_rows(p->bcast, p->size, 1, p, a, b, out, sub_row_s8);
}

void mm_sub_s16(const mm_add_params *p, const int16_t *a, const int16_t *b, int16_t *out)
{
    run_rows(p->bcast, p->size, 2, p, a, b, out, sub_row_s16);
}

/* ------------------------------------------------------------ quantized MUL */
#define MM_MUL_ROW(name, T)                                                               \
    static void name(const void *pv, int32_t n, const void *av, int32_t as,              \
                     const void *bv, int32_t bs, void *ov)                                \
    {                                                                                     \
        const mm_mul_params q = *(const mm_mul_params *)pv;                               \
        const T *a = (const T *)av, *b = (const T *)bv;                                   \
        T *o = (T *)ov;                                                                   \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs) {                               \
            const int32_t prod = (*a + q.input1_offset) * (*b + q.input2_offset);        \
            const int32_t r = mm_requantize(prod, q.output_multiplier, q.output_shift)   \
                              + q.output_offset;                                          \
            o[i] = (T)mm_clamp_i32(r, q.act_min, q.act_max);                              \
        }                                                                                 \
    }

MM_MUL_ROW(mul_row_s8, int8_t)
MM_MUL_ROW(mul_row_s16, int16_t)

void mm_mul_s8(const mm_mul_params *p, const int8_t *a, const int8_t *b, int8_t *out)
{
    run_rows(p->bcast, p->size, 1, p, a, b, out, mul_row_s8);
}

void mm_mul_s16(const mm_mul_params *p, const int16_t *a, const int16_t *b, int16_t *out)
{
    run_rows(p->bcast, p->size, 2, p, a, b, out, mul_row_s16);
}

/* ------------------------------------------------------------ float */
/* min(max(x, lo), hi) with the std::max / std::min argument order (NaN passes). */
MM_INLINE float clamp_f32(float x, float lo, float hi)
{
    const float t = x < lo ? lo : x;
    return hi < t ? hi : t;
}

#define MM_F32_ROW(name, expr)                                                            \
    static void name(const void *pv, int32_t n, const void *av, int32_t as,              \
                     const void *bv, int32_t bs, void *ov)                                \
    {                                                                                     \
        const float lo = ((const mm_elementwise_f32_params *)pv)->act_min;                \
        const float hi = ((const mm_elementwise_f32_params *)pv)->act_max;                \
        const float *a = (const float *)av, *b = (const float *)bv;                       \
        float *o = (float *)ov;                                                           \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs)                                 \
            o[i] = clamp_f32(expr, lo, hi);                                               \
    }

MM_F32_ROW(add_row_f32, *a + *b)
MM_F32_ROW(sub_row_f32, *a - *b)
MM_F32_ROW(mul_row_f32, *a * *b)

void mm_add_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out)
{
    run_rows(p->bcast, p->size, 4, p, a, b, out, add_row_f32);
}

void mm_sub_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out)
{
    run_rows(p->bcast, p->size, 4, p, a, b, out, sub_row_f32);
}

void mm_mul_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out)
{
    run_rows(p->bcast, p->size, 4, p, a, b, out, mul_row_f32);
}
