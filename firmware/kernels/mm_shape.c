/* mm_shape.c - portable CONCATENATION and PAD kernels. */
#include <stdarg.h>
#include <string.h>
#include "mm_shape.h"

static void mm_concat_bytes(const mm_concat_params *p, uint8_t *out, const uint8_t *const *in, size_t elem)
{
    for (int32_t k = 0; k < p->outer; ++k) {
        for (int32_t i = 0; i < p->count; ++i) {
            const size_t n = (size_t)p->copy[i] * elem;
            memcpy(out, in[i] + (size_t)k * n, n);
            out += n;
        }
    }
}

#define MM_CONCAT(NAME, T)                                                                                   \
    void NAME(const mm_concat_params *p, T *out, ...)                                                        \
    {                                                                                                        \
        const uint8_t *in[MM_CONCAT_MAX_INPUTS];                                                             \
        va_list ap;                                                                                          \
        va_start(ap, out);                                                                                   \
        for (int32_t i = 0; i < p->count && i < MM_CONCAT_MAX_INPUTS; ++i)                                   \
            in[i] = (const uint8_t *)va_arg(ap, T *);                                                        \
        va_end(ap);                                                                                          \
        mm_concat_bytes(p, (uint8_t *)out, in, sizeof(T));                                                   \
    }

MM_CONCAT(mm_concatenation_s8, int8_t)
MM_CONCAT(mm_concatenation_s16, int16_t)
MM_CONCAT(mm_concatenation_s32, int32_t)
MM_CONCAT(mm_concatenation_s64, int64_t)
MM_CONCAT(mm_concatenation_f32, float)
MM_CONCAT(mm_concatenation_u8, uint8_t)

/* Rows along the innermost dim: a row is all padding when any outer index
 * falls into a padded band, otherwise left pad + input row + right pad. */
#define MM_PAD(NAME, T)                                                                                      \
    void NAME(const mm_pad_params *p, const T *in, T *out, T value)                                          \
    {                                                                                                        \
        const int32_t *id = p->in_dims, *l = p->left, *od = p->out_dims;                                     \
        const int32_t w = od[4], iw = id[4], lw = l[4];                                                      \
        for (int32_t a = 0; a < od[0]; ++a)                                                                  \
            for (int32_t b = 0; b < od[1]; ++b)                                                              \
                for (int32_t c = 0; c < od[2]; ++c)                                                          \
                    for (int32_t d = 0; d < od[3]; ++d) {                                                    \
                        const int32_t ia = a - l[0], ib = b - l[1], ic = c - l[2], idd = d - l[3];           \
                        if (ia < 0 || ia >= id[0] || ib < 0 || ib >= id[1] || ic < 0 || ic >= id[2] ||       \
                            idd < 0 || idd >= id[3]) {                                                       \
                            for (int32_t x = 0; x < w; ++x) *out++ = value;                                  \
                            continue;                                                                        \
                        }                                                                                    \
                        const T *row =                                                                       \
                            in + (((size_t)ia * id[1] + ib) * id[2] + ic) * id[3] * iw + (size_t)idd * iw;   \
                        for (int32_t x = 0; x < lw; ++x) *out++ = value;                                     \
                        memcpy(out, row, (size_t)iw * sizeof(T));                                            \
                        out += iw;                                                                           \
                        for (int32_t x = lw + iw; x < w; ++x) *out++ = value;                                \
                    }                                                                                        \
    }

MM_PAD(mm_pad_s8, int8_t)
MM_PAD(mm_pad_s16, int16_t)
MM_PAD(mm_pad_s32, int32_t)
MM_PAD(mm_pad_f32, float)
