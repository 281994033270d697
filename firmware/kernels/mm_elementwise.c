/* mm_elementwise.c - ADD / SUB / MUL kernels with compile-time broadcasting; quantized ADD/SUB
 * rows with unit strides take a DSP (M4) or MVE (M55) path. */
#include "mm_elementwise.h"
#include "mm_isa.h"

/* One row of the loop nest: n outputs, inputs advancing by as / bs elements. */
typedef void (*mm_row_fn)(const void *p, int32_t n, const void *a, int32_t as, const void *b, int32_t bs,
                          void *out);

/* Walk the loop nest row by row; the output is written contiguously. */
static void run_rows(const mm_broadcast *bc, int32_t size, int32_t esize, const void *p, const void *a,
                     const void *b, void *out, mm_row_fn row)
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
        row(p, inner, pa + (ptrdiff_t)ao * esize, bc->a_stride[inner_dim], pb + (ptrdiff_t)bo * esize,
            bc->b_stride[inner_dim], po + (ptrdiff_t)r * inner * esize);
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

/* ---- fast rows (unit strides). TFLM's SaturatingRoundingDoublingHighMul rounds half up,
 * floor((a*m + 2^30) / 2^31), which is MVE VQRDMULH, and SMMULR(2a, m) on the DSP when 2a
 * fits in 32 bits (|a| < 2^30: int8 inputs shifted by 20, their rescaled sum; int16 inputs
 * with offset 0 shifted by 15). RoundingDivideByPOT(v, e) = (v - [v < 0 and e > 0] +
 * 2^(e-1)) >> e. */
#if MM_TARGET_ISA == MM_ISA_MVE
/* the row's constants, hoisted */
typedef struct {
    int32_t ls, o1, o2, m1, m2, mo, zo, e1, e2, eo;
    int32x4_t ne1, ne2, neo, lo, hi; /* ne = all ones when e > 0 */
} ew_consts;

MM_INLINE ew_consts ew_consts_of(const mm_add_params *q)
{
    ew_consts k;
    k.ls = q->left_shift;
    k.o1 = q->input1_offset;
    k.o2 = q->input2_offset;
    k.m1 = q->input1_multiplier;
    k.m2 = q->input2_multiplier;
    k.mo = q->output_multiplier;
    k.zo = q->output_offset;
    k.e1 = -q->input1_shift;
    k.e2 = -q->input2_shift;
    k.eo = -q->output_shift;
    k.ne1 = vdupq_n_s32(k.e1 ? -1 : 0);
    k.ne2 = vdupq_n_s32(k.e2 ? -1 : 0);
    k.neo = vdupq_n_s32(k.eo ? -1 : 0);
    k.lo = vdupq_n_s32(q->act_min);
    k.hi = vdupq_n_s32(q->act_max);
    return k;
}

/* v + (v < 0 and e > 0 ? -1 : 0) */
MM_INLINE int32x4_t ew_fix(int32x4_t v, int32x4_t ne)
{
    return vaddq_s32(v, vandq_s32(vshrq_n_s32(v, 31), ne));
}

/* 4 lanes of ADD (sub = 0) or SUB (sub = 1) */
MM_INLINE int32x4_t ew_addsub4(const ew_consts *k, int32x4_t a, int32x4_t b, int sub)
{
    int32x4_t x = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_n_s32(a, k->o1), k->ls), k->m1);
    int32x4_t y = vqrdmulhq_n_s32(vshlq_r_s32(vaddq_n_s32(b, k->o2), k->ls), k->m2);
    x = vrshlq_n_s32(ew_fix(x, k->ne1), -k->e1);
    y = vrshlq_n_s32(ew_fix(y, k->ne2), -k->e2);
    int32x4_t r = vqrdmulhq_n_s32(sub ? vsubq_s32(x, y) : vaddq_s32(x, y), k->mo);
    r = vaddq_n_s32(vrshlq_n_s32(ew_fix(r, k->neo), -k->eo), k->zo);
    return vminq_s32(vmaxq_s32(r, k->lo), k->hi);
}

/* the fast row when it applies (unit strides: always on Helium); 1 when done */
MM_INLINE int addsub_fast_s8(const mm_add_params *q, int32_t n, const int8_t *a, int32_t as, const int8_t *b,
                             int32_t bs, int8_t *o, int sub)
{
    if (as != 1 || bs != 1) return 0;
    const ew_consts k = ew_consts_of(q);
    for (int32_t i = n >> 2; i > 0; --i, a += 4, b += 4, o += 4)
        vstrbq_s32(o, ew_addsub4(&k, vldrbq_s32(a), vldrbq_s32(b), sub));
    if (n & 3) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n & 3));
        vstrbq_p_s32(o, ew_addsub4(&k, vldrbq_z_s32(a, pr), vldrbq_z_s32(b, pr), sub), pr);
    }
    return 1;
}

MM_INLINE int addsub_fast_s16(const mm_add_params *q, int32_t n, const int16_t *a, int32_t as,
                              const int16_t *b, int32_t bs, int16_t *o, int sub)
{
    if (as != 1 || bs != 1) return 0;
    const ew_consts k = ew_consts_of(q);
    for (int32_t i = n >> 2; i > 0; --i, a += 4, b += 4, o += 4)
        vstrhq_s32(o, ew_addsub4(&k, vldrhq_s32(a), vldrhq_s32(b), sub));
    if (n & 3) {
        const mve_pred16_t pr = vctp32q((uint32_t)(n & 3));
        vstrhq_p_s32(o, ew_addsub4(&k, vldrhq_z_s32(a, pr), vldrhq_z_s32(b, pr), sub), pr);
    }
    return 1;
}
#elif MM_TARGET_ISA == MM_ISA_DSP
/* fm = -1 when e > 0, else 0 */
MM_INLINE int32_t ew_rdbp(int32_t v, int32_t fm, int32_t h, int32_t e)
{
    v += (v >> 31) & fm;
    return (v + h) >> e;
}
/* The fast row when it applies (unit strides; int8: any offsets; int16: offsets 0, so that
 * 2 * (x << 15) fits in 32 bits); 1 when done. One definition per element type. */
#define MM_ADDSUB_DSP(NAME, T, LEFT_SHIFT_OK)                                                                \
    MM_INLINE int NAME(const mm_add_params *q, int32_t n, const T *a, int32_t as, const T *b, int32_t bs,    \
                       T *o, int sub)                                                                        \
    {                                                                                                        \
        if (as != 1 || bs != 1 || !(LEFT_SHIFT_OK)) return 0;                                                \
        const int32_t sh = q->left_shift + 1;                                                                \
        const int32_t k1 = (int32_t)((uint32_t)q->input1_offset << sh);                                      \
        const int32_t k2 = (int32_t)((uint32_t)q->input2_offset << sh);                                      \
        const int32_t m1 = q->input1_multiplier, m2 = q->input2_multiplier;                                  \
        const int32_t mo = q->output_multiplier, zo = q->output_offset;                                      \
        const int32_t e1 = -q->input1_shift, e2 = -q->input2_shift, eo = -q->output_shift;                   \
        const int32_t s1 = e1 ? -1 : 0, s2 = e2 ? -1 : 0, so = eo ? -1 : 0;                                  \
        const int32_t h1 = e1 ? 1 << (e1 - 1) : 0, h2 = e2 ? 1 << (e2 - 1) : 0;                              \
        const int32_t ho = eo ? 1 << (eo - 1) : 0;                                                           \
        const int32_t lo = q->act_min, hi = q->act_max;                                                      \
        for (int32_t i = 0; i < n; ++i) {                                                                    \
            const int32_t x = ew_rdbp(mm_smmulr((int32_t)((uint32_t)a[i] << sh) + k1, m1), s1, h1, e1);      \
            const int32_t y = ew_rdbp(mm_smmulr((int32_t)((uint32_t)b[i] << sh) + k2, m2), s2, h2, e2);      \
            const int32_t raw = sub ? x - y : x + y;                                                         \
            const int32_t r = ew_rdbp(mm_smmulr(raw * 2, mo), so, ho, eo) + zo;                              \
            o[i] = (T)mm_clamp_i32(r, lo, hi);                                                               \
        }                                                                                                    \
        return 1;                                                                                            \
    }
MM_ADDSUB_DSP(addsub_fast_s8, int8_t, q->left_shift == 20)
MM_ADDSUB_DSP(addsub_fast_s16, int16_t, q->left_shift == 15 && q->input1_offset == 0 && q->input2_offset == 0)
#else
/* plain targets: no fast row */
#define MM_ADDSUB_PLAIN(NAME, T)                                                                             \
    MM_INLINE int NAME(const mm_add_params *q, int32_t n, const T *a, int32_t as, const T *b, int32_t bs,    \
                       T *o, int sub)                                                                        \
    {                                                                                                        \
        (void)q, (void)n, (void)a, (void)as, (void)b, (void)bs, (void)o, (void)sub;                          \
        return 0;                                                                                            \
    }
MM_ADDSUB_PLAIN(addsub_fast_s8, int8_t)
MM_ADDSUB_PLAIN(addsub_fast_s16, int16_t)
#endif

#define MM_ADDSUB_ROW(name, T, FAST, sub)                                                                    \
    static void name(const void *pv, int32_t n, const void *av, int32_t as, const void *bv, int32_t bs,      \
                     void *ov)                                                                               \
    {                                                                                                        \
        const mm_add_params q = *(const mm_add_params *)pv; /* local: out may alias */                       \
        const T *a = (const T *)av, *b = (const T *)bv;                                                      \
        T *o = (T *)ov;                                                                                      \
        if (FAST(&q, n, a, as, b, bs, o, sub)) return;                                                       \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs) o[i] = (T)addsub_core(&q, *a, *b, sub);            \
    }

MM_ADDSUB_ROW(add_row_s8, int8_t, addsub_fast_s8, 0)
MM_ADDSUB_ROW(add_row_s16, int16_t, addsub_fast_s16, 0)
MM_ADDSUB_ROW(sub_row_s8, int8_t, addsub_fast_s8, 1)
MM_ADDSUB_ROW(sub_row_s16, int16_t, addsub_fast_s16, 1)

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
#define MM_MUL_ROW(name, T)                                                                                  \
    static void name(const void *pv, int32_t n, const void *av, int32_t as, const void *bv, int32_t bs,      \
                     void *ov)                                                                               \
    {                                                                                                        \
        const mm_mul_params q = *(const mm_mul_params *)pv;                                                  \
        const T *a = (const T *)av, *b = (const T *)bv;                                                      \
        T *o = (T *)ov;                                                                                      \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs) {                                                  \
            const int32_t prod = (*a + q.input1_offset) * (*b + q.input2_offset);                            \
            const int32_t r = mm_requantize(prod, q.output_multiplier, q.output_shift) + q.output_offset;    \
            o[i] = (T)mm_clamp_i32(r, q.act_min, q.act_max);                                                 \
        }                                                                                                    \
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

#define MM_F32_ROW(name, expr)                                                                               \
    static void name(const void *pv, int32_t n, const void *av, int32_t as, const void *bv, int32_t bs,      \
                     void *ov)                                                                               \
    {                                                                                                        \
        const float lo = ((const mm_elementwise_f32_params *)pv)->act_min;                                   \
        const float hi = ((const mm_elementwise_f32_params *)pv)->act_max;                                   \
        const float *a = (const float *)av, *b = (const float *)bv;                                          \
        float *o = (float *)ov;                                                                              \
        for (int32_t i = 0; i < n; ++i, a += as, b += bs) o[i] = clamp_f32(expr, lo, hi);                    \
    }

MM_F32_ROW(add_row_f32, *a + *b)
MM_F32_ROW(sub_row_f32, *a - *b)
MM_F32_ROW(mul_row_f32, *a **b)

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
