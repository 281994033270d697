"""QUANTIZE and DEQUANTIZE lowerings.

QUANTIZE float -> int8/int16 keeps TFLM's float math (roundf(x / scale) + zp);
int8/int16 -> int8/int16 requantizes with QuantizeMultiplier(double(s_in) / double(s_out)).
DEQUANTIZE int8/int16 -> float.
"""

from __future__ import annotations

from mcu_mot.codegen.analysis import checked_multiplier, qparams
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import SUFFIX

_ESIZE = {"int8": 1, "int16": 2, "float32": 4}


def _io(op):
    if len(op.inputs) < 1 or op.inputs[0] is None or len(op.outputs) != 1:
        raise unsupported(op, "expects one input and one output")
    inp, out = op.inputs[0], op.outputs[0]
    if inp.is_const:
        raise unsupported(op, f"constant input '{inp.name}'")
    for t in (inp, out):
        if t.dtype != "float32" and t.quant is not None and t.quant.per_channel:
            raise unsupported(op, f"tensor '{t.name}' is per-channel quantized")
    return inp, out


@lowers("QUANTIZE")
def lower_quantize(op, ctx):
    inp, out = _io(op)
    if out.dtype not in ("int8", "int16"):
        raise unsupported(op, f"output dtype {out.dtype} is not supported")
    if inp.dtype not in ("float32", "int8", "int16"):
        raise unsupported(op, f"input dtype {inp.dtype} is not supported")
    s_out, z_out = qparams(op, out)
    # forward loops: the output may overlay the input when its elements are not wider
    inplace = (0, 0) if _ESIZE[out.dtype] <= _ESIZE[inp.dtype] else None
    if inp.dtype == "float32":
        params = ctx.struct(f"{op.name}_p", "mm_affine_params", dict(size=out.size, scale=s_out, zero_point=z_out))
        return Call(f"mm_quantize_f32_{SUFFIX[out.dtype]}", [params, inp, out], "mm_quantize.h", inplace=inplace)
    s_in, z_in = qparams(op, inp)
    mult, shift = checked_multiplier(op, s_in / s_out)
    params = ctx.struct(
        f"{op.name}_p",
        "mm_requantize_params",
        dict(size=out.size, input_zero_point=z_in, output_zero_point=z_out, multiplier=mult, shift=shift),
    )
    return Call(
        f"mm_quantize_{SUFFIX[inp.dtype]}_{SUFFIX[out.dtype]}", [params, inp, out], "mm_quantize.h", inplace=inplace
    )


@lowers("DEQUANTIZE")
def lower_dequantize(op, ctx):
    inp, out = _io(op)
    if out.dtype != "float32":
        raise unsupported(op, f"output dtype {out.dtype} is not supported")
    if inp.dtype not in ("int8", "int16"):
        raise unsupported(op, f"input dtype {inp.dtype} is not supported")
    s_in, z_in = qparams(op, inp)
    if abs(z_in) > (1 << 23):
        # the float kernel is exact only while q - zero_point fits a float mantissa
        raise unsupported(op, f"zero point {z_in} of '{inp.name}' is out of range")
    params = ctx.struct(f"{op.name}_p", "mm_affine_params", dict(size=out.size, scale=s_in, zero_point=z_in))
    return Call(f"mm_dequantize_{SUFFIX[inp.dtype]}", [params, inp, out], "mm_quantize.h")
