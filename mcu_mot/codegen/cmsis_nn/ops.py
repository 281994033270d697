"""Lowerings of the cmsis-nn backend: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D (int8 and int16x8) and SOFTMAX (int8 input).

Geometry and quantization come from the op analysis the portable lowerings use too
(codegen/analysis.py); this module only maps it to TFLite Micro's CMSIS-NN glue
conventions (negated input zero point as input_offset, output zero point as
output_offset, per-channel multipliers/shifts), all as static const data. Layers
CMSIS-NN cannot run with TFLM's exact semantics raise NotCovered and stay on the
portable kernels; a layer the analysis rejects fails as it would on the portable ones.
"""

from __future__ import annotations

import numpy as np

from mcu_mot.codegen import analysis as A
from mcu_mot.codegen.cmsis_nn import buffers
from mcu_mot.codegen.cmsis_nn.registry import HEADER, NotCovered, ScratchContext, lowers
from mcu_mot.codegen.lowering import Call
from mcu_mot.ir.quantize import wrap_int32


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


def _fc_bias(op, bias, channels: int, allowed) -> np.ndarray:
    """The portable FULLY_CONNECTED takes any bias: one CMSIS-NN would misread stays there."""
    if bias is not None and (not bias.is_const or bias.dtype not in allowed or bias.size != channels):
        raise NotCovered(f"bias '{bias.name}' ({bias.dtype}, {bias.size} values)")
    return A.bias_values(op, bias, channels, allowed)


def _quant_arrays(ctx, op, q: A.ConvQuant):
    return (
        ctx.array(f"{op.name}_mult", np.asarray(q.multiplier, np.int32)),
        ctx.array(f"{op.name}_shift", np.asarray(q.shift, np.int32)),
    )


def _per_channel(ctx, op, mult: str, shift: str) -> str:
    return ctx.struct(
        f"{op.name}_q",
        "cmsis_nn_per_channel_quant_params",
        dict(multiplier=f"(int32_t *){mult}", shift=f"(int32_t *){shift}"),
    )


def _geometry(g: A.ConvGeometry) -> dict:
    """The analysis in the shape buffers.py takes (CMSIS-NN's cmsis_nn_conv_params)."""
    return dict(stride=(g.stride_h, g.stride_w), dilation=(g.dil_h, g.dil_w), padding=(g.pad_h, g.pad_w))


# ------------------------------------------------------------------ CONV_2D
@lowers("CONV_2D")
def lower_conv(op, ctx):
    inp, weights, bias, out = A.weighted_operands(op)
    _check_weights(op, inp, weights, out)
    g = A.conv_geometry(op)
    if inp.dtype == "int16" and g.groups > 1:
        raise NotCovered("grouped int16 convolution")
    geo = _geometry(g)
    q = A.conv_quant(op, inp, weights, out, g.out_c)
    mult, shift = _quant_arrays(ctx, op, q)
    n, in_h, in_w, in_c, out_h, out_w, out_c = g.batches, g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c
    dims_in, dims_f, dims_out = (n, in_h, in_w, in_c), (1, g.k_h, g.k_w, g.k_c), (n, out_h, out_w, out_c)
    params = ctx.struct(
        f"{op.name}_p",
        "cmsis_nn_conv_params",
        dict(
            input_offset=q.input_offset if inp.dtype == "int8" else 0,
            output_offset=q.output_zp if out.dtype == "int8" else 0,
            stride=_tile(*geo["stride"]),
            padding=_tile(*geo["padding"]),
            dilation=_tile(*geo["dilation"]),
            activation=_act(q.act_min, q.act_max),
        ),
    )
    if inp.dtype == "int8":
        b = ctx.array(f"{op.name}_bias", wrap_int32(A.bias_values(op, bias, out_c, ("int32",))))
        scratch = buffers.convolve_wrapper_s8(ctx.isa, geo, dims_in, dims_f, dims_out)
        fn, bias_arg = "arm_convolve_wrapper_s8", b
    else:
        raw = A.bias_values(op, bias, out_c, ("int32", "int64"))
        int32_bias = bias is not None and bias.dtype == "int32"
        b = ctx.array(f"{op.name}_bias", wrap_int32(raw) if int32_bias else raw.astype(np.int64))
        bias_arg = ctx.struct(f"{op.name}_b", "cmsis_nn_bias_data", dict(data=b, is_int32_bias=1 if int32_bias else 0))
        scratch = buffers.convolve_wrapper_s16(ctx.isa, geo, dims_in, dims_f, dims_out)
        fn = "arm_convolve_wrapper_s16"
    args = [
        _context(ctx, op, scratch),
        params,
        _per_channel(ctx, op, mult, shift),
        _dims(ctx, f"{op.name}_din", *dims_in),
        inp,
        _dims(ctx, f"{op.name}_dfl", *dims_f),
        ctx.weights(weights),
        _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_c),
        bias_arg,
        _dims(ctx, f"{op.name}_dout", *dims_out),
        out,
    ]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0, macs=g.macs)


# -------------------------------------------------------- DEPTHWISE_CONV_2D
@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise(op, ctx):
    inp, weights, bias, out = A.weighted_operands(op)
    _check_weights(op, inp, weights, out)
    g = A.depthwise_geometry(op)
    geo = _geometry(g)
    q = A.conv_quant(op, inp, weights, out, g.out_c)
    mult, shift = _quant_arrays(ctx, op, q)
    n, in_h, in_w, in_c, out_h, out_w, out_c = g.batches, g.in_h, g.in_w, g.in_c, g.out_h, g.out_w, g.out_c
    dims_in, dims_f, dims_out = (n, in_h, in_w, in_c), (1, g.k_h, g.k_w, out_c), (n, out_h, out_w, out_c)
    dm = g.depth_mult
    dw = dict(geo, ch_mult=dm)
    params = ctx.struct(
        f"{op.name}_p",
        "cmsis_nn_dw_conv_params",
        dict(
            input_offset=q.input_offset if inp.dtype == "int8" else 0,
            output_offset=q.output_zp if out.dtype == "int8" else 0,
            ch_mult=dm,
            stride=_tile(*geo["stride"]),
            padding=_tile(*geo["padding"]),
            dilation=_tile(*geo["dilation"]),
            activation=_act(q.act_min, q.act_max),
        ),
    )
    if inp.dtype == "int8":
        b = ctx.array(f"{op.name}_bias", wrap_int32(A.bias_values(op, bias, out_c, ("int32",))))
        scratch = buffers.depthwise_wrapper_s8(ctx.isa, dw, dims_in, dims_f, dims_out)
        fn = "arm_depthwise_conv_wrapper_s8"
    else:
        b = ctx.array(f"{op.name}_bias", A.bias_values(op, bias, out_c, ("int64",)).astype(np.int64))
        scratch = buffers.depthwise_wrapper_s16(ctx.isa, dw, dims_in, dims_f, dims_out)
        fn = "arm_depthwise_conv_wrapper_s16"
    args = [
        _context(ctx, op, scratch),
        params,
        _per_channel(ctx, op, mult, shift),
        _dims(ctx, f"{op.name}_din", *dims_in),
        inp,
        _dims(ctx, f"{op.name}_dfl", *dims_f),
        ctx.weights(weights),
        _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_c),
        b,
        _dims(ctx, f"{op.name}_dout", *dims_out),
        out,
    ]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0, macs=g.macs)


# ---------------------------------------------------------- FULLY_CONNECTED
@lowers("FULLY_CONNECTED")
def lower_fully_connected(op, ctx):
    inp, weights, bias, out = A.weighted_operands(op)
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
    g = A.fc_geometry(op)
    batches = g.batches
    if weights.quant.scale.size not in (1, out_depth):
        raise NotCovered(f"{weights.quant.scale.size} weight scales for {out_depth} channels")
    q = A.fc_quant(op, out_depth)
    per_channel, w_zp, in_zp, out_zp = q.per_channel, q.weights_zp, q.input_zp, q.output_zp
    act_min, act_max = q.act_min, q.act_max
    mult, shift = _quant_arrays(ctx, op, q)
    fc_dims = [
        _dims(ctx, f"{op.name}_din", batches, 1, 1, in_depth),
        inp,
        _dims(ctx, f"{op.name}_dfl", in_depth, 1, 1, out_depth),
        ctx.weights(weights),
        _dims(ctx, f"{op.name}_dbi", 1, 1, 1, out_depth),
    ]
    macs = g.macs
    if inp.dtype == "int8":
        raw = wrap_int32(_fc_bias(op, bias, out_depth, ("int32",)))
        b = ctx.array(f"{op.name}_bias", raw)
        params = ctx.struct(
            f"{op.name}_p",
            "cmsis_nn_fc_params",
            dict(input_offset=-in_zp, filter_offset=-w_zp, output_offset=out_zp, activation=_act(act_min, act_max)),
        )
        quant = ctx.struct(
            f"{op.name}_q",
            "cmsis_nn_quant_params",
            dict(multiplier=f"(int32_t *){mult}", shift=f"(int32_t *){shift}", is_per_channel=int(per_channel)),
        )
        if buffers.fully_connected_s8(ctx.isa, out_depth):
            # MVE: the kernel sums arm_vector_sum_s8 would compute, as constants
            w = weights.data.reshape(out_depth, in_depth).astype(np.int64)
            sums = w.sum(axis=1) + in_depth * (-w_zp)
            ksum = wrap_int32(raw.astype(np.int64) + (-in_zp) * wrap_int32(sums).astype(np.int64)) if in_zp else raw
            context = _const_context(ctx, op, ctx.array(f"{op.name}_ksum", ksum), 4 * out_depth)
        else:
            context = _context(ctx, op, 0)
        args = [context, params, quant] + fc_dims + [b, _dims(ctx, f"{op.name}_dout", batches, 1, 1, out_depth), out]
        return Call("arm_fully_connected_wrapper_s8", args, HEADER, macs=macs)
    if per_channel:
        raise NotCovered("CMSIS-NN has no per-channel int16 fully connected")
    if w_zp or in_zp or out_zp:
        raise NotCovered("int16 fully connected needs zero points 0")
    b = ctx.array(f"{op.name}_bias", A.bias_values(op, bias, out_depth, ("int64",)).astype(np.int64))
    params = ctx.struct(
        f"{op.name}_p",
        "cmsis_nn_fc_params",
        dict(input_offset=0, filter_offset=0, output_offset=0, activation=_act(act_min, act_max)),
    )
    quant = ctx.struct(
        f"{op.name}_q", "cmsis_nn_per_tensor_quant_params", dict(multiplier=int(q.multiplier[0]), shift=int(q.shift[0]))
    )
    args = (
        [_context(ctx, op, 0), params, quant]
        + fc_dims
        + [b, _dims(ctx, f"{op.name}_dout", batches, 1, 1, out_depth), out]
    )
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


@lowers("ADD")
def lower_add(op, ctx):
    a, b, out = _elementwise_inputs(op)
    q = A.add_quant(op)
    sfx = "s8" if out.dtype == "int8" else "s16"
    args = [
        _operand(ctx, a),
        _operand(ctx, b),
        str(q.input1_offset),
        str(q.input1_multiplier),
        str(q.input1_shift),
        str(q.input2_offset),
        str(q.input2_multiplier),
        str(q.input2_shift),
        str(q.left_shift),
        out,
        str(q.output_offset),
        str(q.output_multiplier),
        str(q.output_shift),
        str(q.act_min),
        str(q.act_max),
        str(out.size),
    ]
    return Call(f"arm_elementwise_add_{sfx}", args, HEADER, macs=out.size, inplace=_inplace(op))


@lowers("MUL")
def lower_mul(op, ctx):
    a, b, out = _elementwise_inputs(op)
    q = A.mul_quant(op)
    sfx = "s8" if out.dtype == "int8" else "s16"
    args = [
        _operand(ctx, a),
        _operand(ctx, b),
        str(q.input1_offset),
        str(q.input2_offset),
        out,
        str(q.output_offset),
        str(q.output_multiplier),
        str(q.output_shift),
        str(q.act_min),
        str(q.act_max),
        str(out.size),
    ]
    return Call(f"arm_elementwise_mul_{sfx}", args, HEADER, macs=out.size, inplace=_inplace(op))


# ---------------------------------------------------------------- POOLING
@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    _quantized(op, inp, out)
    if inp.dtype != out.dtype or len(inp.shape) != 4 or len(out.shape) != 4:
        raise NotCovered("pooling needs 4-D tensors of one dtype")
    g = A.pool_geometry(op)
    act_min, act_max = A.pool_quant(op)
    n, in_h, in_w, c, out_h, out_w = g.batches, g.in_h, g.in_w, g.depth, g.out_h, g.out_w
    s_h, s_w, f_h, f_w, pad_h, pad_w = g.stride_h, g.stride_w, g.filter_h, g.filter_w, g.pad_h, g.pad_w
    params = ctx.struct(
        f"{op.name}_p",
        "cmsis_nn_pool_params",
        dict(stride=_tile(s_h, s_w), padding=_tile(pad_h, pad_w), activation=_act(act_min, act_max)),
    )
    sfx = "s8" if inp.dtype == "int8" else "s16"
    avg = op.opcode == "AVERAGE_POOL_2D"
    scratch = buffers.avgpool(ctx.isa, out_w, c) if avg else 0
    fn = f"arm_avgpool_{sfx}" if avg else f"arm_max_pool_{sfx}"
    args = [
        _context(ctx, op, scratch),
        params,
        _dims(ctx, f"{op.name}_din", n, in_h, in_w, c),
        inp,
        _dims(ctx, f"{op.name}_dfl", 1, f_h, f_w, 1),
        _dims(ctx, f"{op.name}_dout", n, out_h, out_w, c),
        out,
    ]
    return Call(fn, args, HEADER, scratch_bytes=scratch, raster_block=0, macs=g.macs)


# ---------------------------------------------------------------- SOFTMAX
@lowers("SOFTMAX")
def lower_softmax(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    _quantized(op, inp, out)
    if inp.dtype != "int8":
        raise NotCovered("int16 softmax stays on the portable kernel")
    if not inp.shape:
        raise NotCovered("scalar input")
    fn = {"int8": "arm_softmax_s8", "int16": "arm_softmax_s8_s16"}.get(out.dtype)
    if fn is None:
        raise NotCovered(f"int8 input with {out.dtype} output")
    sm = A.softmax_s8(op)
    args = [inp, str(sm.outer), str(sm.depth), str(sm.multiplier), str(sm.left_shift), str(sm.diff_min), out]
    return Call(fn, args, HEADER, macs=0)
