/* mm_batch_space.h - SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND (4-D NHWC), any element size.
 * Keras 3 lowers dilated convolutions to SPACE_TO_BATCH -> CONV -> BATCH_TO_SPACE. */
#ifndef MM_BATCH_SPACE_H
#define MM_BATCH_SPACE_H
#include "mm_math.h"

typedef struct {
    int32_t in_b, in_h, in_w;    /* input batch and spatial size */
    int32_t out_b, out_h, out_w; /* output batch and spatial size */
    int32_t block_h, block_w;
    int32_t pad_top, pad_left; /* space_to_batch: leading padding; batch_to_space: leading crop */
    int32_t pixel_bytes;       /* channels * element size */
    int32_t pad_byte;          /* space_to_batch fill: the int8 zero point, else 0 */
} mm_batch_space_params;

void mm_space_to_batch(const mm_batch_space_params *p, const void *in, void *out);
void mm_batch_to_space(const mm_batch_space_params *p, const void *in, void *out);

#endif
