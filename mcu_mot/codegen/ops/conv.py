"""CONV_2D and TRANSPOSE_CONV lowerings (int8, int16x8, float32); DEPTHWISE_CONV_2D is in depthwise.py.

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

from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import _SAME, channel_multipliers, fused_range, kernel_suffix, qparams, tflm_padding

_SCHEMA_INT32 = 2  # tflite TensorType.INT32 in quantized_bias_type




def _check_4d(op, *tensors):
    for t in tensors:
        if len(t.shape) != 4:
            raise unsupported(op, f"tensor '{t.name}' has shape {t.shape}, expected 4-D NHWC")


def _check_types(op, inp, weights, out):
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} and output {out.dtype} differ")
    if not weights.is_const:
        raise unsupported(op, f"non-constant weights '{weights.name}'")
    want = "float32" if inp.dtype == "float32" else "int8"
    if weights.dtype != want:
        raise unsupported(op, f"{weights.dtype} weights with {inp.dtype} activations")


def _int32(values) -> np.ndarray:
    v = np.asarray(values, np.int64)
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _fold(bias: np.ndarray, w_by_channel: np.ndarray, input_offset: int) -> np.ndarray:
    """bias[c] + input_offset * sum(w[c, ...]) in wrap-around int32, as the device adds it."""
    sums = w_by_channel.reshape(w_by_channel.shape[0], -1).astype(np.int64).sum(axis=1)
    return _int32(bias + input_offset * sums)


def _bias_data(op, bias, channels: int, allowed: tuple) -> np.ndarray:
    """Bias as int64 (zeros if absent); rejects bias dtypes the TFLM kernel would misread."""
    if bias is None:
        return np.zeros(channels, np.int64)
    if not bias.is_const:
        raise unsupported(op, f"non-constant bias '{bias.name}'")
    if bias.dtype not in allowed:
        raise unsupported(op, f"{bias.dtype} bias '{bias.name}' (TFLM expects {'/'.join(allowed)})")
    if bias.size != channels:
        raise unsupported(op, f"bias '{bias.name}' has {bias.size} values for {channels} channels")
    return bias.data.astype(np.int64).ravel()


def _f32_bias(op, ctx, bias, channels):
    if bias is None:
        return "NULL"
    if not bias.is_const or bias.dtype != "float32" or bias.size != channels:
        raise unsupported(op, f"bias '{bias.name}' ({bias.dtype}, {bias.size} values)")
    return ctx.weights(bias)


def _quant_common(op, ctx, inp, weights, out, channels):
    """Fields shared by the quantized kernels: offsets, activation range, multipliers."""
    if inp.quant is None or out.quant is None or weights.quant is None:
        raise unsupported(op, "missing quantization parameters")
    if weights.quant.scale.size not in (1, channels):
        raise unsupported(op, f"weights '{weights.name}' have {weights.quant.scale.size} scales "
                              f"for {channels} output channels")
    _, in_zp = qparams(op, inp)
    _, out_zp = qparams(op, out)
    act_min, act_max = fused_range(op, out)
    mult, shift = channel_multipliers(op, inp, weights, out, channels)
    return in_zp, out_zp, dict(act_min=act_min, act_max=act_max,
                               multiplier=ctx.array(f"{op.name}_mult", mult),
                               shift=ctx.array(f"{op.name}_shift", shift))


# ------------------------------------------------------------------ CONV_2D
@lowers("CONV_2D")
def lower_conv_2d(op, ctx):
    from mcu_mot.codegen.ops.hybrid import is_hybrid, lower_conv_2d_hybrid
    if is_hybrid(op):  # dynamic-range: float activations, int8 weights
        return lower_conv_2d_hybrid(op, ctx)
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    sfx = kernel_suffix(op, inp)
    _check_4d(op, inp, weights, out)
    _check_types(op, inp, weights, out)
    batches, in_h, in_w, in_c = inp.shape
    out_c, k_h, k_w, k_c = weights.shape
    _, out_h, out_w, out_c2 = out.shape
    if out_c2 != out_c or out.shape[0] != batches:
        raise unsupported(op, f"output shape {out.shape} does not match filter {weights.shape}")
    if k_c <= 0 or in_c <= 0 or in_c % k_c:
        raise unsupported(op, f"input depth {in_c} is not a multiple of filter depth {k_c}")
    groups = in_c // k_c
    if out_c % groups:
        raise unsupported(op, f"{out_c} output channels cannot be split into {groups} groups")
    o = op.options
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    d_h, d_w = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    padding = int(o.get("padding", _SAME))
    geom = dict(batches=batches, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                k_h=k_h, k_w=k_w, k_c=k_c, oc_per_group=out_c // groups,
                stride_h=s_h, stride_w=s_w, dil_h=d_h, dil_w=d_w,
                pad_h=tflm_padding(op, padding, s_h, d_h, in_h, k_h),
                pad_w=tflm_padding(op, padding, s_w, d_w, in_w, k_w))
    macs = batches * out_h * out_w * out_c * k_h * k_w * k_c
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(f"{op.name}_p", "mm_conv_f32_params", dict(
            geom, act_min=act_min, act_max=act_max, bias=_f32_bias(op, ctx, bias, out_c)))
        return Call("mm_conv_f32", [params, inp, ctx.weights(weights), out], "mm_conv.h", macs=macs)

    in_zp, out_zp, q = _quant_common(op, ctx, inp, weights, out, out_c)
    w = weights.data.reshape(out_c, -1)
    gemm = ctx.dsp and groups == 1   # DSP / Helium: patch x weight-row kernel (conv_gemm.py)
    if sfx == "s8":
        b = _bias_data(op, bias, out_c, ("int32",))
        folded = _fold(b, w, -in_zp)
        # the Helium kernel pads windows with the zero point: the folded bias is its only bias
        raw = folded if (gemm and ctx.mve) else _int32(b)
        fields = dict(geom, input_offset=-in_zp, output_offset=out_zp, **q,
                      bias=ctx.array(f"{op.name}_bias", raw),
                      bias_folded="NULL" if gemm else ctx.array(f"{op.name}_bias_f", folded),
                      bias64="NULL")
    else:
        b = _bias_data(op, bias, out_c, ("int32", "int64"))
        acc32 = (bias.dtype == "int32") if bias is not None else \
            int(o.get("quantized_bias_type", 0)) == _SCHEMA_INT32
        fields = dict(geom, input_offset=0, output_offset=0, **q, bias_folded="NULL")
        if acc32:
            fields.update(bias=ctx.array(f"{op.name}_bias", _int32(b)), bias64="NULL")
        else:
            fields.update(bias="NULL", bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)))
    if gemm:
        from mcu_mot.codegen.ops.conv_gemm import lower_conv_gemm
        return lower_conv_gemm(op, ctx, geom, sfx, weights, fields)
    params = ctx.struct(f"{op.name}_p", "mm_conv_params", fields)
    return Call(f"mm_conv_{sfx}", [params, inp, ctx.weights(weights), out], "mm_conv.h", macs=macs)


# ------------------------------------------------------------ TRANSPOSE_CONV
@lowers("TRANSPOSE_CONV")
def lower_transpose_conv(op, ctx):
    # inputs: output_shape, weights, input, [bias]
    if len(op.inputs) < 3:
        raise unsupported(op, f"{len(op.inputs)} inputs, expected output_shape, weights, input[, bias]")
    weights, inp = op.inputs[1], op.inputs[2]
    bias = op.inputs[3] if len(op.inputs) > 3 else None
    out = op.outputs[0]
    sfx = kernel_suffix(op, inp)
    _check_4d(op, inp, weights, out)
    _check_types(op, inp, weights, out)
    batches, in_h, in_w, in_c = inp.shape
    out_c, k_h, k_w, k_c = weights.shape
    _, out_h, out_w, out_c2 = out.shape
    if k_c != in_c or out_c2 != out_c or out.shape[0] != batches:
        raise unsupported(op, f"filter {weights.shape} does not match input {inp.shape} / output {out.shape}")
    o = op.options
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    padding = int(o.get("padding", _SAME))
    geom = dict(batches=batches, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w,
                pad_h=tflm_padding(op, padding, s_h, 1, out_h, k_h),
                pad_w=tflm_padding(op, padding, s_w, 1, out_w, k_w))
    macs = batches * in_h * in_w * in_c * k_h * k_w * out_c
    # The kernels gather per output pixel, so TFLM's output-sized accumulator
    # buffer is not needed (scratch_bytes = 0).
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(f"{op.name}_p", "mm_tconv_f32_params", dict(
            geom, act_min=act_min, act_max=act_max, bias=_f32_bias(op, ctx, bias, out_c)))
        return Call("mm_transpose_conv_f32", [params, inp, ctx.weights(weights), out],
                    "mm_transpose_conv.h", macs=macs)

    in_zp, out_zp, q = _quant_common(op, ctx, inp, weights, out, out_c)
    if sfx == "s8":
        b = _bias_data(op, bias, out_c, ("int32",))
        w = weights.data.astype(np.int64)
        phases = [_fold(b, w[:, py::s_h, px::s_w, :], -in_zp)
                  for py in range(s_h) for px in range(s_w)]
        fields = dict(geom, input_offset=-in_zp, output_offset=out_zp, **q,
                      bias=ctx.array(f"{op.name}_bias", _int32(b)),
                      bias_folded=ctx.array(f"{op.name}_bias_f", np.concatenate(phases).astype(np.int32)),
                      bias64="NULL")
    else:
        # int64 bias is used as is, int16 bias is widened (as TFLM does at run time);
        # an int32 bias would be misread as int64 by TFLM.
        b = _bias_data(op, bias, out_c, ("int64", "int16"))
        fields = dict(geom, input_offset=0, output_offset=0, **q, bias="NULL", bias_folded="NULL",
                      bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)))
    params = ctx.struct(f"{op.name}_p", "mm_tconv_params", fields)
    return Call(f"mm_transpose_conv_{sfx}", [params, inp, ctx.weights(weights), out],
                "mm_transpose_conv.h", macs=macs)
