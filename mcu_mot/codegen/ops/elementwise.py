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

import dataclasses

import numpy as np

from mcu_mot.codegen.analysis import add_quant, float_range, mul_quant
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import SUFFIX

MAX_BCAST_DIMS = 8


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
    return ctx.struct(
        f"{op.name}_bc",
        "mm_broadcast",
        dict(ndims=len(shape), shape=_c_list(shape), a_stride=_c_list(sa), b_stride=_c_list(sb)),
    )


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


def _f32_call(op, ctx, a, b, out, name):
    lo, hi = float_range(op)
    params = ctx.struct(
        f"{op.name}_p",
        "mm_elementwise_f32_params",
        dict(size=out.size, bcast=broadcast_struct(op, ctx, a, b, out), act_min=lo, act_max=hi),
    )
    return Call(
        f"mm_{name}_f32",
        [params, operand(ctx, a), operand(ctx, b), out],
        "mm_elementwise.h",
        macs=out.size,
        inplace=inplace_slot(op),
    )


def _quantized_call(op, ctx, a, b, out, sfx: str, kernel: str, q) -> Call:
    """mm_<kernel>_<sfx>(params, a, b, out): the op's quantization (AddQuant / MulQuant) as the
    fields of mm_<kernel>_params, with the sizes and the broadcast."""
    params = ctx.struct(
        f"{op.name}_p",
        f"mm_{kernel}_params",
        dict(size=out.size, bcast=broadcast_struct(op, ctx, a, b, out), **dataclasses.asdict(q)),
    )
    return Call(
        f"mm_{op.opcode.lower()}_{sfx}",
        [params, operand(ctx, a), operand(ctx, b), out],
        "mm_elementwise.h",
        macs=out.size,
        inplace=inplace_slot(op),
    )


@lowers("ADD", "SUB")
def lower_add_sub(op, ctx):
    a, b, out, sfx = _check(op)
    if sfx == "f32":
        return _f32_call(op, ctx, a, b, out, op.opcode.lower())
    return _quantized_call(op, ctx, a, b, out, sfx, "add", add_quant(op))


@lowers("MUL")
def lower_mul(op, ctx):
    a, b, out, sfx = _check(op)
    if sfx == "f32":
        return _f32_call(op, ctx, a, b, out, "mul")
    return _quantized_call(op, ctx, a, b, out, sfx, "mul", mul_quant(op))
