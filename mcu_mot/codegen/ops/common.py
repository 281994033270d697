"""Helpers shared by the lowerings: dtype suffixes, activation ranges, requantization."""
from __future__ import annotations

import numpy as np

from mcu_mot.ir.graph import Op, Tensor
from mcu_mot.ir.quantize import activation_range, f32, quantize_multipliers
from mcu_mot.codegen.lowering import unsupported

_SAME, _VALID = 0, 1   # tflite Padding

SUFFIX = {"int8": "s8", "int16": "s16", "float32": "f32"}


def kernel_suffix(op: Op, tensor: Tensor, allowed=("int8", "int16", "float32")) -> str:
    if tensor.dtype not in allowed:
        raise unsupported(op, f"dtype {tensor.dtype} is not supported")
    return SUFFIX[tensor.dtype]


def qparams(op: Op, tensor: Tensor) -> tuple[float, int]:
    """(scale, zero_point) of a per-tensor quantized tensor, as TFLM stores them."""
    if tensor.quant is None:
        raise unsupported(op, f"tensor '{tensor.name}' has no quantization parameters")
    s, z = tensor.quant.single()
    return f32(s), z


def fused_range(op: Op, out: Tensor):
    fused = int(op.options.get("fused_activation_function", 0))
    if fused not in (0, 1, 2, 3):
        raise unsupported(op, f"fused activation {fused}")
    if out.dtype == "float32":
        return activation_range(fused, "float32")
    s, z = qparams(op, out)
    return activation_range(fused, out.dtype, s, z)


def channel_multipliers(op: Op, inp: Tensor, weights: Tensor, out: Tensor, channels: int):
    """Per-output-channel (multiplier, shift) = QuantizeMultiplier(s_in*s_w[c]/s_out) in double."""
    s_in, _ = qparams(op, inp)
    s_out, _ = qparams(op, out)
    if weights.quant is None:
        raise unsupported(op, f"weights '{weights.name}' are not quantized")
    w_scales = weights.quant.scale.astype(np.float32).astype(np.float64)
    if w_scales.size == 1:
        w_scales = np.repeat(w_scales, channels)
    reals = [s_in * float(ws) / s_out for ws in w_scales]
    mult, shift = quantize_multipliers(reals)
    if shift.size and int(shift.max()) > 31:     # a left shift past 31 bits: undefined in C (and TFLM)
        raise unsupported(op, f"rescaling factor {max(reals):.6g} is too large (degenerate output scale "
                              f"{s_out!r} of '{out.name}')")
    return mult, shift


def folded_bias(bias: Tensor | None, weights_by_channel: np.ndarray, input_offset: int,
                dtype: str = "int32") -> np.ndarray:
    """bias[c] + input_offset * sum(w[c, ...]): the zero-point correction done at compile time.

    Computed with wrap-around in the accumulator type, exactly as the device would.
    """
    channels = weights_by_channel.shape[0]
    sums = weights_by_channel.reshape(channels, -1).astype(np.int64).sum(axis=1)
    b = bias.data.astype(np.int64) if bias is not None else np.zeros(channels, np.int64)
    folded = b + input_offset * sums
    if dtype == "int32":
        return ((folded + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
    return folded.astype(np.int64)

def _cdiv(a: int, b: int) -> int:
    """C integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q

def tflm_padding(op, padding: int, stride: int, dilation: int, in_size: int, k: int) -> int:
    """TFLM ComputePaddingHeightWidth for one dimension (the leading padding)."""
    if padding not in (_SAME, _VALID):
        raise unsupported(op, f"padding type {padding}")
    if stride <= 0 or dilation <= 0 or k <= 0:
        raise unsupported(op, f"stride {stride} / dilation {dilation} / filter size {k}")
    eff = (k - 1) * dilation + 1
    out = _cdiv(in_size + stride - 1, stride) if padding == _SAME else _cdiv(in_size + stride - eff, stride)
    if out < 0:
        return 0
    total = max(0, (out - 1) * stride + eff - in_size)
    return total // 2
