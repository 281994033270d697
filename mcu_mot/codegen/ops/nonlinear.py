"""LOGISTIC and TANH lowerings (int8, int16, float32), bit-exact with TFLM, and the exact
gemmlowp fixed-point and float32 libm emulation they and SOFTMAX (softmax.py) share.

Everything TFLM derives from the quantization parameters is computed here:
- int8 LOGISTIC / TANH: TFLM evaluates gemmlowp fixed-point logistic/tanh per
  element; the input has only 256 values, so the whole function is evaluated
  here (exact integer emulation below) into a 256-entry table.
- int16 LOGISTIC / TANH: TFLM's multiplier/shift; the device interpolates
  TFLM's 256-entry Q0.16 sigmoid table (kept in mm_nonlinear.c).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

from mcu_mot.codegen.analysis import input_radius, qparams
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.ir.quantize import tflite_round, wrap_int32

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------- gemmlowp fixed point (int32 raw)
def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return wrap_int32(_trunc_div(ab + nudge, 1 << 31))


def rdpot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: arithmetic shift rounding half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def sat_shl(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT with a positive exponent."""
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def rescale(x: int, src_bits: int, dst_bits: int) -> int:
    e = src_bits - dst_bits
    return sat_shl(x, e) if e > 0 else rdpot(x, -e) if e < 0 else x


def multiply_by_quantized_multiplier(x: int, mult: int, shift: int) -> int:
    """TFLM MultiplyByQuantizedMultiplier(int32) with double rounding."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rdpot(srdhm(wrap_int32(x * (1 << left)), mult), right)


def _exp_quarter(a: int) -> int:
    """exp(x) for x in [-1/4, 0), Q0.31."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap_int32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdpot(x4, 2)
    poly = rdpot(wrap_int32(srdhm(wrap_int32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap_int32(constant_term + srdhm(constant_term, wrap_int32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: int, int_bits: int) -> int:
    frac = 31 - int_bits
    quarter = 1 << (frac - 2)
    a_mod = wrap_int32((a & (quarter - 1)) - quarter)
    result = _exp_quarter(rescale(a_mod, int_bits, 0))
    remainder = wrap_int32(a_mod - a)
    for exponent, multiplier in _EXP_BARREL:
        if int_bits > exponent and remainder & (1 << (frac + exponent)):
            result = srdhm(result, multiplier)
    if int_bits > 5 and a < -(1 << (36 - int_bits)):
        result = 0
    return INT32_MAX if a == 0 else result


def _newton_reciprocal(a: int) -> int:
    """The shared Newton-Raphson core: ~ 1/(1+a) in Q2.29 (F2)."""
    s = a + INT32_MAX
    half_den = _trunc_div(s + (1 if s >= 0 else -1), 2)
    x = wrap_int32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        one_minus = wrap_int32((1 << 29) - srdhm(half_den, x))
        x = wrap_int32(x + rescale(srdhm(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x(a: int) -> int:
    return rescale(_newton_reciprocal(a), 1, 0)


def one_minus_x_over_one_plus_x(a: int) -> int:
    return rescale(wrap_int32(_newton_reciprocal(a) - (1 << 29)), 2, 0)


def fixed_logistic(a: int, int_bits: int) -> int:
    if a == 0:
        return 1 << 30
    pos = one_over_one_plus_x(exp_on_negative_values(-abs(a), int_bits))
    return pos if a > 0 else wrap_int32(INT32_MAX - pos)


def fixed_tanh(a: int, int_bits: int) -> int:
    if a == 0:
        return 0
    n = a if a < 0 else -a
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(n, int_bits + 1))
    return -t if a < 0 else t


# ---------------------------------------------------------------- float32 helpers (as TFLM's libm)
def _libm():
    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        lib = None
    if lib is None:
        return None
    for fn in ("expf", "logf"):
        getattr(lib, fn).restype = ctypes.c_float
        getattr(lib, fn).argtypes = [ctypes.c_float]
    return lib


_LIBM = _libm()
F = np.float32


def expf(x) -> np.float32:
    return F(_LIBM.expf(float(x))) if _LIBM is not None else F(np.exp(F(x)))


def logf(x) -> np.float32:
    return F(_LIBM.logf(float(x))) if _LIBM is not None else F(np.log(F(x)))


def roundf(x) -> np.float32:
    x = float(x)
    return F(math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5))


def lut_populate_int16(input_scale, input_zp, output_scale, output_zp, transform) -> np.ndarray:
    """TFLM LUTPopulateInt16<float>: 512 interpolation segments + 1 end point."""
    input_scale, output_scale = F(input_scale), F(output_scale)
    input_min = input_scale * F(-32768 - input_zp)
    input_max = input_scale * F(32767 - input_zp)
    output_min = output_scale * F(-32768 - output_zp)
    output_max = output_scale * F(32767 - output_zp)
    steps = 512
    step = (input_max - input_min) / F(steps)
    half_step = step / F(2)
    inv = F(65536) / (output_max - output_min)
    lo, hi = F(-32768), F(32767)
    lut = np.zeros(steps + 1, np.int16)
    for i in range(steps):
        val = transform(input_min + F(i) * step)
        val_mid = transform(input_min + F(i) * step + half_step)
        val_next = transform(input_min + F(i + 1) * step)
        sample = roundf(val * inv)
        interp = roundf((val_next * inv + roundf(val * inv)) / F(2))
        mid = roundf(val_mid * inv)
        bias = roundf((interp - mid) / F(2))
        lut[i] = int(min(max(sample - bias, lo), hi))
    lut[steps] = int(min(max(roundf(transform(input_max) * inv), lo), hi))
    return lut


def checked_log2(x: float):
    """TFLM CheckedLog2 in float32: (rounded log2, is a power of two)."""
    x_log2 = logf(x) * (F(1.0) / logf(F(2.0)))
    rounded = roundf(x_log2)
    return int(rounded), abs(float(x_log2 - rounded)) < float(F(1e-3))


# ---------------------------------------------------------------- int8 LOGISTIC / TANH tables
def _frexp_multiplier(real: float):
    """TFLM Logistic/Tanh Prepare: frexp + round, no renormalisation when q rounds to 1."""
    q, shift = math.frexp(real)
    m = int(tflite_round(q * (1 << 31)))
    return wrap_int32(m), shift


def int8_activation_lut(kind: str, s_in: float, z_in: int) -> np.ndarray:
    """256-entry table indexed by (uint8)x; entry = TFLM's int8 LOGISTIC / TANH output."""
    mult, shift = _frexp_multiplier(float(s_in) * float(1 << 27))
    if shift < 0:
        raise ValueError("input scale too small")
    radius = input_radius(4, shift)
    table = np.zeros(256, np.int8)
    for v in range(-128, 128):
        x = v - z_in
        if x <= -radius:
            y = -128
        elif x >= radius:
            y = 127
        else:
            q4 = multiply_by_quantized_multiplier(x, mult, shift)
            if kind == "logistic":
                y = max(-128, min(127, rdpot(fixed_logistic(q4, 4), 23) - 128))
            else:
                y = max(-128, min(127, rdpot(fixed_tanh(q4, 4), 24)))
        table[v & 0xFF] = y
    return table


def int16_activation_params(op, kind: str, s_in: float, s_out: float):
    """TFLM int16 LOGISTIC/TANH Prepare: (input_multiplier, input_left_shift)."""
    log2_in, pot = checked_log2(s_in)
    left_shift = (15 - 3) + log2_in
    pot = pot and (left_shift in ((0,) if kind == "logistic" else (0, 1)))
    if pot:
        mult = 0
    else:
        m = float(s_in) * 4096.0 * 3.0
        left_shift = 0
        while m <= 32767.0 / 2.0 and left_shift <= 30:
            left_shift += 1
            m *= 2.0
        mult = int(m)
    if mult > 32767:
        raise unsupported(op, f"input scale {s_in} is too large for the int16 {kind} kernel")
    log2_out, pot_out = checked_log2(s_out)
    if not pot_out or log2_out != -15:
        raise unsupported(op, f"output scale {s_out} must be 2^-15")
    if mult == 0:  # power-of-two case, resolved as the kernel does
        mult, left_shift = 3 << left_shift, 0
    return mult, left_shift


@lowers("LOGISTIC", "TANH")
def lower_logistic_tanh(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    sfx = kernel_suffix(op, inp)
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} with output {out.dtype}")
    kind = "logistic" if op.opcode == "LOGISTIC" else "tanh"
    n = inp.size
    if sfx == "f32":
        return Call(f"mm_{kind}_f32", [inp, out, str(n)], "mm_nonlinear.h", inplace=(0, 0))
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if sfx == "s8":
        if kind == "logistic" and z_out != -128:
            raise unsupported(op, f"output zero point {z_out} must be -128")
        try:
            lut = int8_activation_lut(kind, s_in, z_in)
        except ValueError as exc:
            raise unsupported(op, f"input scale {s_in}: {exc}") from None
        return Call(
            f"mm_{kind}_s8",
            [ctx.array(f"{op.name}_lut", lut, "int8"), inp, out, str(n)],
            "mm_nonlinear.h",
            inplace=(0, 0),
        )
    if z_in != 0 or z_out != 0:
        raise unsupported(op, "int16 input and output zero points must be 0")
    mult, shift = int16_activation_params(op, kind, s_in, s_out)
    params = ctx.struct(f"{op.name}_p", "mm_nonlinear_params", dict(input_multiplier=mult, input_left_shift=shift))
    return Call(f"mm_{kind}_s16", [params, inp, out, str(n)], "mm_nonlinear.h", inplace=(0, 0))
