"""DEPTHWISE_CONV_2D lowering (int8, int16x8, float32); shared geometry and
bit-exactness notes in conv.py."""
import numpy as np

from ..lowering import SCRATCH, Call, lowers, unsupported
from .common import fused_range, kernel_suffix
from .conv import _SAME, _bias_data, _check_4d, _check_types, _f32_bias, _fold, _int32, _quant_common, tflm_padding


# -------------------------------------------------------- DEPTHWISE_CONV_2D
@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise_conv_2d(op, ctx):
    from .hybrid import is_hybrid, lower_depthwise_conv_2d_hybrid
    if is_hybrid(op):
        return lower_depthwise_conv_2d_hybrid(op, ctx)
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    sfx = kernel_suffix(op, inp)
    _check_4d(op, inp, weights, out)
    _check_types(op, inp, weights, out)
    batches, in_h, in_w, in_c = inp.shape
    one, k_h, k_w, out_c = weights.shape
    _, out_h, out_w, out_c2 = out.shape
    if one != 1 or out_c2 != out_c or out.shape[0] != batches:
        raise unsupported(op, f"filter {weights.shape} does not match output {out.shape}")
    o = op.options
    dm = int(o.get("depth_multiplier", 1))
    if dm <= 0 or in_c * dm != out_c:
        raise unsupported(op, f"depth_multiplier {dm} with {in_c} input and {out_c} output channels")
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    d_h, d_w = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    padding = int(o.get("padding", _SAME))
    geom = dict(batches=batches, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                depth_mult=dm, k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, dil_h=d_h, dil_w=d_w,
                pad_h=tflm_padding(op, padding, s_h, d_h, in_h, k_h),
                pad_w=tflm_padding(op, padding, s_w, d_w, in_w, k_w))
    macs = batches * out_h * out_w * out_c * k_h * k_w
    acc_bytes = {"s8": 4, "s16": 8, "f32": 4}[sfx]
    scratch = out_c * acc_bytes  # = mm_depthwise_conv_<sfx>_get_buffer_size()
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(f"{op.name}_p", "mm_dwconv_f32_params", dict(
            geom, act_min=act_min, act_max=act_max, bias=_f32_bias(op, ctx, bias, out_c)))
        return Call("mm_depthwise_conv_f32", [params, inp, ctx.weights(weights), out, SCRATCH],
                    "mm_depthwise_conv.h", scratch_bytes=scratch, macs=macs)

    in_zp, out_zp, q = _quant_common(op, ctx, inp, weights, out, out_c)
    if sfx == "s8":
        b = _bias_data(op, bias, out_c, ("int32",))
        w = weights.data.reshape(k_h * k_w, out_c).T          # (channel, taps)
        fields = dict(geom, input_offset=-in_zp, output_offset=out_zp, **q,
                      bias=ctx.array(f"{op.name}_bias", _int32(b)),
                      bias_folded=ctx.array(f"{op.name}_bias_f", _fold(b, w, -in_zp)),
                      bias64="NULL")
    else:
        b = _bias_data(op, bias, out_c, ("int64",))   # TFLM reads the int16 bias as int64
        fields = dict(geom, input_offset=0, output_offset=0, **q, bias="NULL", bias_folded="NULL",
                      bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)))
    params = ctx.struct(f"{op.name}_p", "mm_dwconv_params", fields)
    return Call(f"mm_depthwise_conv_{sfx}", [params, inp, ctx.weights(weights), out, SCRATCH],
                "mm_depthwise_conv.h", scratch_bytes=scratch, macs=macs)
