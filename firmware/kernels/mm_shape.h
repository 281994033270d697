/* mm_shape.h - CONCATENATION and PAD / PADV2: pure data movement, any dtype.
 *
 * TFLM concatenates without rescaling (it requires matching int8
 * quantization), so the kernels are copies. The element type only matters for
 * the pad value; the suffix names the element type (s8, s16, s32, s64, f32, u8).
 */
#ifndef MM_SHAPE_H
#define MM_SHAPE_H
#include "mm_math.h"

#define MM_CONCAT_MAX_INPUTS 10
#define MM_PAD_DIMS          5

typedef struct {
    int32_t outer;                      /* product of the dims before the axis */
    int32_t count;                      /* number of inputs */
    int32_t copy[MM_CONCAT_MAX_INPUTS]; /* elements per outer step, per input */
} mm_concat_params;

/* Inputs follow `out` as `count` pointers of the element type (T *). */
void mm_concatenation_s8(const mm_concat_params *p, int8_t *out, ...);
void mm_concatenation_s16(const mm_concat_params *p, int16_t *out, ...);
void mm_concatenation_s32(const mm_concat_params *p, int32_t *out, ...);
void mm_concatenation_s64(const mm_concat_params *p, int64_t *out, ...);
void mm_concatenation_f32(const mm_concat_params *p, float *out, ...);
void mm_concatenation_u8(const mm_concat_params *p, uint8_t *out, ...);

typedef struct {
    int32_t in_dims[MM_PAD_DIMS];  /* input shape, front-padded with 1s */
    int32_t left[MM_PAD_DIMS];     /* padding before each dim */
    int32_t out_dims[MM_PAD_DIMS]; /* output shape */
} mm_pad_params;

void mm_pad_s8(const mm_pad_params *p, const int8_t *in, int8_t *out, int8_t value);
void mm_pad_s16(const mm_pad_params *p, const int16_t *in, int16_t *out, int16_t value);
void mm_pad_s32(const mm_pad_params *p, const int32_t *in, int32_t *out, int32_t value);
void mm_pad_f32(const mm_pad_params *p, const float *in, float *out, float value);

#endif
