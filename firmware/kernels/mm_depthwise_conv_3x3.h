/* mm_depthwise_conv_3x3.h - DEPTHWISE_CONV_2D 3x3, depth multiplier 1, any
 * stride / dilation / padding, int8 and int16x8, for DSP (Cortex-M4/M7/M33)
 * and Helium (Cortex-M55) targets. NHWC, one output pixel at a time in
 * raster order (raster_block 1), four channels at a time.
 *
 * Border taps: every tap reads through a pointer table that points either
 * into the image or into a pad row (scratch) filled with the input zero point
 * (int8) or with zeros (int16). A zero-point tap adds w * zp, which cancels
 * the input_offset * w part of the folded bias, so every window starts from
 * the same folded bias and runs the same code.
 *
 * Weight layout (built by the compiler, ops/depthwise.py), per group of four
 * channels c0..c3 and per filter row r, six int32 words holding int16 pairs:
 *   DSP int8 / int16:  [w(r,0,c0) | w(r,1,c0)<<16], same for c1, c2, c3,
 *                      then the third column: int8 [c0|c2], [c1|c3]
 *                      (the lanes SXTB16 produces), int16 [c0|c1], [c2|c3].
 *   MVE int8 (fast rq): groups of 8 channels, see mm_depthwise_conv_3x3.c; the
 *                      pad row is then in_c rounded up to 8.
 * Channels past in_c in the last group have zero weights.
 *
 * int8 requantization (rq):
 *   fast (kernel mm_depthwise_conv_3x3_s8): every channel has shift <= -1 and
 *     the compiler proved |2*acc| < 2^30; weights and bias are stored doubled
 *     and per group rq holds M[4], C[4], E[4] with C = 2^(E-1) + zp * 2^E:
 *       out = (SMMLAR(2acc, M, C) + (2acc >> 31)) >> E
 *     which equals TFLM's RoundingDivideByPOT(SRDHM(acc, M), E) + zp exactly.
 *   exact (kernel mm_depthwise_conv_3x3_s8_q): multiplier / shift per channel,
 *     mm_requantize.
 * int16x8 requantization: TFLM's single rounding (x * R + 2^(T-1)) >> T with
 *   R the 16-bit reduced multiplier, T = 15 - shift. Kernel _s16 when x =
 *   bias + acc provably fits int32 and 16 <= T <= 32: SMMULR(x, R << (32 - T)),
 *   bias as int32 in `bias`, R << (32 - T) in `rq`. Kernel _s16_q otherwise:
 *   int64 bias64, mm_requantize_s64.
 */
#ifndef MM_DEPTHWISE_CONV_3X3_H
#define MM_DEPTHWISE_CONV_3X3_H
#include "mm_math.h"
#include "mm_isa.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t input_zp;      /* int8: pad value (the input zero point); int16: 0 */
    int32_t output_offset; /* int8 only */
    int32_t act_min, act_max;
    const int32_t *w;      /* packed weights, in_c rounded up to 4 */
    const int32_t *bias;   /* int8: folded bias (doubled for the fast rq), 4-padded */
    const int64_t *bias64; /* int16 */
    const int32_t *rq;     /* fast int8 rq: per group M[4], C[4], E[4] */
    const int32_t *multiplier, *shift;
} mm_dw3x3_params;

/* Scratch (docs/kernels.md, "Scratch contract"): the pad row, which the kernel fills
 * for in_c rounded up to 4 elements (DSP code, also the _q and int16 kernels on MVE) or
 * to 8 (the Helium int8 kernel mm_depthwise_conv_3x3_s8 on MVE). _get_buffer_size: bytes
 * at the level this file is compiled for (MM_TARGET_ISA); _isa: at level `isa`
 * (MM_ISA_*), -1 at plain (no such kernel). Plain arithmetic, no intrinsics. */
int32_t mm_depthwise_conv_3x3_s8_get_buffer_size(int32_t in_c);
int32_t mm_depthwise_conv_3x3_s8_get_buffer_size_isa(int32_t isa, int32_t in_c);
int32_t mm_depthwise_conv_3x3_s8_q_get_buffer_size(int32_t in_c);
int32_t mm_depthwise_conv_3x3_s8_q_get_buffer_size_isa(int32_t isa, int32_t in_c);
int32_t mm_depthwise_conv_3x3_s16_get_buffer_size(int32_t in_c);
int32_t mm_depthwise_conv_3x3_s16_get_buffer_size_isa(int32_t isa, int32_t in_c);
int32_t mm_depthwise_conv_3x3_s16_q_get_buffer_size(int32_t in_c);
int32_t mm_depthwise_conv_3x3_s16_q_get_buffer_size_isa(int32_t isa, int32_t in_c);

void mm_depthwise_conv_3x3_s8(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch);
void mm_depthwise_conv_3x3_s8_q(const mm_dw3x3_params *p, const int8_t *in, int8_t *out, void *scratch);
void mm_depthwise_conv_3x3_s16(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch);
void mm_depthwise_conv_3x3_s16_q(const mm_dw3x3_params *p, const int16_t *in, int16_t *out, void *scratch);

#endif
