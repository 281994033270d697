"""TRANSPOSE_CONV lowering (int8, int16x8, float32); bit-exactness notes in conv.py."""

import numpy as np

from mcu_mot.codegen.analysis import (
    TRANSPOSE_CONV_FIELDS,
    bias_values,
    conv_quant,
    fold_bias,
    fused_range,
    geometry_fields,
    transpose_conv_geometry,
)
from mcu_mot.codegen.lowering import Call, lowers
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.codegen.ops.conv import check_types, f32_bias, int16x8_fields, quant_fields
from mcu_mot.ir.quantize import wrap_int32


# ------------------------------------------------------------ TRANSPOSE_CONV
@lowers("TRANSPOSE_CONV")
def lower_transpose_conv(op, ctx):
    # inputs: output_shape, weights, input, [bias]
    g = transpose_conv_geometry(op)
    weights, inp = op.inputs[1], op.inputs[2]
    bias = op.inputs[3] if len(op.inputs) > 3 else None
    out = op.outputs[0]
    sfx = kernel_suffix(op, inp)
    check_types(op, inp, weights, out)
    out_c, s_h, s_w = g.out_c, g.stride_h, g.stride_w
    geom = geometry_fields(g, TRANSPOSE_CONV_FIELDS)
    macs = g.macs
    # The kernels gather per output pixel, so TFLM's output-sized accumulator
    # buffer is not needed (scratch_bytes = 0).
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(
            f"{op.name}_p",
            "mm_tconv_f32_params",
            dict(geom, act_min=act_min, act_max=act_max, bias=f32_bias(op, ctx, bias, out_c)),
        )
        return Call("mm_transpose_conv_f32", [params, inp, ctx.weights(weights), out], "mm_transpose_conv.h", macs=macs)

    qa = conv_quant(op, inp, weights, out, out_c)
    q = quant_fields(op, ctx, qa)
    if sfx == "s8":
        b = bias_values(op, bias, out_c, ("int32",))
        w = weights.data.astype(np.int64)
        phases = [fold_bias(b, w[:, py::s_h, px::s_w, :], qa.input_offset) for py in range(s_h) for px in range(s_w)]
        fields = dict(
            geom,
            input_offset=qa.input_offset,
            output_offset=qa.output_zp,
            **q,
            bias=ctx.array(f"{op.name}_bias", wrap_int32(b)),
            bias_folded=ctx.array(f"{op.name}_bias_f", np.concatenate(phases).astype(np.int32)),
            bias64="NULL",
        )
    else:
        # int64 bias is used as is, int16 bias is widened (as TFLM does at run time);
        # an int32 bias would be misread as int64 by TFLM.
        b = bias_values(op, bias, out_c, ("int64", "int16"))
        fields = int16x8_fields(op, ctx, geom, q, b)
    params = ctx.struct(f"{op.name}_p", "mm_tconv_params", fields)
    return Call(f"mm_transpose_conv_{sfx}", [params, inp, ctx.weights(weights), out], "mm_transpose_conv.h", macs=macs)
