/* mm_fully_connected.c - FULLY_CONNECTED kernels: portable, DSP (M4) and MVE (M55) paths. */
#include "mm_fully_connected.h"

void mm_fully_connected_s8(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t depth = p->in_depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * depth;
        for (int32_t c = 0; c < p->out_depth; ++c) {
            const int8_t *wc = w + c * depth;
            int32_t acc = p->bias[c];
            if (p->filter_offset == 0) {
                for (int32_t d = 0; d < depth; ++d) acc += (int32_t)wc[d] * x[d];
            } else {
                for (int32_t d = 0; d < depth; ++d)
                    acc += ((int32_t)wc[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
            }
            acc = mm_requantize(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
            out[b * p->out_depth + c] = (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
        }
    }
}

void mm_fully_connected_s16(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
    const int32_t depth = p->in_depth;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *x = in + b * depth;
        for (int32_t c = 0; c < p->out_depth; ++c) {
            const int8_t *wc = w + c * depth;
            int64_t acc = p->bias64[c];
            if (p->filter_offset == 0) {
                for (int32_t d = 0; d < depth; ++d) acc += (int32_t)wc[d] * x[d];
            } else {
                for (int32_t d = 0; d < depth; ++d)
                    acc += ((int32_t)wc[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
            }
            int32_t r = mm_requantize_s64(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
            out[b * p->out_depth + c] = (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
        }
    }
}

void mm_fully_connected_f32(const mm_fc_f32_params *p, const float *in, const float *w, float *out)
{
    for (int32_t b = 0; b < p->batches; ++b) {
        const float *x = in + b * p->in_depth;
        for (int32_t c = 0; c < p->out_depth; ++c) {
            const float *wc = w + c * p->in_depth;
            float acc = 0.0f;
            for (int32_t d = 0; d < p->in_depth; ++d) acc += x[d] * wc[d];
            if (p->bias) acc += p->bias[c];
            acc = acc < p->act_min ? p->act_min : acc;
            acc = acc > p->act_max ? p->act_max : acc;
            out[b * p->out_depth + c] = acc;
        }
    }
}

/* ------------------------------------------------------------------ fast paths */
MM_INLINE int8_t fc_out_s8(const mm_fc_params *p, int32_t acc, int32_t c)
{
    acc = mm_requantize(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
    return (int8_t)mm_clamp_i32(acc, p->act_min, p->act_max);
}

MM_INLINE int16_t fc_out_s16(const mm_fc_params *p, int64_t acc, int32_t c)
{
    const int32_t r = mm_requantize_s64(acc, p->multiplier[c], p->shift[c]) + p->output_offset;
    return (int16_t)mm_clamp_i32(r, p->act_min, p->act_max);
}

#if MM_HAVE_DSP
#if MM_NATIVE_DSP
/* SXTB16 with its rotate field: GCC does not fold a separate ROR into it. */
MM_INLINE int32_t fc_sxtb16_hi(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* aligned word i of a weight block (LDRD/LDM-able) */
#define FC_W(wp, i) (((const int32_t *)__builtin_assume_aligned((wp), 4))[i])
#else
#define fc_sxtb16_hi mm_sxtb16_ror8
#define FC_W(wp, i) mm_read_s32((wp) + 4 * (i))
#endif

/* 4 input columns x 4 rows: one input word, 4 weight words, 8 SMLAD.
 * On the device this is hand-scheduled: GCC neither folds the ROR into SXTB16 nor keeps the
 * 4-row loop out of the stack (2 LDRD with writeback, 21 instructions per 16 MACs). */
#if MM_NATIVE_DSP
#define FC_ROW2(A, B, XA, XB)                                                      \
    "ldrd   %[w0], %[w1], [%[wp]], #8\n\t"                                         \
    "sxtb16 %[t], %[w0], ror #8\n\t"                                               \
    "sxtb16 %[w0], %[w0]\n\t"                                                      \
    "smlad  %[" A "], %[w0], %[" XA "], %[" A "]\n\t"                              \
    "smlad  %[" A "], %[t], %[" XB "], %[" A "]\n\t"                               \
    "sxtb16 %[t], %[w1], ror #8\n\t"                                               \
    "sxtb16 %[w1], %[w1]\n\t"                                                      \
    "smlad  %[" B "], %[w1], %[" XA "], %[" B "]\n\t"                              \
    "smlad  %[" B "], %[t], %[" XB "], %[" B "]\n\t"
#define FC_ASM_OPERANDS                                                            \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),   \
      [wp] "+r"(wp), [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), \
      [t] "=&r"(t)                                                                 \
    :                                                                              \
    : "memory"
#define FC_S8_STEP4(xp, wp)                                                        \
    do {                                                                           \
        int32_t xa, xb, w0, w1, t;                                                 \
        __asm__("ldr    %[xa], [%[xp]], #4\n\t"                                    \
                "sxtb16 %[xb], %[xa], ror #8\n\t"                                  \
                "sxtb16 %[xa], %[xa]\n\t"                                          \
                FC_ROW2("a0", "a1", "xa", "xb") FC_ROW2("a2", "a3", "xa", "xb")      \
                FC_ASM_OPERANDS);                                                  \
    } while (0)
#define FC_S16_STEP4(xp, wp)                                                       \
    do {                                                                           \
        int32_t xa, xb, w0, w1, t;                                                 \
        __asm__("ldr    %[xa], [%[xp]], #4\n\t"                                    \
                "ldr    %[xb], [%[xp]], #4\n\t"                                    \
                FC_ROW2("a0", "a1", "xa", "xb") FC_ROW2("a2", "a3", "xa", "xb")      \
                FC_ASM_OPERANDS);                                                  \
    } while (0)
#else
#define FC_S8_STEP4(xp, wp)                                                        \
    do {                                                                           \
        const int32_t xv = mm_read_s32(xp);                                        \
        const int32_t xe = mm_sxtb16(xv), xo = fc_sxtb16_hi(xv);                   \
        const int32_t w0 = FC_W(wp, 0), w1 = FC_W(wp, 1);                          \
        const int32_t w2 = FC_W(wp, 2), w3 = FC_W(wp, 3);                          \
        xp += 4;                                                                   \
        wp += 16;                                                                  \
        a0 = mm_smlad(mm_sxtb16(w0), xe, a0);                                      \
        a0 = mm_smlad(fc_sxtb16_hi(w0), xo, a0);                                   \
        a1 = mm_smlad(mm_sxtb16(w1), xe, a1);                                      \
        a1 = mm_smlad(fc_sxtb16_hi(w1), xo, a1);                                   \
        a2 = mm_smlad(mm_sxtb16(w2), xe, a2);                                      \
        a2 = mm_smlad(fc_sxtb16_hi(w2), xo, a2);                                   \
        a3 = mm_smlad(mm_sxtb16(w3), xe, a3);                                      \
        a3 = mm_smlad(fc_sxtb16_hi(w3), xo, a3);                                   \
    } while (0)
/* int16x8: input pairs straight from memory, weight groups stored [w0 w2 w1 w3]. */
#define FC_S16_STEP4(xp, wp)                                                       \
    do {                                                                           \
        const int32_t x01 = mm_read_s32(xp), x23 = mm_read_s32(xp + 2);           \
        const int32_t w0 = FC_W(wp, 0), w1 = FC_W(wp, 1);                          \
        const int32_t w2 = FC_W(wp, 2), w3 = FC_W(wp, 3);                          \
        xp += 4;                                                                   \
        wp += 16;                                                                  \
        a0 = mm_smlad(mm_sxtb16(w0), x01, a0);                                     \
        a0 = mm_smlad(fc_sxtb16_hi(w0), x23, a0);                                  \
        a1 = mm_smlad(mm_sxtb16(w1), x01, a1);                                     \
        a1 = mm_smlad(fc_sxtb16_hi(w1), x23, a1);                                  \
        a2 = mm_smlad(mm_sxtb16(w2), x01, a2);                                     \
        a2 = mm_smlad(fc_sxtb16_hi(w2), x23, a2);                                  \
        a3 = mm_smlad(mm_sxtb16(w3), x01, a3);                                     \
        a3 = mm_smlad(fc_sxtb16_hi(w3), x23, a3);                                  \
    } while (0)
#endif

void mm_fully_connected_s8_dsp(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t ng = depth >> 2, rem = depth & 3, nblk = out_depth >> 2;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * depth;
        int8_t *o = out + b * out_depth;
        const int8_t *wp = w;
        for (int32_t c = 0; c < nblk * 4; c += 4) {
            int32_t a0 = p->bias[c], a1 = p->bias[c + 1], a2 = p->bias[c + 2], a3 = p->bias[c + 3];
            const int8_t *xp = x;
            const int8_t *const xend = x + 8 * (ng >> 1);
            while (xp != xend) {
                FC_S8_STEP4(xp, wp);
                FC_S8_STEP4(xp, wp);
            }
            if (ng & 1) FC_S8_STEP4(xp, wp);
            for (int32_t k = 0; k < rem; ++k) {
                const int32_t xk = xp[k];
                a0 += wp[k] * xk;
                a1 += wp[rem + k] * xk;
                a2 += wp[2 * rem + k] * xk;
                a3 += wp[3 * rem + k] * xk;
            }
            wp += 4 * rem;
            o[c] = fc_out_s8(p, a0, c);
            o[c + 1] = fc_out_s8(p, a1, c + 1);
            o[c + 2] = fc_out_s8(p, a2, c + 2);
            o[c + 3] = fc_out_s8(p, a3, c + 3);
        }
        for (int32_t c = nblk * 4; c < out_depth; ++c) {  /* leftover rows: plain row-major */
            int32_t acc = p->bias[c];
            const int8_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                const int32_t xv = mm_read_s32(xp), wv = mm_read_s32(wp);
                xp += 4;
                wp += 4;
                acc = mm_smlad(mm_sxtb16(wv), mm_sxtb16(xv), acc);
                acc = mm_smlad(fc_sxtb16_hi(wv), fc_sxtb16_hi(xv), acc);
            }
            for (int32_t k = 0; k < rem; ++k) acc += wp[k] * xp[k];
            wp += rem;
            o[c] = fc_out_s8(p, acc, c);
        }
    }
}

/* |int16 * int8| <= 2^22: 127 groups (508 products) cannot overflow an int32 partial sum */
#define FC_S16_CHUNK 127

void mm_fully_connected_s16_dsp(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t ng = depth >> 2, rem = depth & 3, nblk = out_depth >> 2;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *x = in + b * depth;
        int16_t *o = out + b * out_depth;
        const int8_t *wp = w;
        for (int32_t c = 0; c < nblk * 4; c += 4) {
            int64_t s0 = p->bias64[c], s1 = p->bias64[c + 1], s2 = p->bias64[c + 2], s3 = p->bias64[c + 3];
            const int16_t *xp = x;
            for (int32_t left = ng; left > 0;) {
                const int32_t n = left < FC_S16_CHUNK ? left : FC_S16_CHUNK;
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                left -= n;
                for (int32_t g = n >> 1; g > 0; --g) {
                    FC_S16_STEP4(xp, wp);
                    FC_S16_STEP4(xp, wp);
                }
                if (n & 1) FC_S16_STEP4(xp, wp);
                s0 += a0;
                s1 += a1;
                s2 += a2;
                s3 += a3;
            }
            for (int32_t k = 0; k < rem; ++k) {
                const int32_t xk = xp[k];
                s0 += wp[k] * xk;
                s1 += wp[rem + k] * xk;
                s2 += wp[2 * rem + k] * xk;
                s3 += wp[3 * rem + k] * xk;
            }
            wp += 4 * rem;
            o[c] = fc_out_s16(p, s0, c);
            o[c + 1] = fc_out_s16(p, s1, c + 1);
            o[c + 2] = fc_out_s16(p, s2, c + 2);
            o[c + 3] = fc_out_s16(p, s3, c + 3);
        }
        for (int32_t c = nblk * 4; c < out_depth; ++c) {
            int64_t s = p->bias64[c];
            const int16_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                const int32_t wv = mm_read_s32(wp);
                s = mm_smlald(mm_sxtb16(wv), mm_read_s32(xp), s);
                s = mm_smlald(fc_sxtb16_hi(wv), mm_read_s32(xp + 2), s);
                xp += 4;
                wp += 4;
            }
            for (int32_t k = 0; k < rem; ++k) s += wp[k] * xp[k];
            wp += rem;
            o[c] = fc_out_s16(p, s, c);
        }
    }
}
#endif /* MM_HAVE_DSP */

#if MM_HAVE_MVE
void mm_fully_connected_s8_mve(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t ng = depth >> 4, rem = depth & 15;
    const mve_pred16_t tail = vctp8q((uint32_t)rem);
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * depth;
        int8_t *o = out + b * out_depth;
        const int8_t *wp = w;
        int32_t c = 0;
        for (; c + 4 <= out_depth; c += 4) {
            int32_t a0 = p->bias[c], a1 = p->bias[c + 1], a2 = p->bias[c + 2], a3 = p->bias[c + 3];
            const int8_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                const int8x16_t xv = vldrbq_s8(xp);
                xp += 16;
                a0 = vmladavaq_s8(a0, xv, vldrbq_s8(wp));
                a1 = vmladavaq_s8(a1, xv, vldrbq_s8(wp + 16));
                a2 = vmladavaq_s8(a2, xv, vldrbq_s8(wp + 32));
                a3 = vmladavaq_s8(a3, xv, vldrbq_s8(wp + 48));
                wp += 64;
            }
            if (rem) {  /* weights are zero-padded: only the input load is predicated */
                const int8x16_t xv = vldrbq_z_s8(xp, tail);
                a0 = vmladavaq_s8(a0, xv, vldrbq_s8(wp));
                a1 = vmladavaq_s8(a1, xv, vldrbq_s8(wp + 16));
                a2 = vmladavaq_s8(a2, xv, vldrbq_s8(wp + 32));
                a3 = vmladavaq_s8(a3, xv, vldrbq_s8(wp + 48));
                wp += 64;
            }
            o[c] = fc_out_s8(p, a0, c);
            o[c + 1] = fc_out_s8(p, a1, c + 1);
            o[c + 2] = fc_out_s8(p, a2, c + 2);
            o[c + 3] = fc_out_s8(p, a3, c + 3);
        }
        for (; c < out_depth; ++c) {
            int32_t acc = p->bias[c];
            const int8_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                acc = vmladavaq_s8(acc, vldrbq_s8(xp), vldrbq_s8(wp));
                xp += 16;
                wp += 16;
            }
            if (rem) {
                acc = vmladavaq_s8(acc, vldrbq_z_s8(xp, tail), vldrbq_s8(wp));
                wp += 16;
            }
            o[c] = fc_out_s8(p, acc, c);
        }
    }
}

void mm_fully_connected_s16_mve(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t ng = depth >> 3, rem = depth & 7;
    const mve_pred16_t tail = vctp16q((uint32_t)rem);
    for (int32_t b = 0; b < p->batches; ++b) {
        const int16_t *x = in + b * depth;
        int16_t *o = out + b * out_depth;
        const int8_t *wp = w;
        int32_t c = 0;
        for (; c + 4 <= out_depth; c += 4) {
            int64_t s0 = p->bias64[c], s1 = p->bias64[c + 1], s2 = p->bias64[c + 2], s3 = p->bias64[c + 3];
            const int16_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                const int16x8_t xv = vldrhq_s16(xp);
                xp += 8;
                s0 = vmlaldavaq_s16(s0, xv, vldrbq_s16(wp));
                s1 = vmlaldavaq_s16(s1, xv, vldrbq_s16(wp + 8));
                s2 = vmlaldavaq_s16(s2, xv, vldrbq_s16(wp + 16));
                s3 = vmlaldavaq_s16(s3, xv, vldrbq_s16(wp + 24));
                wp += 32;
            }
            if (rem) {
                const int16x8_t xv = vldrhq_z_s16(xp, tail);
                s0 = vmlaldavaq_s16(s0, xv, vldrbq_s16(wp));
                s1 = vmlaldavaq_s16(s1, xv, vldrbq_s16(wp + 8));
                s2 = vmlaldavaq_s16(s2, xv, vldrbq_s16(wp + 16));
                s3 = vmlaldavaq_s16(s3, xv, vldrbq_s16(wp + 24));
                wp += 32;
            }
            o[c] = fc_out_s16(p, s0, c);
            o[c + 1] = fc_out_s16(p, s1, c + 1);
            o[c + 2] = fc_out_s16(p, s2, c + 2);
            o[c + 3] = fc_out_s16(p, s3, c + 3);
        }
        for (; c < out_depth; ++c) {
            int64_t s = p->bias64[c];
            const int16_t *xp = x;
            for (int32_t g = ng; g > 0; --g) {
                s = vmlaldavaq_s16(s, vldrhq_s16(xp), vldrbq_s16(wp));
                xp += 8;
                wp += 8;
            }
            if (rem) {
                s = vmlaldavaq_s16(s, vldrhq_z_s16(xp, tail), vldrbq_s16(wp));
                wp += 8;
            }
            o[c] = fc_out_s16(p, s, c);
        }
    }
}
#endif /* MM_HAVE_MVE */
