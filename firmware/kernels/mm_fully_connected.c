/* mm_fully_connected.c - FULLY_CONNECTED kernels: portable, and the blocked layout with DSP (M4) and
 * Helium (M55) paths. */
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
                acc = mm_dot_s8(acc, x, wc, depth);
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

#if MM_TARGET_ISA == MM_ISA_DSP
/* ---- DSP (Cortex-M4/M7/M33): 4 rows per input load (mm_dot_4x1_*), 16 MACs per 21 instructions */
MM_INLINE void fc_blocked_s8_dsp(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t ng = depth >> 2, rem = depth & 3, nblk = out_depth >> 2;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * depth;
        int8_t *o = out + b * out_depth;
        const int8_t *wp = w;
        for (int32_t c = 0; c < nblk * 4; c += 4) {
            mm_acc4 a = {p->bias[c], p->bias[c + 1], p->bias[c + 2], p->bias[c + 3]};
            const int8_t *xp = x;
            const int8_t *const xend = x + 8 * (ng >> 1);
            while (xp != xend) {
                mm_dot_4x1_s8(&a, &xp, &wp);
                mm_dot_4x1_s8(&a, &xp, &wp);
            }
            if (ng & 1) mm_dot_4x1_s8(&a, &xp, &wp);
            for (int32_t k = 0; k < rem; ++k) {
                const int32_t xk = xp[k];
                a.a0 += wp[k] * xk;
                a.a1 += wp[rem + k] * xk;
                a.a2 += wp[2 * rem + k] * xk;
                a.a3 += wp[3 * rem + k] * xk;
            }
            wp += 4 * rem;
            o[c] = fc_out_s8(p, a.a0, c);
            o[c + 1] = fc_out_s8(p, a.a1, c + 1);
            o[c + 2] = fc_out_s8(p, a.a2, c + 2);
            o[c + 3] = fc_out_s8(p, a.a3, c + 3);
        }
        for (int32_t c = nblk * 4; c < out_depth; ++c, wp += depth) /* leftover rows: plain row-major */
            o[c] = fc_out_s8(p, mm_dot_s8(p->bias[c], x, wp, depth), c);
    }
}

/* |int16 * int8| <= 2^22: 127 groups (508 products) cannot overflow an int32 partial sum */
#define FC_S16_CHUNK 127

MM_INLINE void fc_blocked_s16_dsp(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
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
                mm_acc4 a = {0, 0, 0, 0};
                left -= n;
                for (int32_t g = n >> 1; g > 0; --g) {
                    mm_dot_4x1_s16(&a, &xp, &wp);
                    mm_dot_4x1_s16(&a, &xp, &wp);
                }
                if (n & 1) mm_dot_4x1_s16(&a, &xp, &wp);
                s0 += a.a0;
                s1 += a.a1;
                s2 += a.a2;
                s3 += a.a3;
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
                s = mm_smlald(mm_sxtb16_ror8(wv), mm_read_s32(xp + 2), s);
                xp += 4;
                wp += 4;
            }
            for (int32_t k = 0; k < rem; ++k) s += wp[k] * xp[k];
            wp += rem;
            o[c] = fc_out_s16(p, s, c);
        }
    }
}
#elif MM_TARGET_ISA == MM_ISA_MVE
/* ---- Helium (Cortex-M55): VMLADAVA on 4 rows per input vector */
MM_INLINE void fc_blocked_s8_mve(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
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
            if (rem) { /* weights are zero-padded: only the input load is predicated */
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

MM_INLINE void fc_blocked_s16_mve(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
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
#endif

/* the blocked layout (mm_fully_connected.h) on DSP and Helium targets */
#if MM_TARGET_ISA != MM_ISA_PLAIN
void mm_fully_connected_blocked_s8(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    fc_blocked_s8_mve(p, in, w, out);
#else
    fc_blocked_s8_dsp(p, in, w, out);
#endif
}

void mm_fully_connected_blocked_s16(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out)
{
#if MM_TARGET_ISA == MM_ISA_MVE
    fc_blocked_s16_mve(p, in, w, out);
#else
    fc_blocked_s16_dsp(p, in, w, out);
#endif
}
#endif
