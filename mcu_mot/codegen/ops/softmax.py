"""SOFTMAX lowering (int8 -> int8/int16, int16, float32), bit-exact with TFLM.

- int8: exp() of every possible (x - max) difference is tabulated here (the
  fixed-point parameters from codegen/analysis.py, the gemmlowp emulation from
  nonlinear.py); the per-row reciprocal stays on the device (mm_softmax.c).
- int16: TFLM's two 513-entry LUTs (exp and 1/(1+x)), generated with the same
  float32 arithmetic as TFLM's LUTPopulate (libm expf when available).
"""

from __future__ import annotations

import functools

import numpy as np

from mcu_mot.codegen.analysis import SoftmaxS8, qparams, softmax_s8
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.codegen.ops.nonlinear import F, exp_on_negative_values, expf, lut_populate_int16, srdhm
from mcu_mot.ir.quantize import quantize_multiplier, wrap_int32


@functools.lru_cache(maxsize=None)
def softmax_int16_luts() -> tuple[np.ndarray, np.ndarray]:
    """The exp LUT (on [-10, 0]) and 1/(1+x) LUT (on [0, 1]) of TFLM's int16 softmax."""
    rng = 65535
    exp_lut = lut_populate_int16(F(10.0) / F(rng), 32767, F(2.0) / F(rng), 0, expf)
    recip_lut = lut_populate_int16(F(1.0) / F(rng), -32768, F(2.0) / F(rng), 0, lambda v: F(1.0) / (F(1.0) + F(v)))
    return exp_lut, recip_lut


# ---------------------------------------------------------------- SOFTMAX
def softmax_s8_exp_table(sm: SoftmaxS8) -> np.ndarray:
    """TFLM int8 softmax: table[d] = exp_on_negative_values(rescale(-d)) for d in 0..255 (0 below diff_min)."""
    table = np.zeros(256, np.int32)
    for d in range(256):
        if -d >= sm.diff_min:
            rescaled = srdhm(wrap_int32(-d * (1 << sm.left_shift)), sm.multiplier)
            table[d] = exp_on_negative_values(rescaled, 5)
    return table


@lowers("SOFTMAX")
def lower_softmax(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    sfx = kernel_suffix(op, inp)
    if not inp.shape:
        raise unsupported(op, "scalar input")
    depth = int(inp.shape[-1])
    outer = inp.size // depth if depth else 0
    beta = float(op.options.get("beta", 1.0))
    if sfx == "f32":
        if out.dtype != "float32":
            raise unsupported(op, f"float32 input with {out.dtype} output")
        params = ctx.struct(
            f"{op.name}_p",
            "mm_softmax_params",
            dict(
                outer=outer,
                depth=depth,
                input_multiplier=0,
                input_shift=0,
                diff_min=0,
                exp_table="NULL",
                exp_lut="NULL",
                recip_lut="NULL",
                beta=beta,
            ),
        )
        return Call("mm_softmax_f32", [params, inp, out], "mm_softmax.h", inplace=(0, 0))
    if sfx == "s8":
        sm = softmax_s8(op)
        kernel, inplace = ("mm_softmax_s8", (0, 0)) if out.dtype == "int8" else ("mm_softmax_s8_s16", None)
        table = softmax_s8_exp_table(sm)
        params = ctx.struct(
            f"{op.name}_p",
            "mm_softmax_params",
            dict(
                outer=outer,
                depth=depth,
                input_multiplier=0,
                input_shift=0,
                diff_min=sm.diff_min,
                exp_table=ctx.array(f"{op.name}_exp", table, "int32"),
                exp_lut="NULL",
                recip_lut="NULL",
                beta=0.0,
            ),
        )
        return Call(kernel, [params, inp, out], "mm_softmax.h", inplace=inplace)
    # int16 -> int16
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if out.dtype != "int16":
        raise unsupported(op, f"int16 input with {out.dtype} output")
    if z_in != 0 or z_out != 0 or abs(s_out - 1.0 / 32768) > 0.001 / 32768:
        raise unsupported(op, "int16 softmax needs zero points 0 and output scale 1/32768")
    mult, shift = quantize_multiplier(float(s_in) * float(np.float32(beta)) / (10.0 / 65535.0))
    exp_lut, recip_lut = softmax_int16_luts()
    params = ctx.struct(
        f"{op.name}_p",
        "mm_softmax_params",
        dict(
            outer=outer,
            depth=depth,
            input_multiplier=mult,
            input_shift=shift,
            diff_min=0,
            exp_table="NULL",
            exp_lut=ctx.array("mm_softmax_exp_lut", exp_lut, "int16"),
            recip_lut=ctx.array("mm_softmax_recip_lut", recip_lut, "int16"),
            beta=0.0,
        ),
    )
    return Call("mm_softmax_s16", [params, inp, out], "mm_softmax.h", inplace=(0, 0))
