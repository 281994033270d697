"""Lowerings of the cmsis-nn backend: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D (int8 and int16x8) and SOFTMAX (int8 input).

Parameters follow the conventions of TFLite Micro's CMSIS-NN glue (negated input
zero point as input_offset, output zero point as output_offset, per-channel
multipliers/shifts, padding from TFLM's ComputePaddingHeightWidth), all as
static const data. Layers CMSIS-NN cannot run with TFLM's exact semantics raise
NotCovered and stay on the portable kernels.
"""
from __future__ import annotations

import numpy as np

from mcu_mot.ir.quantize import quantize_multiplier
from mcu_mot.codegen.lowering import Call
from mcu_mot.codegen.ops.common import channel_multipliers, fused_range, qparams
from mcu_mot.codegen.ops.common import tflm_padding
from mcu_mot.codegen.cmsis_nn import HEADER, NotCovered, ScratchContext, buffers, lowers

_SAME = 0


def _wrap32(v) -> np.ndarray:
    v = np.asarray(v, np.int64)
    return ((v + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _tile(h: int, w: int) -> str:
    return f"{{.w = {int(w)}, .h = {int(h)}}}"


def _act(lo: int, hi: int) -> str:
    return f"{{.min = {int(lo)}, .max = {int(hi)}}}"


def _dims(ctx, hint: str, n, h, w, c) -> str:
    return ctx.struct(hint, "cmsis_nn_dims", dict(n=int(n), h=int(h), w=int(w), c=int(c)))


def _context(ctx, op, scratch: int):
    """A cmsis_nn_context argument: the planned scratch, or an empty context."""
    if scratch > 0:
        return ScratchContext(scratch)
    name = getattr(ctx, "_cmsis_empty_context", None)
    if name is None:
        name = ctx.struct("cmsis_nn_no_buffer", "cmsis_nn_context", dict(buf="NULL", size=0))
        ctx._cmsis_empty_context = name
    return name


def _const_context(ctx, op, array_name: str, size: int) -> str:
    return ctx.struct(f"{op.name}_ctx", "cmsis_nn_context", dict(buf=f"(void *){array_name}", size=int(size)))


def _quantized(op, *tensors):
    for t in tensors:
        if t.dtype == "float32":
            raise NotCovered("float layers stay on the portable kernels")
        if t.dtype not in ("int8", "int16"):
            raise NotCovered(f"{t.dtype} tensors")
        if t.quant is None:
            raise NotCovered(f"tensor '{t.name}' has no quantization parameters")


def _check_weights(op, inp, weights, out):
    _quantized(op, inp, out)
    if out.dtype != inp.dtype:
        raise NotCovered(f"input {inp.dtype} with output {out.dtype}")
    if not weights.is_const or weights.dtype != "int8" or weights.quant is None:
        raise NotCovered("weights must be constant int8")
    for t in (inp, weights, out):
        if len(t.shape) != 4:
            raise NotCovered(f"tensor '{t.name}' is not 4-D")


def _bias(op, bias, channels: int, allowed) -> np.ndarray:
    if bias is None:
        return np.zeros(channels, np.int64)
    if not bias.is_const or bias.dtype not in allowed or bias.size != channels:
        raise NotCovered(f"bias '{bias.name}' ({bias.dtype}, {bias.size} values)")
    return bias.data.astype(np.int64).ravel()


def _quant_arrays(ctx, op, inp, weights, out, channels):
    if weights.quant.scale.size not in (1, channels):
        raise NotCovered(f"{weights.quant.scale.size} weight scales for {channels} channels")
    mult, shift = channel_multipliers(op, inp, weights, out, channels)
    return (ctx.array(f"{op.name}_mult", np.asarray(mult, np.int32)),
            ctx.array(f"{op.name}_shift", np.asarray(shift, np.int32)))


def _per_channel(ctx, op, mult: str, shift: str) -> str:
    return ctx.struct(f"{op.name}_q", "cmsis_nn_per_channel_quant_params",
                      dict(multiplier=f"(int32_t *){mult}", shift=f"(int32_t *){shift}"))


def _geometry(op, inp, k_h, k_w):
    o = op.options
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    d_h, d_w = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    padding = int(o.get("padding", _SAME))
    pad_h = tflm_padding(op, padding, s_h, d_h, inp.shape[1], k_h)
    pad_w = tflm_padding(op, padding, s_w, d_w, inp.shape[2], k_w)
    return dict(stride=(s_h, s_w), dilation=(d_h, d_w), padding=(pad_h, pad_w))


# ------------------------------------------------------------------ CONV_2D
@lowers("CONV_2D")
def lower_conv(op, ctx):
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    _check_weights(op, inp, weights, out)
    n, in_h, in_w, in_c = inp.shape
    out_c, k_h, k_w, k_c = weights.shape
    _, out_h, out_w, _ = out.shape
    if in_c % k_c or out_c % (in_c // k_c):
        raise NotCovered("channel groups do not divide")
    groups = in_c // k_c
    if inp.dtype == "int16" and groups > 1:
        raise NotCovered("grouped int16 convolution")
    geo = _geometry(op, inp, k_h, k_w)
    in_zp = qparams(op, inp)[1]
    out_zp = qparams(op, out)[1]
    act_min, act_max = fused_range(op, out)
    mult, shift = _quant_arrays(ctx, op, inp, weights, out, out_c)
    dims_in, dims_f, dims_out = (n, in_h, in_w, in_c), (1, k_h, k_w, k_c), (n, out_h, out_w, out_c)
    params = ctx.struct(f"{op.name}_p", "cmsis_nn_conv_params", dict(
        input_offset=-in_zp if inp.dtype == "int8" else 0, output_offset=out_zp if out.dtype == "int8" else 0,
        stride=_tile(*geo["stride"]), padding=_tile(*geo["padding"]), dilation=_tile(*geo["dilation"]),
        activation=_act(act_min, act_max)))
    if inp.dtype == "int8":
        b = ctx.array(f"{op.name}_bias", _wrap32(_bias(op, bias, out_c, ("int32",))))
        scratch = buffers.convolve_wrapper_s8(ctx.isa, geo, dims_in, dims_f, dims_out)
        fn, bias_arg = "arm_convolve_wrapper_s8", b
    else:
        raw = _bias(op, bias, out_c, ("int32", "int64"))
        int32_bias = bias is not None and bias.dtype == "int32"
        b = ctx.array(f"{op.name}_bias", _wrap32(raw) if int32_bias else raw.astype(np.int64))
        bias_arg = ctx.struct(f"{op.name}_b", "cmsis_nn_bias_data",
                              dict(data=b, is_int32_bias=1 if int32_bias else 0))
        scratch = buffers.convolve_wrapper_s16(ctx.isa, geo, dims_in, dims_f, dims_out)
        fn = "arm_convolve_wrapper_s16"
    args = [_context(ctx, op, scratch), params, _per_channel(ctx, op, mult, shift),
            _dims(ctx, f"{op.name}_din", *dims_in), inp,
            _dims(ctx, f"{op.name}_dfl", *dims_f), ctx.weights(weights),
            _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_c), bias_arg,
            _dims(ctx, f"{op.name}_dout", *dims_out), out]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0,
                macs=n * out_h * out_w * out_c * k_h * k_w * k_c)


# -------------------------------------------------------- DEPTHWISE_CONV_2D
@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise(op, ctx):
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    _check_weights(op, inp, weights, out)
    n, in_h, in_w, in_c = inp.shape
    one, k_h, k_w, out_c = weights.shape
    _, out_h, out_w, _ = out.shape
    dm = int(op.options.get("depth_multiplier", 1))
    if one != 1 or dm <= 0 or in_c * dm != out_c:
        raise NotCovered(f"depth multiplier {dm} with {in_c} -> {out_c} channels")
    geo = _geometry(op, inp, k_h, k_w)
    in_zp = qparams(op, inp)[1]
    out_zp = qparams(op, out)[1]
    act_min, act_max = fused_range(op, out)
    mult, shift = _quant_arrays(ctx, op, inp, weights, out, out_c)
    dims_in, dims_f, dims_out = (n, in_h, in_w, in_c), (1, k_h, k_w, out_c), (n, out_h, out_w, out_c)
    dw = dict(geo, ch_mult=dm)
    params = ctx.struct(f"{op.name}_p", "cmsis_nn_dw_conv_params", dict(
        input_offset=-in_zp if inp.dtype == "int8" else 0, output_offset=out_zp if out.dtype == "int8" else 0,
        ch_mult=dm, stride=_tile(*geo["stride"]), padding=_tile(*geo["padding"]),
        dilation=_tile(*geo["dilation"]), activation=_act(act_min, act_max)))
    if inp.dtype == "int8":
        b = ctx.array(f"{op.name}_bias", _wrap32(_bias(op, bias, out_c, ("int32",))))
        scratch = buffers.depthwise_wrapper_s8(ctx.isa, dw, dims_in, dims_f, dims_out)
        fn = "arm_depthwise_conv_wrapper_s8"
    else:
        b = ctx.array(f"{op.name}_bias", _bias(op, bias, out_c, ("int64",)).astype(np.int64))
        scratch = buffers.depthwise_wrapper_s16(ctx.isa, dw, dims_in, dims_f, dims_out)
        fn = "arm_depthwise_conv_wrapper_s16"
    args = [_context(ctx, op, scratch), params, _per_channel(ctx, op, mult, shift),
            _dims(ctx, f"{op.name}_din", *dims_in), inp,
            _dims(ctx, f"{op.name}_dfl", *dims_f), ctx.weights(weights),
            _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_c), b,
            _dims(ctx, f"{op.name}_dout", *dims_out), out]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0,
                macs=n * out_h * out_w * out_c * k_h * k_w)


# ---------------------------------------------------------- FULLY_CONNECTED
@lowers("FULLY_CONNECTED")
def lower_fully_connected(op, ctx):
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    _quantized(op, inp, out)
    if out.dtype != inp.dtype:
        raise NotCovered(f"input {inp.dtype} with output {out.dtype}")
    if not weights.is_const or weights.dtype != "int8" or weights.quant is None:
        raise NotCovered("weights must be constant int8")
    if op.options.get("weights_format", 0) != 0:
        raise NotCovered("shuffled weights")
    out_depth, in_depth = int(weights.shape[-2]), int(weights.shape[-1])
    if len(weights.shape) != 2 or in_depth == 0 or inp.size % in_depth:
        raise NotCovered(f"weights {weights.shape} with input {inp.shape}")
    batches = inp.size // in_depth
    per_channel = weights.quant.scale.size > 1
    w_zp = 0 if per_channel else int(weights.quant.zero_point[0])
    in_zp = qparams(op, inp)[1]
    out_zp = qparams(op, out)[1]
    act_min, act_max = fused_range(op, out)
    mult, shift = _quant_arrays(ctx, op, inp, weights, out, out_depth)
    fc_dims = [_dims(ctx, f"{op.name}_din", batches, 1, 1, in_depth), inp,
               _dims(ctx, f"{op.name}_dfl", in_depth, 1, 1, out_depth), ctx.weights(weights),
               _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_depth)]
    macs = batches * in_depth * out_depth
    if inp.dtype == "int8":
        raw = _wrap32(_bias(op, bias, out_depth, ("int32",)))
        b = ctx.array(f"{op.name}_bias", raw)
        params = ctx.struct(f"{op.name}_p", "cmsis_nn_fc_params", dict(
            input_offset=-in_zp, filter_offset=-w_zp, output_offset=out_zp, activation=_act(act_min, act_max)))
        quant = ctx.struct(f"{op.name}_q", "cmsis_nn_quant_params", dict(
            multiplier=f"(int32_t *){mult}", shift=f"(int32_t *){shift}", is_per_channel=int(per_channel)))
        if buffers.fully_connected_s8(ctx.isa, out_depth):
            # MVE: the kernel sums arm_vector_sum_s8 would compute, as constants
            w = weights.data.reshape(out_depth, in_depth).astype(np.int64)
            sums = w.sum(axis=1) + in_depth * (-w_zp)
            ksum = _wrap32(raw.astype(np.int64) + (-in_zp) * _wrap32(sums).astype(np.int64)) if in_zp else raw
            context = _const_context(ctx, op, ctx.array(f"{op.name}_ksum", ksum), 4 * out_depth)
        else:
            context = _context(ctx, op, 0)
        args = [context, params, quant] + fc_dims + [b, _dims(ctx, f"{op.name}_dout", batches, 1, 1, out_depth), out]
        return Call("arm_fully_connected_wrapper_s8", args, HEADER, macs=macs)
    if per_channel:
        raise NotCovered("CMSIS-NN has no per-channel int16 fully connected")
    if w_zp or in_zp or out_zp:
        raise NotCovered("int16 fully connected needs zero points 0")
    b = ctx.array(f"{op.name}_bias", _bias(op, bias, out_depth, ("int64",)).astype(np.int64))
    params = ctx.struct(f"{op.name}_p", "cmsis_nn_fc_params", dict(
        input_offset=0, filter_offset=0, output_offset=0, activation=_act(act_min, act_max)))
    m, s = channel_multipliers(op, inp, weights, out, 1)
    quant = ctx.struct(f"{op.name}_q", "cmsis_nn_per_tensor_quant_params",
                       dict(multiplier=int(m[0]), shift=int(s[0])))
    args = [_context(ctx, op, 0), params, quant] + fc_dims + [b, _dims(ctx, f"{op.name}_dout", batches, 1, 1,
                                                                          out_depth), out]
    return Call("arm_fully_connected_s16", args, HEADER, macs=macs)


# ---------------------------------------------------------------- ADD / MUL
def _elementwise_inputs(op):
    if len(op.inputs) != 2 or any(t is None for t in op.inputs):
        raise NotCovered("expects two inputs")
    a, b = op.inputs
    out = op.outputs[0]
    _quantized(op, a, b, out)
    if not (a.dtype == b.dtype == out.dtype):
        raise NotCovered("mixed dtypes")
    if a.size != out.size or b.size != out.size:
        raise NotCovered("broadcasting (CMSIS-NN only has same-shape elementwise functions)")
    for t in (a, b, out):
        if t.quant.per_channel:
            raise NotCovered(f"tensor '{t.name}' is per-channel quantized")
    return a, b, out


def _operand(ctx, t):
    return ctx.weights(t) if t.is_const else t


def _inplace(op):
    out = op.outputs[0]
    for pos in (0, 1):
        t = op.inputs[pos]
        if not t.is_const and t.size == out.size and t.dtype == out.dtype:
            return (pos, 0)
    return None


def _below_one(real: float):
    if not 0.0 < real < 1.0:
        raise NotCovered(f"rescaling factor {real!r} is outside (0, 1)")
    return quantize_multiplier(real)


@lowers("ADD")
def lower_add(op, ctx):
    a, b, out = _elementwise_inputs(op)
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    sfx = "s8" if out.dtype == "int8" else "s16"
    left_shift = 20 if sfx == "s8" else 15
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _below_one(s1 / twice_max)
    m2, sh2 = _below_one(s2 / twice_max)
    mo, sho = _below_one(twice_max / ((1 << left_shift) * so))
    act_min, act_max = fused_range(op, out)
    args = [_operand(ctx, a), _operand(ctx, b), str(-z1), str(m1), str(sh1), str(-z2), str(m2), str(sh2),
            str(left_shift), out, str(zo), str(mo), str(sho), str(act_min), str(act_max), str(out.size)]
    return Call(f"arm_elementwise_add_{sfx}", args, HEADER, macs=out.size, inplace=_inplace(op))


@lowers("MUL")
def lower_mul(op, ctx):
    a, b, out = _elementwise_inputs(op)
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    sfx = "s8" if out.dtype == "int8" else "s16"
    if sfx == "s16" and (z1, z2, zo) != (0, 0, 0):
        raise NotCovered("int16 MUL needs zero points 0")
    real = s1 * s2 / so
    if not np.isfinite(real):
        raise NotCovered("degenerate scales")
    mult, shift = quantize_multiplier(real)
    if shift > 31:
        raise NotCovered("degenerate output scale")
    act_min, act_max = fused_range(op, out)
    args = [_operand(ctx, a), _operand(ctx, b), str(-z1), str(-z2), out, str(zo), str(mult), str(shift),
            str(act_min), str(act_max), str(out.size)]
    return Call(f"arm_elementwise_mul_{sfx}", args, HEADER, macs=out.size, inplace=_inplace(op))


# ---------------------------------------------------------------- POOLING
@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    _quantized(op, inp, out)
    if inp.dtype != out.dtype or len(inp.shape) != 4 or len(out.shape) != 4:
        raise NotCovered("pooling needs 4-D tensors of one dtype")
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if abs(s_in - s_out) > 1e-6 or z_in != z_out:
        raise NotCovered("input and output quantization differ")
    o = op.options
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    f_h, f_w = int(o.get("filter_height", 1)), int(o.get("filter_width", 1))
    padding = int(o.get("padding", _SAME))
    n, in_h, in_w, c = inp.shape
    _, out_h, out_w, out_c = out.shape
    if out_c != c:
        raise NotCovered("channel count changes")
    pad_h = tflm_padding(op, padding, s_h, 1, in_h, f_h)
    pad_w = tflm_padding(op, padding, s_w, 1, in_w, f_w)
    act_min, act_max = fused_range(op, out)
    params = ctx.struct(f"{op.name}_p", "cmsis_nn_pool_params", dict(
        stride=_tile(s_h, s_w), padding=_tile(pad_h, pad_w), activation=_act(act_min, act_max)))
    sfx = "s8" if inp.dtype == "int8" else "s16"
    avg = op.opcode == "AVERAGE_POOL_2D"
    scratch = buffers.avgpool(ctx.isa, out_w, c) if avg else 0
    fn = f"arm_avgpool_{sfx}" if avg else f"arm_max_pool_{sfx}"
    args = [_context(ctx, op, scratch), params, _dims(ctx, f"{op.name}_din", n, in_h, in_w, c), inp,
            _dims(ctx, f"{op.name}_dfl", 1, f_h, f_w, 1), _dims(ctx, f"{op.name}_dout", n, out_h, out_w, c), out]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0, macs=n * out_h * out_w * c * f_h * f_w)


# ---------------------------------------------------------------- SOFTMAX
@lowers("SOFTMAX")
def lower_softmax(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    _quantized(op, inp, out)
    if inp.dtype != "int8":
        raise NotCovered("int16 softmax stays on the portable kernel")
    if not inp.shape:
        raise NotCovered("scalar input")
    s_in, _ = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if out.dtype == "int8":
        if z_out != -128 or np.float32(s_out) != np.float32(1.0 / 256):
            raise NotCovered("int8 output must have scale 1/256 and zero point -128")
        fn = "arm_softmax_s8"
    elif out.dtype == "int16":
        if z_out != -32768 or abs(s_out - 1.0 / 65536) > 0.001 / 65536:
            raise NotCovered("int16 output must have scale 1/65536 and zero point -32768")
        fn = "arm_softmax_s8_s16"
    else:
        raise NotCovered(f"int8 input with {out.dtype} output")
    beta = float(op.options.get("beta", 1.0))
    real = min(beta * float(s_in) * float(1 << 26), float((1 << 31) - 1))
    if real <= 1.0:
        raise NotCovered("beta * input scale is too small")
    mult, left_shift = quantize_multiplier(real)
    # TFLM CalculateInputRadius(5, left_shift, 31): the most negative difference that matters
    max_scaled = ((1 << 5) - 1) * (1 << (31 - 5)) / float(1 << left_shift)
    diff_min = -int(np.floor(max_scaled))
    depth = int(inp.shape[-1])
    rows = inp.size // depth if depth else 0
    args = [inp, str(rows), str(depth), str(mult), str(left_shift), str(diff_min), out]
    return Call(fn, args, HEADER, macs=0)
