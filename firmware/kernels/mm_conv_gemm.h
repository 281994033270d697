/* mm_conv_gemm.h - CONV_2D (groups 1) as patch x weight-row dot products, for
 * cores with DSP (Cortex-M4/M7/M33) or Helium (Cortex-M55).
 *
 * For two output pixels at a time the kernel gathers each pixel's receptive
 * field (k_h x k_w x in_c values, the "patch") into scratch, then runs every
 * output channel's weight row over both patches. Taps outside the image are
 * written as the value that contributes nothing, so every window is the same
 * straight dot product:
 *  - DSP: patches are int16 (int8 input + input_offset, 0 for padding); the
 *    weight rows are int8, padded to k_pad = k rounded up to 4 and with the
 *    bytes of each group of 4 stored as w0 w2 w1 w3, so that SXTB16 of a
 *    word gives the pair (w0, w1) and SXTB16 ROR 8 gives (w2, w3), lined up
 *    with the patch pairs: 2 pixels x 2 channels in registers, 16 MACs per
 *    16 instructions, no flash cost beyond the padding.
 *  - MVE: patches stay int8 (padding = the input zero point, whose
 *    correction input_offset * sum(w) is folded into the bias), rows padded
 *    to 16 in natural order; VMLADAVA does 16 MACs per instruction.
 * int16x8 uses the same layouts with int16 patches (no offset, as TFLM).
 *
 * Pixels are computed in raster order two at a time (Call raster_block=2).
 */
#ifndef MM_CONV_GEMM_H
#define MM_CONV_GEMM_H
#include "mm_math.h"
#include "mm_isa.h"

typedef struct {
    int32_t batches;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
    int32_t k;             /* k_h * k_w * in_c */
    int32_t k_pad;         /* weight row length: k rounded up to 4 (DSP) or 16 (MVE) */
    int32_t input_offset;  /* -input zero point (int8) */
    int32_t output_offset; /* output zero point (int8) */
    int32_t act_min, act_max;
    const int32_t *bias;   /* int8: DSP raw bias, MVE bias + input_offset*sum(w); int16: int32 bias or NULL */
    const int64_t *bias64; /* int16 with a 64-bit accumulator, else NULL */
    const int32_t *multiplier, *shift;
    /* int16x8, or NULL: per channel R << (32 - T) for SMMULR / VRMULH(acc + bias, rq),
     * TFLM's (x * R + 2^(T-1)) >> T where the compiler proved acc + bias fits int32
     * (bias is then int32, both padded to channel quads).
     * DSP int8, or NULL: per channel {M, C, E} for the 4-instruction exact
     * requantization out = (SMMLAR(2acc, M, C) + (2acc >> 31)) >> E, with
     * C = 2^(E-1) + zp * 2^E, E = -shift; the compiler sets it only where it proved
     * every shift <= -1, M >= 0 and |2acc| < 2^30 (then it equals TFLM's
     * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, M), E) + zp). */
    const int32_t *rq;
} mm_conv_gemm_params;

/* Scratch (docs/kernels.md, "Scratch contract"): two patches of k_pad values, k_pad =
 * k_h * k_w * in_c rounded up to 4 (DSP) or 16 (MVE); int16 values, int8 for int8 models
 * on MVE. _get_buffer_size: bytes at the level this file is compiled for (MM_TARGET_ISA);
 * _isa: at level `isa` (MM_ISA_*), -1 at plain (no such kernel). Plain arithmetic. */
int32_t mm_conv_gemm_s8_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w);
int32_t mm_conv_gemm_s8_get_buffer_size_isa(int32_t isa, int32_t in_c, int32_t k_h, int32_t k_w);
int32_t mm_conv_gemm_s16_get_buffer_size(int32_t in_c, int32_t k_h, int32_t k_w);
int32_t mm_conv_gemm_s16_get_buffer_size_isa(int32_t isa, int32_t in_c, int32_t k_h, int32_t k_w);

void mm_conv_gemm_s8(const mm_conv_gemm_params *p, const int8_t *in, const int8_t *w, int8_t *out,
                     void *scratch);
void mm_conv_gemm_s16(const mm_conv_gemm_params *p, const int16_t *in, const int8_t *w, int16_t *out,
                      void *scratch);

#endif
