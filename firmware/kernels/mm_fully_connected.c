/* mm_fully_connected.c - portable FULLY_CONNECTED kernels. */
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
