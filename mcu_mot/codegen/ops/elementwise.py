"""ADD / SUB / MUL lowerings (int8, int16, float32) with compile-time broadcasting.

Multipliers follow TFLM's Prepare: the ADD/SUB rescaling and the MUL multiplier
are computed in double from the float32 scales (the reference interpreter does
so for SUB as well, though some TFLM source snapshots use float there).

- int8 / int16 ADD and SUB: TFLM's general path for both (left shift 20 / 15);
  TFLM micro ignores pot_scale_int16 and does not require int16 zero points 0.
- int16 MUL: zero points must be 0 (TFLM rejects the model otherwise).
- float: the unbounded activation range is +-FLT_MAX, so an overflow to inf
  comes out as FLT_MAX, exactly like TFLM.
"""
from __future__ import annotations

import numpy as np

from mcu_mot.ir.quantize import quantize_multiplier
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import SUFFIX, fused_range, qparams

MAX_BCAST_DIMS = 8
FLT_MAX = float(np.finfo(np.float32).max)


def broadcast_loops(op, shape_a, shape_b, shape_out):
    """Merge the broadcast into the fewest loops; None when no broadcast is needed.

    Returns (shape, a_stride, b_stride), outermost loop first, strides in elements
    (0 where an input is broadcast along that loop).
    """
    shape_a, shape_b, shape_out = tuple(shape_a), tuple(shape_b), tuple(shape_out)
    rank = max(len(shape_a), len(shape_b), len(shape_out))
    ext = [(1,) * (rank - len(s)) + s for s in (shape_a, shape_b, shape_out)]
    ea, eb, eo = ext
    for da, db, do in zip(ea, eb, eo):
        if not ((da == do or da == 1) and (db == do or db == 1)) or max(da, db) != do:
            raise unsupported(op, f"shapes {shape_a} and {shape_b} do not broadcast to {shape_out}")
    size_o = int(np.prod(eo, dtype=np.int64))
    if int(np.prod(ea, dtype=np.int64)) == size_o and int(np.prod(eb, dtype=np.int64)) == size_o:
        return None  # both inputs are laid out like the output

    def strides(shape):
        out, acc = [], 1
        for d in reversed(shape):
            out.append(acc)
            acc *= d
        return out[::-1]
    sa, sb = strides(ea), strides(eb)
    loops = []  # [extent, a_stride, b_stride], outermost first
    for d in range(rank):
        if eo[d] == 1:
            continue
        loops.append([eo[d], 0 if ea[d] == 1 else sa[d], 0 if eb[d] == 1 else sb[d]])
    merged = []
    for loop in loops:
        if merged:
            outer = merged[-1]
            # the outer loop continues the inner one when every operand's step
            # over it equals (inner step x inner extent): treat the two as one
            n = loop[0]
            if outer[1] == loop[1] * n and outer[2] == loop[2] * n:
                outer[0] *= n
                outer[1], outer[2] = loop[1], loop[2]
                continue
        merged.append(list(loop))
    if not merged:
        merged = [[1, 0, 0]]
    if len(merged) > MAX_BCAST_DIMS:
        raise unsupported(op, f"broadcast needs {len(merged)} loops (max {MAX_BCAST_DIMS})")
    return ([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged])


def _c_list(values) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def broadcast_struct(op, ctx, a, b, out) -> str:
    loops = broadcast_loops(op, a.shape, b.shape, out.shape)
    if loops is None:
        return "NULL"
    shape, sa, sb = loops
    return ctx.struct(f"{op.name}_bc", "mm_broadcast", dict(
        ndims=len(shape), shape=_c_list(shape), a_stride=_c_list(sa), b_stride=_c_list(sb)))


def operand(ctx, t):
    """Activation tensors go by arena pointer, constants as flash arrays."""
    return ctx.weights(t) if t.is_const else t


def inplace_slot(op):
    """(input position, 0) for an input the output may overwrite: same shape and dtype."""
    out = op.outputs[0]
    for pos in (0, 1):
        t = op.inputs[pos]
        if not t.is_const and tuple(t.shape) == tuple(out.shape) and t.dtype == out.dtype:
            return (pos, 0)
    return None


def float_range(op):
    """TFLM CalculateActivationRange<float>: unbounded sides are +-FLT_MAX, not inf."""
    fused = int(op.options.get("fused_activation_function", 0))
    lo, hi = {0: (-FLT_MAX, FLT_MAX), 1: (0.0, FLT_MAX), 2: (-1.0, 1.0), 3: (0.0, 6.0)}.get(fused, (None, None))
    if lo is None:
        raise unsupported(op, f"fused activation {fused}")
    return lo, hi


def _check(op):
    if len(op.inputs) != 2 or len(op.outputs) != 1 or any(t is None for t in op.inputs):
        raise unsupported(op, "expects two inputs and one output")
    a, b = op.inputs
    out = op.outputs[0]
    if out.dtype not in ("int8", "int16", "float32"):
        raise unsupported(op, f"dtype {out.dtype} is not supported")
    if a.dtype != out.dtype or b.dtype != out.dtype:
        raise unsupported(op, f"mixed input dtypes {a.dtype}/{b.dtype} -> {out.dtype}")
    for t in (a, b, out):
        if t.dtype != "float32" and t.quant is not None and t.quant.per_channel:
            raise unsupported(op, f"tensor '{t.name}' is per-channel quantized")
    return a, b, out, SUFFIX[out.dtype]


def checked_multiplier(op, real: float, what: str = "rescaling factor") -> tuple[int, int]:
    """QuantizeMultiplier, refusing factors >= 2^31: the left shift would exceed 31 bits
    (undefined in C, and different between TFLM builds for x86 and Arm)."""
    if not np.isfinite(real):
        raise unsupported(op, f"{what} {real!r} is not finite (degenerate scales)")
    mult, shift = quantize_multiplier(real)
    if shift > 31:
        raise unsupported(op, f"{what} {real:.6g} is too large (degenerate output scale)")
    return mult, shift


def _smaller_than_one(op, real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplierSmallerThanOneExp: aborts unless 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise unsupported(op, f"rescaling factor {real!r} is outside (0, 1)")
    return quantize_multiplier(real)


def _f32_call(op, ctx, a, b, out, name):
    lo, hi = float_range(op)
    params = ctx.struct(f"{op.name}_p", "mm_elementwise_f32_params", dict(
        size=out.size, bcast=broadcast_struct(op, ctx, a, b, out), act_min=lo, act_max=hi))
    return Call(f"mm_{name}_f32", [params, operand(ctx, a), operand(ctx, b), out],
                "mm_elementwise.h", macs=out.size, inplace=inplace_slot(op))


@lowers("ADD", "SUB")
def lower_add_sub(op, ctx):
    a, b, out, sfx = _check(op)
    name = op.opcode.lower()
    if sfx == "f32":
        return _f32_call(op, ctx, a, b, out, name)
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    left_shift = 15 if sfx == "s16" else 20
    # TFLM's ADD Prepare computes these in double; the reference interpreter's SUB
    # matches the same double arithmetic (checked by sweeping scales in the tests)
    twice_max = 2.0 * max(s1, s2)
    r1, r2 = s1 / twice_max, s2 / twice_max
    ro = twice_max / ((1 << left_shift) * so)
    m1, sh1 = _smaller_than_one(op, r1)
    m2, sh2 = _smaller_than_one(op, r2)
    mo, sho = _smaller_than_one(op, ro)
    act_min, act_max = fused_range(op, out)
    params = ctx.struct(f"{op.name}_p", "mm_add_params", dict(
        size=out.size, bcast=broadcast_struct(op, ctx, a, b, out),
        input1_offset=-z1, input2_offset=-z2, output_offset=zo, left_shift=left_shift,
        input1_multiplier=m1, input1_shift=sh1, input2_multiplier=m2, input2_shift=sh2,
        output_multiplier=mo, output_shift=sho, act_min=act_min, act_max=act_max))
    return Call(f"mm_{name}_{sfx}", [params, operand(ctx, a), operand(ctx, b), out],
                "mm_elementwise.h", macs=out.size, inplace=inplace_slot(op))


@lowers("MUL")
def lower_mul(op, ctx):
    a, b, out, sfx = _check(op)
    if sfx == "f32":
        return _f32_call(op, ctx, a, b, out, "mul")
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    if sfx == "s16" and (z1, z2, zo) != (0, 0, 0):
        raise unsupported(op, f"int16 MUL needs zero points 0 (got {z1}, {z2}, {zo})")
    mult, shift = checked_multiplier(op, s1 * s2 / so)
    act_min, act_max = fused_range(op, out)
    params = ctx.struct(f"{op.name}_p", "mm_mul_params", dict(
        size=out.size, bcast=broadcast_struct(op, ctx, a, b, out),
        input1_offset=-z1, input2_offset=-z2, output_offset=zo,
        output_multiplier=mult, output_shift=shift, act_min=act_min, act_max=act_max))
    return Call(f"mm_mul_{sfx}", [params, operand(ctx, a), operand(ctx, b), out],
                "mm_elementwise.h", macs=out.size, inplace=inplace_slot(op))
