/* mm_elementwise.h - binary elementwise kernels: ADD, SUB, MUL (int8, int16, float32).
 *
 * Broadcasting is resolved at compile time into a loop nest (mm_broadcast):
 * dimensions are merged wherever the memory layout allows, so a broadcast op
 * runs as a few long rows. Same-shape operands use bcast == NULL (one flat row).
 *
 * Quantized ADD/SUB follow TFLM's general rescaling path: both inputs are moved
 * to a common scale (left_shift 20 for int8, 15 for int16, then a multiplier
 * below one), added or subtracted in int32, and rescaled to the output.
 */
#ifndef MM_ELEMENTWISE_H
#define MM_ELEMENTWISE_H
#include "mm_math.h"

#define MM_BCAST_MAX_DIMS 8

typedef struct {
    int32_t ndims;                       /* loops after merging, outermost first */
    int32_t shape[MM_BCAST_MAX_DIMS];    /* output extent of each loop */
    int32_t a_stride[MM_BCAST_MAX_DIMS]; /* input 1 step per loop, in elements (0: broadcast) */
    int32_t b_stride[MM_BCAST_MAX_DIMS]; /* input 2 step per loop */
} mm_broadcast;

typedef struct {
    int32_t size;                         /* output elements */
    const mm_broadcast *bcast;            /* NULL when both inputs have the output's shape */
    int32_t input1_offset, input2_offset; /* -zero points */
    int32_t output_offset;
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift; /* shifts <= 0 */
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mm_add_params; /* ADD and SUB */

typedef struct {
    int32_t size;
    const mm_broadcast *bcast;
    int32_t input1_offset, input2_offset; /* -zero points */
    int32_t output_offset;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mm_mul_params;

typedef struct {
    int32_t size;
    const mm_broadcast *bcast;
    float act_min, act_max;
} mm_elementwise_f32_params; /* float ADD, SUB, MUL */

void mm_add_s8(const mm_add_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void mm_add_s16(const mm_add_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void mm_sub_s8(const mm_add_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void mm_sub_s16(const mm_add_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void mm_mul_s8(const mm_mul_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void mm_mul_s16(const mm_mul_params *p, const int16_t *a, const int16_t *b, int16_t *out);
void mm_add_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out);
void mm_sub_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out);
void mm_mul_f32(const mm_elementwise_f32_params *p, const float *a, const float *b, float *out);

#endif
