"""CONCATENATION and PAD / PADV2 lowerings: copies, no arithmetic.

CONCATENATION: TFLM copies the inputs' raw values (int8 inputs must share the
output's quantization; int16 inputs need zero point 0 but are never rescaled),
so the kernel is a copy. A later pass may instead plan the inputs directly
into their slices of the output.
PAD / PADV2: constant padding; the value is the PADV2 constant, else the int8
output zero point, else 0 (TFLM uses 0 for int16/int32/float32).
"""

import numpy as np

from mcu_mot.codegen.analysis import qparams
from mcu_mot.codegen.lowering import Call, c_float, lowers, unsupported

CONCAT_SUFFIX = {"int8": "s8", "int16": "s16", "int32": "s32", "int64": "s64", "float32": "f32", "bool": "u8"}
PAD_SUFFIX = {"int8": "s8", "int16": "s16", "int32": "s32", "float32": "f32"}
MAX_INPUTS = 10  # MM_CONCAT_MAX_INPUTS
PAD_DIMS = 5  # MM_PAD_DIMS


def _braces(values) -> str:
    return "{%s}" % ", ".join(str(int(v)) for v in values)


def _tensor_arg(ctx, t):
    """Activation tensors resolve to arena pointers; constants to their flash array."""
    if t.is_const:
        return f"({t.ctype} *){ctx.weights(t)}"
    return t


@lowers("CONCATENATION")
def lower_concatenation(op, ctx):
    out = op.outputs[0]
    ins = [t for t in op.inputs if t is not None]
    sfx = CONCAT_SUFFIX.get(out.dtype)
    if sfx is None:
        raise unsupported(op, f"dtype {out.dtype} is not supported")
    if int(op.options.get("fused_activation_function", 0)) != 0:
        raise unsupported(op, "fused activation (TFLM rejects it)")
    if not 1 <= len(ins) <= MAX_INPUTS:
        raise unsupported(op, f"{len(ins)} inputs (at most {MAX_INPUTS})")
    rank = len(out.shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise unsupported(op, f"axis {op.options.get('axis')} for rank {rank}")
    for t in ins:
        if t.dtype != out.dtype or len(t.shape) != rank:
            raise unsupported(op, f"input '{t.name}' ({t.dtype}, {t.shape}) does not match the output")
        if any(t.shape[d] != out.shape[d] for d in range(rank) if d != axis):
            raise unsupported(op, f"input '{t.name}' shape {t.shape} does not match output {out.shape}")
        if out.dtype == "int8":
            if qparams(op, t) != qparams(op, out):
                raise unsupported(
                    op, f"input '{t.name}' quantization differs from the output's (TFLM requires them equal)"
                )
        elif out.dtype == "int16":
            if t.quant is not None and int(t.quant.zero_point[0]) != 0:
                raise unsupported(op, f"int16 input '{t.name}' zero point must be 0")
    if sum(t.shape[axis] for t in ins) != out.shape[axis]:
        raise unsupported(op, f"inputs do not add up to the output along axis {axis}")
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    inner = int(np.prod(out.shape[axis + 1 :], dtype=np.int64))
    copy = [int(t.shape[axis]) * inner for t in ins] + [0] * (MAX_INPUTS - len(ins))
    params = ctx.struct(f"{op.name}_p", "mm_concat_params", dict(outer=outer, count=len(ins), copy=_braces(copy)))
    return Call(f"mm_concatenation_{sfx}", [params, out] + [_tensor_arg(ctx, t) for t in ins], "mm_shape.h")


@lowers("PAD", "PADV2")
def lower_pad(op, ctx):
    inp, paddings, out = op.inputs[0], op.inputs[1], op.outputs[0]
    sfx = PAD_SUFFIX.get(inp.dtype)
    if sfx is None:
        raise unsupported(op, f"dtype {inp.dtype} is not supported")
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} with output {out.dtype}")
    if paddings is None or not paddings.is_const:
        raise unsupported(op, "non-constant paddings")
    rank = len(inp.shape)
    if rank > PAD_DIMS or len(out.shape) != rank:
        raise unsupported(op, f"rank {rank} (at most {PAD_DIMS})")
    pads = np.asarray(paddings.data, np.int64).reshape(-1, 2)
    if pads.shape[0] != rank or (pads < 0).any():
        raise unsupported(op, f"paddings {pads.tolist()} for rank {rank}")
    for d in range(rank):
        if inp.shape[d] + pads[d, 0] + pads[d, 1] != out.shape[d]:
            raise unsupported(op, f"output shape {out.shape} does not match the paddings")
    cval = op.inputs[2] if len(op.inputs) > 2 else None
    if cval is not None:
        if not cval.is_const or cval.size != 1 or cval.dtype != inp.dtype:
            raise unsupported(op, "the pad value must be a constant scalar of the input type")
        if inp.dtype == "int8" and qparams(op, cval) != qparams(op, out):
            raise unsupported(op, "int8 pad value quantization differs from the output's")
        value = cval.data.reshape(-1)[0]
    elif inp.dtype == "int8":
        value = qparams(op, out)[1]
        if not -128 <= value <= 127:
            raise unsupported(op, f"output zero point {value} outside int8")
    else:
        value = 0
    value = c_float(value) if inp.dtype == "float32" else str(int(value))
    front = PAD_DIMS - rank
    in_dims = [1] * front + [int(d) for d in inp.shape]
    left = [0] * front + [int(v) for v in pads[:, 0]]
    out_dims = [1] * front + [int(d) for d in out.shape]
    params = ctx.struct(
        f"{op.name}_p", "mm_pad_params", dict(in_dims=_braces(in_dims), left=_braces(left), out_dims=_braces(out_dims))
    )
    return Call(f"mm_pad_{sfx}", [params, _tensor_arg(ctx, inp), out, value], "mm_shape.h")
