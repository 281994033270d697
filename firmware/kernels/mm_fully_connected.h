/* mm_fully_connected.h - FULLY_CONNECTED kernels (int8, int16x8, float32).
 *
 * Zero-point corrections are folded into `bias` at compile time
 * (bias[c] + input_offset * sum(w[c,:])), so the inner loop is a plain dot product.
 *
 * The _blocked kernels (symmetric weights, DSP and Helium targets) read a weight
 * layout the compiler builds for the target ISA (codegen/ops/fully_connected.py, fc_blocked_layout):
 * output rows in blocks of 4, each block stored group by group (G input
 * columns of row 0, of row 1, of row 2, of row 3, then the next G columns), so
 * one pointer walks 4 rows and every input load serves 4 rows; the rows left
 * over (out_depth % 4) follow as blocks of one row.
 *   dsp int8:  G = 4, bytes as they are; the in_depth % 4 tail columns of a
 *              block follow its groups, row by row.
 *   dsp int16: G = 4, bytes of each group stored [w0 w2 w1 w3] so that SXTB16
 *              yields the pairs (w0,w1) (w2,w3) matching the int16 input.
 *   mve int8:  G = 16, mve int16: G = 8; the last group of a row is zero-padded.
 * Flash cost: none for dsp; at most G-1 bytes per output row for mve.
 */
#ifndef MM_FULLY_CONNECTED_H
#define MM_FULLY_CONNECTED_H
#include "mm_math.h"
#include "mm_isa.h"

typedef struct {
    int32_t batches, in_depth, out_depth;
    int32_t input_offset;  /* -input zero point (only used when filter_offset != 0) */
    int32_t filter_offset; /* -filter zero point, 0 for symmetric weights */
    int32_t output_offset;
    int32_t act_min, act_max;
    const int32_t *bias;               /* folded bias, out_depth entries (int8) */
    const int64_t *bias64;             /* folded bias for int16x8 */
    const int32_t *multiplier, *shift; /* per output channel */
} mm_fc_params;

typedef struct {
    int32_t batches, in_depth, out_depth;
    float act_min, act_max;
    const float *bias; /* may be NULL */
} mm_fc_f32_params;

void mm_fully_connected_s8(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out);
void mm_fully_connected_s16(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out);
void mm_fully_connected_f32(const mm_fc_f32_params *p, const float *in, const float *w, float *out);
/* the blocked layout, DSP and Helium targets only */
void mm_fully_connected_blocked_s8(const mm_fc_params *p, const int8_t *in, const int8_t *w, int8_t *out);
void mm_fully_connected_blocked_s16(const mm_fc_params *p, const int16_t *in, const int8_t *w, int16_t *out);

#endif
