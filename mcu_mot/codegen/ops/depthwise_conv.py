"""DEPTHWISE_CONV_2D lowering (int8, int16x8, float32); 3x3 layers with depth multiplier 1
on DSP / Helium cores go to depthwise_conv_3x3.py; bit-exactness notes in conv.py."""

from mcu_mot.codegen.analysis import (
    DEPTHWISE_FIELDS,
    bias_values,
    conv_quant,
    depthwise_geometry,
    fold_bias,
    fused_range,
    geometry_fields,
    weighted_operands,
)
from mcu_mot.codegen.lowering import SCRATCH, Call, lowers, scratch_size
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.codegen.ops.conv import check_types, f32_bias, int16x8_fields, quant_fields
from mcu_mot.codegen.ops.depthwise_conv_3x3 import lower_dw3x3
from mcu_mot.codegen.ops.hybrid import is_hybrid, lower_depthwise_conv_2d_hybrid
from mcu_mot.ir.quantize import wrap_int32


# -------------------------------------------------------- DEPTHWISE_CONV_2D
# ------------------------------------------------ scratch (docs/kernels.md)
@scratch_size("mm_depthwise_conv_s8", ("out_c",))
def depthwise_s8_scratch(isa: str, out_c: int) -> int:
    return 4 * out_c  # int32 accumulator per output channel


@scratch_size("mm_depthwise_conv_s16", ("out_c",))
def depthwise_s16_scratch(isa: str, out_c: int) -> int:
    return 8 * out_c  # int64


@scratch_size("mm_depthwise_conv_f32", ("out_c",))
def depthwise_f32_scratch(isa: str, out_c: int) -> int:
    return 4 * out_c  # float


@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise_conv_2d(op, ctx):
    if is_hybrid(op):
        return lower_depthwise_conv_2d_hybrid(op, ctx)
    inp, weights, bias, out = weighted_operands(op)
    sfx = kernel_suffix(op, inp)
    g = depthwise_geometry(op)
    check_types(op, inp, weights, out)
    out_c, k_h, k_w, dm = g.out_c, g.k_h, g.k_w, g.depth_mult
    geom = geometry_fields(g, DEPTHWISE_FIELDS)
    macs = g.macs
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(
            f"{op.name}_p",
            "mm_dwconv_f32_params",
            dict(geom, act_min=act_min, act_max=act_max, bias=f32_bias(op, ctx, bias, out_c)),
        )
        return Call(
            "mm_depthwise_conv_f32",
            [params, inp, ctx.weights(weights), out, SCRATCH],
            "mm_depthwise_conv.h",
            scratch_shape=dict(out_c=out_c),
            macs=macs,
        )

    if ctx.dsp and k_h == 3 and k_w == 3 and dm == 1:
        return lower_dw3x3(op, ctx, sfx, g, inp, weights, bias, out)
    qa = conv_quant(op, inp, weights, out, out_c)
    q = quant_fields(op, ctx, qa)
    if sfx == "s8":
        b = bias_values(op, bias, out_c, ("int32",))
        w = weights.data.reshape(k_h * k_w, out_c).T  # (channel, taps)
        fields = dict(
            geom,
            input_offset=qa.input_offset,
            output_offset=qa.output_zp,
            **q,
            bias=ctx.array(f"{op.name}_bias", wrap_int32(b)),
            bias_folded=ctx.array(f"{op.name}_bias_f", fold_bias(b, w, qa.input_offset)),
            bias64="NULL",
        )
    else:
        b = bias_values(op, bias, out_c, ("int64",))  # TFLM reads the int16 bias as int64
        fields = int16x8_fields(op, ctx, geom, q, b)
    params = ctx.struct(f"{op.name}_p", "mm_dwconv_params", fields)
    return Call(
        f"mm_depthwise_conv_{sfx}",
        [params, inp, ctx.weights(weights), out, SCRATCH],
        "mm_depthwise_conv.h",
        scratch_shape=dict(out_c=out_c),
        macs=macs,
    )
