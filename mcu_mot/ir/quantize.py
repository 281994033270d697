"""Compile-time quantization arithmetic, mirroring TFLite Micro exactly.

Every multiplier/shift the device uses is computed here once, so the
generated C does no float math. Functions follow TFLM's quantization_util:
same frexp split, same round-half-away-from-zero, same flush-to-zero.
"""

from __future__ import annotations

import math

import numpy as np

from mcu_mot.errors import MotError


def tflite_round(x: float) -> float:
    """std::round: half away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier: real ~= m * 2^(shift-31), m in [2^30, 2^31)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise MotError(f"the model's quantization scales give a rescale factor of {real!r} (not finite)")
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of quantize_multiplier, as int32 arrays for the C tables."""
    pairs = [quantize_multiplier(r) for r in np.atleast_1d(reals)]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def wrap_int32(v):
    """Two's-complement wrap to int32, as C's int32_t arithmetic does: a Python int gives an int,
    anything else an np.int32 array (computed in int64, so inputs must fit int64)."""
    if isinstance(v, (int, np.integer)):
        return (int(v) + (1 << 31)) % (1 << 32) - (1 << 31)
    a = np.asarray(v, np.int64)
    return ((a + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def f32(x) -> float:
    """Round a Python float to float32 precision, as TFLM stores `params.scale`."""
    return float(np.float32(x))


def activation_range(fused: int, dtype: str, scale: float = 1.0, zero_point: int = 0) -> tuple:
    """TFLM CalculateActivationRangeQuantized (int) or the float range.

    fused: TFLite ActivationFunctionType (0 none, 1 relu, 2 relu_n1_to_1, 3 relu6).
    """
    if dtype == "float32":
        big = float(np.finfo(np.float32).max)  # TFLM uses numeric_limits<float>::lowest()/max()
        lo, hi = -big, big
        if fused == 1:
            lo = 0.0
        elif fused == 2:
            lo, hi = -1.0, 1.0
        elif fused == 3:
            lo, hi = 0.0, 6.0
        return np.float32(lo), np.float32(hi)
    ranges = {"int8": (-128, 127), "int16": (-32768, 32767), "uint8": (0, 255)}
    if dtype not in ranges:
        raise MotError(f"no activation range for a {dtype} output (int8, int16, uint8 or float32)")
    qmin, qmax = ranges[dtype]

    # TFLM computes f / scale in float (scale is a float); emulate float32 division
    def qf(v):
        return zero_point + int(tflite_round(float(np.float32(v) / np.float32(scale))))

    if fused == 0:
        return qmin, qmax
    if fused == 1:
        return max(qmin, qf(0.0)), qmax
    if fused == 3:
        return max(qmin, qf(0.0)), min(qmax, qf(6.0))
    if fused == 2:
        return max(qmin, qf(-1.0)), min(qmax, qf(1.0))
    raise ValueError(f"unsupported fused activation {fused}")
