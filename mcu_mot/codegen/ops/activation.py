"""RELU, RELU6, LEAKY_RELU, HARD_SWISH lowerings, mirroring TFLM's Prepare math.

- RELU (int8/int16): multiplier QuantizeMultiplier(double(s_in) / double(s_out)),
  range [max(qmin, zp_out + roundf(0 / s_out)), qmax]; int16 needs zero points 0.
- RELU6 (int8/int16): TFLM only clamps to [zp_in, quantize(6.0)] in the input's
  quantization (the output's parameters are not used); 6.0f / scale is in float.
- LEAKY_RELU (int8/int16): identity s_in / s_out and alpha s_in * alpha / s_out.
- HARD_SWISH: int8 only (and float); the int8 kernel is a 256-entry table built
  here with TFLM's exact 16-bit fixed-point arithmetic.

The multiplier ratios are formed in double: that is what the reference
interpreter (pip tflite-micro) computes. Some TFLM source snapshots divide the
float scales in float first; exhaustive int16 tests tell the two apart.
"""

from __future__ import annotations

import numpy as np

from mcu_mot.codegen.analysis import checked_multiplier, qparams
from mcu_mot.codegen.lowering import Call, c_float, lowers, unsupported
from mcu_mot.codegen.ops.common import SUFFIX
from mcu_mot.ir.quantize import quantize_multiplier, tflite_round, wrap_int32

QRANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}


def _unary(op, allowed):
    if len(op.inputs) < 1 or op.inputs[0] is None or len(op.outputs) != 1:
        raise unsupported(op, "expects one input and one output")
    inp, out = op.inputs[0], op.outputs[0]
    if inp.dtype not in allowed:
        raise unsupported(op, f"dtype {inp.dtype} is not supported")
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} but output {out.dtype}")
    if inp.is_const:
        raise unsupported(op, f"constant input '{inp.name}'")
    for t in (inp, out):
        if t.dtype != "float32" and t.quant is not None and t.quant.per_channel:
            raise unsupported(op, f"tensor '{t.name}' is per-channel quantized")
    return inp, out, SUFFIX[inp.dtype]


def _f32(x) -> np.float32:
    return np.float32(x)


@lowers("RELU")
def lower_relu(op, ctx):
    inp, out, sfx = _unary(op, ("int8", "int16", "float32"))
    if sfx == "f32":
        return Call("mm_relu_f32", [str(out.size), inp, out], "mm_activation.h", inplace=(0, 0))
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if sfx == "s16" and (z_in, z_out) != (0, 0):
        raise unsupported(op, f"int16 RELU needs zero points 0 (got {z_in}, {z_out})")
    mult, shift = checked_multiplier(op, s_in / s_out)
    qmin, qmax = QRANGE[inp.dtype]
    act_min = max(qmin, z_out + int(tflite_round(float(_f32(0.0) / _f32(s_out)))))
    params = ctx.struct(
        f"{op.name}_p",
        "mm_relu_params",
        dict(
            size=out.size,
            input_zero_point=z_in,
            output_zero_point=z_out,
            multiplier=mult,
            shift=shift,
            act_min=act_min,
            act_max=qmax,
        ),
    )
    return Call(f"mm_relu_{sfx}", [params, inp, out], "mm_activation.h", inplace=(0, 0))


@lowers("RELU6")
def lower_relu6(op, ctx):
    inp, out, sfx = _unary(op, ("int8", "int16", "float32"))
    if sfx == "f32":
        return Call("mm_relu6_f32", [str(out.size), inp, out], "mm_activation.h", inplace=(0, 0))
    s_in, z_in = qparams(op, inp)
    qmin, qmax = QRANGE[inp.dtype]
    # FloatToQuantizedType: round(6.0f / scale) in float, + zero point, clamped
    q = _f32(6.0) / _f32(s_in)
    if not np.isfinite(q) or abs(float(q)) >= 2.0**31:
        raise unsupported(op, f"input scale {s_in!r} puts 6.0 outside the int32 range")
    six = min(qmax, max(qmin, int(tflite_round(float(q))) + z_in))
    params = ctx.struct(f"{op.name}_p", "mm_relu6_params", dict(size=out.size, lo=z_in, hi=six))
    return Call(f"mm_relu6_{sfx}", [params, inp, out], "mm_activation.h", inplace=(0, 0))


@lowers("LEAKY_RELU")
def lower_leaky_relu(op, ctx):
    inp, out, sfx = _unary(op, ("int8", "int16", "float32"))
    alpha = _f32(op.options.get("alpha", 0.0))
    if sfx == "f32":
        return Call("mm_leaky_relu_f32", [str(out.size), c_float(alpha), inp, out], "mm_activation.h", inplace=(0, 0))
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    m_alpha, sh_alpha = checked_multiplier(op, s_in * float(alpha) / s_out, "alpha factor")
    m_id, sh_id = checked_multiplier(op, s_in / s_out)
    params = ctx.struct(
        f"{op.name}_p",
        "mm_leaky_relu_params",
        dict(
            size=out.size,
            input_zero_point=z_in,
            output_zero_point=z_out,
            multiplier_identity=m_id,
            shift_identity=sh_id,
            multiplier_alpha=abs(m_alpha),
            shift_alpha=sh_alpha,
            alpha_negative=int(m_alpha < 0),
        ),
    )
    return Call(f"mm_leaky_relu_{sfx}", [params, inp, out], "mm_activation.h", inplace=(0, 0))


# ---------------------------------------------------------------- HARD_SWISH int8 table
def _i16(v: int) -> int:
    """Wrap to int16 like a C cast."""
    return (int(v) + 0x8000) % 0x10000 - 0x8000


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    if a == b == -32768:
        return 32767
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else (1 - (1 << 14))
    return _i16(_cdiv(ab + nudge, 1 << 15))


def _cdiv(x: int, d: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(x) // abs(d)
    return q if (x >= 0) == (d > 0) else -q


def _sdhm16(a: int, b: int) -> int:
    """SaturatingDoublingHighMul (rounding toward zero) for int16."""
    if a == b == -32768:
        return 32767
    return _i16(_cdiv(a * b, 1 << 15))


def _rdbp16(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT on int16 values."""
    mask = _i16((1 << exponent) - 1)
    remainder = _i16(x & mask)
    threshold = _i16((mask >> 1) + (1 if x < 0 else 0))
    return _i16((x >> exponent) + (1 if remainder > threshold else 0))


def _sat_lshift16(v: int, amount: int) -> int:
    """SaturatingLeftShift: the product is formed in int32 (C int), then clamped."""
    prod = wrap_int32(v * (1 << amount))
    return max(-32768, min(32767, prod))


def _down_to_int16(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m32 >= 0x7FFFFFFF - (1 << 15):
        return 32767
    return (m32 + (1 << 15)) >> 16


def hard_swish_params(s_in: float, s_out: float):
    f = np.float32
    hires = f(1.0 / 128.0) * f(s_in)
    reluish_scale = f(3.0) / f(32768.0)
    out_m32, out_exp = quantize_multiplier(float(hires) / float(f(s_out)))
    rel_m32, rel_exp = quantize_multiplier(float(hires) / float(reluish_scale))
    return _down_to_int16(out_m32), out_exp, _down_to_int16(rel_m32), rel_exp


def hard_swish_table(s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """TFLM reference_ops::HardSwish<int8_t> evaluated for every int8 input."""
    out_m, out_exp, rel_m, rel_exp = hard_swish_params(s_in, s_out)
    table = np.zeros(256, np.int8)
    for q in range(-128, 128):
        x = _i16(q - z_in)
        hires = _i16(x * (1 << 7))
        preshift = _srdhm16(hires, out_m)
        rel = hires
        if rel_exp > 0:
            rel = _sat_lshift16(rel, rel_exp - 1)
        rel = _srdhm16(rel, rel_m)
        if rel_exp > 0:
            rel = _sat_lshift16(rel, 1)
        if rel_exp < 0:
            rel = _rdbp16(rel, -rel_exp)
        rel = _i16((rel + (1 << 15)) >> 1)
        pre_out = _sdhm16(rel, preshift)
        v = _rdbp16(pre_out, -out_exp)
        v = _i16(v + z_out)
        v = max(-128, min(127, v))
        table[q & 0xFF] = v
    return table


@lowers("HARD_SWISH")
def lower_hard_swish(op, ctx):
    inp, out, sfx = _unary(op, ("int8", "float32"))
    if sfx == "f32":
        return Call("mm_hard_swish_f32", [str(out.size), inp, out], "mm_activation.h", inplace=(0, 0))
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    _, out_exp, _, _ = hard_swish_params(s_in, s_out)
    if out_exp > 0:  # TF_LITE_ENSURE in TFLM's Prepare
        raise unsupported(
            op, f"output multiplier exponent {out_exp} > 0 (input scale {s_in!r} too large for output scale {s_out!r})"
        )
    lut = ctx.array(f"{op.name}_lut", hard_swish_table(s_in, z_in, s_out, z_out), "int8")
    params = ctx.struct(f"{op.name}_p", "mm_lut_s8_params", dict(size=out.size, lut=lut))
    return Call("mm_hard_swish_s8", [params, inp, out], "mm_activation.h", inplace=(0, 0))
