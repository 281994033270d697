"""CONV_2D lowering (int8, int16x8, float32) and what the convolution lowerings share;
DEPTHWISE_CONV_2D is in depthwise_conv.py (3x3: depthwise_conv_3x3.py), TRANSPOSE_CONV in
transpose_conv.py, the DSP / Helium CONV_2D in conv_gemm.py.

Bit-exactness notes (TFLite Micro reference kernels):
- taps outside the input are skipped, so the int8 input zero-point correction
  input_offset * sum(w) is only constant for windows lying fully inside the
  image; it is folded into `bias_folded` for those, and the kernels add the
  offset tap by tap on clipped windows (exact in wrap-around int32);
- the filter zero point is ignored (symmetric weights), and int16 kernels
  ignore the input and output zero points as TFLM does;
- int16 CONV_2D accumulates in int32 when the bias is int32 (or absent with
  quantized_bias_type INT32), else in int64; DEPTHWISE and TRANSPOSE int16
  always use int64 (TRANSPOSE widens an int16 bias);
- padding follows TFLM's ComputePaddingHeightWidth (the conv output size is
  recomputed from the padding type; offset ignored); TRANSPOSE_CONV computes
  it with the output as the "image".
"""

import numpy as np

from mcu_mot.codegen.analysis import (
    CONV_FIELDS,
    ConvQuant,
    bias_values,
    conv_geometry,
    conv_quant,
    fold_bias,
    fused_range,
    geometry_fields,
    weighted_operands,
)
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.codegen.ops.conv_gemm import lower_conv_gemm
from mcu_mot.codegen.ops.hybrid import is_hybrid, lower_conv_2d_hybrid
from mcu_mot.ir.quantize import wrap_int32

_SCHEMA_INT32 = 2  # tflite TensorType.INT32 in quantized_bias_type


def check_types(op, inp, weights, out):
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} and output {out.dtype} differ")
    if not weights.is_const:
        raise unsupported(op, f"non-constant weights '{weights.name}'")
    want = "float32" if inp.dtype == "float32" else "int8"
    if weights.dtype != want:
        raise unsupported(op, f"{weights.dtype} weights with {inp.dtype} activations")


def f32_bias(op, ctx, bias, channels):
    if bias is None:
        return "NULL"
    if not bias.is_const or bias.dtype != "float32" or bias.size != channels:
        raise unsupported(op, f"bias '{bias.name}' ({bias.dtype}, {bias.size} values)")
    return ctx.weights(bias)


def int16x8_fields(op, ctx, geom: dict, q: dict, bias) -> dict:
    """The fields of an int16x8 kernel: zero points 0, no 32-bit bias, the bias as int64."""
    return dict(
        geom,
        input_offset=0,
        output_offset=0,
        **q,
        bias="NULL",
        bias_folded="NULL",
        bias64=ctx.array(f"{op.name}_bias", bias.astype(np.int64)),
    )


def quant_fields(op, ctx, q: ConvQuant) -> dict:
    """The fields shared by the quantized kernels: activation range, multiplier/shift arrays."""
    return dict(
        act_min=q.act_min,
        act_max=q.act_max,
        multiplier=ctx.array(f"{op.name}_mult", q.multiplier),
        shift=ctx.array(f"{op.name}_shift", q.shift),
    )


# ------------------------------------------------------------------ CONV_2D
@lowers("CONV_2D")
def lower_conv_2d(op, ctx):
    if is_hybrid(op):  # dynamic-range: float activations, int8 weights
        return lower_conv_2d_hybrid(op, ctx)
    inp, weights, bias, out = weighted_operands(op)
    sfx = kernel_suffix(op, inp)
    g = conv_geometry(op)
    check_types(op, inp, weights, out)
    out_c, o = g.out_c, op.options
    geom = geometry_fields(g, CONV_FIELDS)
    macs = g.macs
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(
            f"{op.name}_p",
            "mm_conv_f32_params",
            dict(geom, act_min=act_min, act_max=act_max, bias=f32_bias(op, ctx, bias, out_c)),
        )
        return Call("mm_conv_f32", [params, inp, ctx.weights(weights), out], "mm_conv.h", macs=macs)

    qa = conv_quant(op, inp, weights, out, out_c)
    q = quant_fields(op, ctx, qa)
    w = weights.data.reshape(out_c, -1)
    gemm = ctx.dsp and g.groups == 1  # DSP / Helium: patch x weight-row kernel (conv_gemm.py)
    if sfx == "s8":
        b = bias_values(op, bias, out_c, ("int32",))
        folded = fold_bias(b, w, qa.input_offset)
        # the Helium kernel pads windows with the zero point: the folded bias is its only bias
        raw = folded if (gemm and ctx.mve) else wrap_int32(b)
        fields = dict(
            geom,
            input_offset=qa.input_offset,
            output_offset=qa.output_zp,
            **q,
            bias=ctx.array(f"{op.name}_bias", raw),
            bias_folded="NULL" if gemm else ctx.array(f"{op.name}_bias_f", folded),
            bias64="NULL",
        )
    else:
        b = bias_values(op, bias, out_c, ("int32", "int64"))
        acc32 = (bias.dtype == "int32") if bias is not None else int(o.get("quantized_bias_type", 0)) == _SCHEMA_INT32
        fields = dict(geom, input_offset=0, output_offset=0, **q, bias_folded="NULL")
        if acc32:
            fields.update(bias=ctx.array(f"{op.name}_bias", wrap_int32(b)), bias64="NULL")
        else:
            fields.update(bias="NULL", bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)))
    if gemm:
        return lower_conv_gemm(op, ctx, g, qa, sfx, weights, b, fields)
    params = ctx.struct(f"{op.name}_p", "mm_conv_params", fields)
    return Call(f"mm_conv_{sfx}", [params, inp, ctx.weights(weights), out], "mm_conv.h", macs=macs)
