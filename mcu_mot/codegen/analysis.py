"""One analysis of an op for every backend: geometry, quantization fields and proven
requantization ranges, as small dataclasses computed from the Op alone.

The portable lowerings (codegen/ops) and the CMSIS-NN ones (codegen/cmsis_nn) both start
from these and only map them to their C call (field names, struct layouts, weight layouts,
arrays). Nothing here touches a LoweringContext, so calling an analysis twice, or for a
backend that then declines the layer, has no effect on the generated code.

Everything mirrors TFLite Micro's Prepare functions: padding from ComputePaddingHeightWidth,
multipliers from QuantizeMultiplier in double from the float32 scales, activation ranges from
CalculateActivationRange(Quantized). An op neither backend can lower raises
`unsupported(op, why)` (a one-line MotError); what a backend merely does not cover is that
backend's own check (cmsis_nn raises NotCovered before calling in here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mcu_mot.codegen.lowering import unsupported
from mcu_mot.ir.graph import Op, Tensor
from mcu_mot.ir.quantize import activation_range, f32, quantize_multiplier, quantize_multipliers, wrap_int32

SAME, VALID = 0, 1  # tflite Padding

FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------ per-tensor quantization
def weighted_operands(op):
    """(input, weights, bias or None, output) of a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED."""
    return op.inputs[0], op.inputs[1], (op.inputs[2] if len(op.inputs) > 2 else None), op.outputs[0]


def qparams(op: Op, tensor: Tensor) -> tuple[float, int]:
    """(scale, zero_point) of a per-tensor quantized tensor, as TFLM stores them."""
    if tensor.quant is None:
        raise unsupported(op, f"tensor '{tensor.name}' has no quantization parameters")
    s, z = tensor.quant.single()
    return f32(s), z


def fused_activation(op: Op) -> int:
    """The op's fused activation (0 none, 1 relu, 2 relu_n1_to_1, 3 relu6)."""
    fused = int(op.options.get("fused_activation_function", 0))
    if fused not in (0, 1, 2, 3):
        raise unsupported(op, f"fused activation {fused}")
    return fused


def fused_range(op: Op, out: Tensor):
    """TFLM CalculateActivationRange(Quantized) for the op's fused activation on `out`:
    (act_min, act_max) as ints, or as float32 (+-FLT_MAX when unbounded) for a float output."""
    fused = fused_activation(op)
    if out.dtype == "float32":
        return activation_range(fused, "float32")
    s, z = qparams(op, out)
    return activation_range(fused, out.dtype, s, z)


def float_range(op: Op) -> tuple[float, float]:
    """TFLM CalculateActivationRange<float> as Python floats: unbounded sides are +-FLT_MAX."""
    return {0: (-FLT_MAX, FLT_MAX), 1: (0.0, FLT_MAX), 2: (-1.0, 1.0), 3: (0.0, 6.0)}[fused_activation(op)]


def checked_multiplier(op: Op, real: float, what: str = "rescaling factor") -> tuple[int, int]:
    """QuantizeMultiplier, refusing factors >= 2^31: the left shift would exceed 31 bits
    (undefined in C, and different between TFLM builds for x86 and Arm)."""
    if not np.isfinite(real):
        raise unsupported(op, f"{what} {real!r} is not finite (degenerate scales)")
    mult, shift = quantize_multiplier(real)
    if shift > 31:
        raise unsupported(op, f"{what} {real:.6g} is too large (degenerate output scale)")
    return mult, shift


def smaller_than_one(op: Op, real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplierSmallerThanOneExp: aborts unless 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise unsupported(op, f"rescaling factor {real!r} is outside (0, 1)")
    return quantize_multiplier(real)


def channel_multipliers(op: Op, inp: Tensor, weights: Tensor, out: Tensor, channels: int):
    """Per-output-channel (multiplier, shift) = QuantizeMultiplier(s_in*s_w[c]/s_out) in double,
    as int32 arrays."""
    s_in, _ = qparams(op, inp)
    s_out, _ = qparams(op, out)
    if weights.quant is None:
        raise unsupported(op, f"weights '{weights.name}' are not quantized")
    w_scales = weights.quant.scale.astype(np.float32).astype(np.float64)
    if w_scales.size == 1:
        w_scales = np.repeat(w_scales, channels)
    reals = [s_in * float(ws) / s_out for ws in w_scales]
    mult, shift = quantize_multipliers(reals)
    if shift.size and int(shift.max()) > 31:  # a left shift past 31 bits: undefined in C (and TFLM)
        raise unsupported(
            op, f"rescaling factor {max(reals):.6g} is too large (degenerate output scale {s_out!r} of '{out.name}')"
        )
    return mult, shift


# ------------------------------------------------------------------ windows: padding
def _cdiv(a: int, b: int) -> int:
    """C integer division (truncation toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def tflm_padding(op, padding: int, stride: int, dilation: int, in_size: int, k: int) -> int:
    """TFLM ComputePaddingHeightWidth for one dimension (the leading padding)."""
    if padding not in (SAME, VALID):
        raise unsupported(op, f"padding type {padding}")
    if stride <= 0 or dilation <= 0 or k <= 0:
        raise unsupported(op, f"stride {stride} / dilation {dilation} / filter size {k}")
    eff = (k - 1) * dilation + 1
    out = _cdiv(in_size + stride - 1, stride) if padding == SAME else _cdiv(in_size + stride - eff, stride)
    if out < 0:
        return 0
    total = max(0, (out - 1) * stride + eff - in_size)
    return total // 2


# ------------------------------------------------------------------ convolutions
@dataclass(frozen=True)
class ConvGeometry:
    """CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV geometry, NHWC. For TRANSPOSE_CONV
    the padding is computed with the output as the "image" (dilation 1)."""

    batches: int
    in_h: int
    in_w: int
    in_c: int
    out_h: int
    out_w: int
    out_c: int
    k_h: int
    k_w: int
    k_c: int  # filter depth: in_c / groups (CONV_2D), 1 (depthwise), in_c (transpose)
    groups: int  # CONV_2D channel groups (1 otherwise)
    depth_mult: int  # DEPTHWISE_CONV_2D depth multiplier (1 otherwise)
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_h: int
    pad_w: int
    macs: int

    @property
    def oc_per_group(self) -> int:
        return self.out_c // self.groups


# The geometry as the kernels' parameter fields (designated initializers: the order is for reading)
_SHAPE_FIELDS = ("batches", "in_h", "in_w", "in_c", "out_h", "out_w")
_WINDOW_FIELDS = ("stride_h", "stride_w", "dil_h", "dil_w", "pad_h", "pad_w")
CONV_FIELDS = _SHAPE_FIELDS + ("out_c", "k_h", "k_w", "k_c", "oc_per_group") + _WINDOW_FIELDS
DEPTHWISE_FIELDS = _SHAPE_FIELDS + ("out_c", "depth_mult", "k_h", "k_w") + _WINDOW_FIELDS
DEPTHWISE_3X3_FIELDS = _SHAPE_FIELDS + _WINDOW_FIELDS
HYBRID_FIELDS = _SHAPE_FIELDS + ("out_c", "k_h", "k_w") + _WINDOW_FIELDS
TRANSPOSE_CONV_FIELDS = _SHAPE_FIELDS + ("out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_h", "pad_w")


def geometry_fields(g: ConvGeometry, names) -> dict:
    """The named geometry values, as a kernel's parameter fields."""
    return {n: getattr(g, n) for n in names}


def _check_4d(op, *tensors):
    for t in tensors:
        if len(t.shape) != 4:
            raise unsupported(op, f"tensor '{t.name}' has shape {t.shape}, expected 4-D NHWC")


def _strides(op) -> tuple[int, int, int, int, int]:
    o = op.options
    return (
        int(o.get("stride_h", 1)),
        int(o.get("stride_w", 1)),
        int(o.get("dilation_h_factor", 1)),
        int(o.get("dilation_w_factor", 1)),
        int(o.get("padding", SAME)),
    )


def window_geometry(
    op,
    inp: Tensor,
    out: Tensor,
    k_h: int,
    k_w: int,
    *,
    k_c: int,
    groups: int = 1,
    depth_mult: int = 1,
    macs: Optional[int] = None,
) -> ConvGeometry:
    """The geometry of a windowed op over 4-D `inp` -> `out` (strides, dilations and padding
    from its options), the filter shape already checked by the caller."""
    batches, in_h, in_w, in_c = (int(d) for d in inp.shape)
    _, out_h, out_w, out_c = (int(d) for d in out.shape)
    s_h, s_w, d_h, d_w, padding = _strides(op)
    if macs is None:
        macs = batches * out_h * out_w * out_c * k_h * k_w * k_c
    return ConvGeometry(
        batches,
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c,
        int(k_h),
        int(k_w),
        int(k_c),
        groups,
        depth_mult,
        s_h,
        s_w,
        d_h,
        d_w,
        tflm_padding(op, padding, s_h, d_h, in_h, k_h),
        tflm_padding(op, padding, s_w, d_w, in_w, k_w),
        macs,
    )


def conv_geometry(op) -> ConvGeometry:
    """CONV_2D: input, filter (out_c, k_h, k_w, k_c) and output 4-D, in_c a multiple of k_c
    (channel groups), out_c a multiple of the group count."""
    inp, weights, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _check_4d(op, inp, weights, out)
    batches, _, _, in_c = inp.shape
    out_c, k_h, k_w, k_c = (int(d) for d in weights.shape)
    if out.shape[3] != out_c or out.shape[0] != batches:
        raise unsupported(op, f"output shape {out.shape} does not match filter {weights.shape}")
    if k_c <= 0 or in_c <= 0 or in_c % k_c:
        raise unsupported(op, f"input depth {in_c} is not a multiple of filter depth {k_c}")
    groups = in_c // k_c
    if out_c % groups:
        raise unsupported(op, f"{out_c} output channels cannot be split into {groups} groups")
    return window_geometry(op, inp, out, k_h, k_w, k_c=k_c, groups=groups)


def depthwise_geometry(op) -> ConvGeometry:
    """DEPTHWISE_CONV_2D: filter (1, k_h, k_w, out_c), out_c = in_c * depth_multiplier."""
    inp, weights, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _check_4d(op, inp, weights, out)
    batches, _, _, in_c = inp.shape
    one, k_h, k_w, out_c = (int(d) for d in weights.shape)
    if one != 1 or out.shape[3] != out_c or out.shape[0] != batches:
        raise unsupported(op, f"filter {weights.shape} does not match output {out.shape}")
    dm = int(op.options.get("depth_multiplier", 1))
    if dm <= 0 or in_c * dm != out_c:
        raise unsupported(op, f"depth_multiplier {dm} with {in_c} input and {out_c} output channels")
    return window_geometry(op, inp, out, k_h, k_w, k_c=1, depth_mult=dm)


def transpose_conv_geometry(op) -> ConvGeometry:
    """TRANSPOSE_CONV (inputs output_shape, filter, input[, bias]): filter (out_c, k_h, k_w, in_c);
    padding with the output as the image, dilation 1."""
    if len(op.inputs) < 3:
        raise unsupported(op, f"{len(op.inputs)} inputs, expected output_shape, weights, input[, bias]")
    weights, inp, out = op.inputs[1], op.inputs[2], op.outputs[0]
    _check_4d(op, inp, weights, out)
    batches, in_h, in_w, in_c = (int(d) for d in inp.shape)
    out_c, k_h, k_w, k_c = (int(d) for d in weights.shape)
    _, out_h, out_w, out_c2 = (int(d) for d in out.shape)
    if k_c != in_c or out_c2 != out_c or out.shape[0] != batches:
        raise unsupported(op, f"filter {weights.shape} does not match input {inp.shape} / output {out.shape}")
    s_h, s_w, _, _, padding = _strides(op)
    return ConvGeometry(
        batches,
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c,
        k_h,
        k_w,
        k_c,
        1,
        1,
        s_h,
        s_w,
        1,
        1,
        tflm_padding(op, padding, s_h, 1, out_h, k_h),
        tflm_padding(op, padding, s_w, 1, out_w, k_w),
        batches * in_h * in_w * in_c * k_h * k_w * out_c,
    )


@dataclass(frozen=True)
class ConvQuant:
    """int8 / int16x8 per-channel requantization of a convolution or FULLY_CONNECTED."""

    input_zp: int
    output_zp: int
    act_min: int
    act_max: int
    multiplier: np.ndarray  # int32 per output channel
    shift: np.ndarray  # int32 per output channel (left shift, negative = right)

    @property
    def input_offset(self) -> int:
        """What TFLM adds to each input value: the negated zero point."""
        return -self.input_zp


def conv_quant(op, inp: Tensor, weights: Tensor, out: Tensor, channels: int) -> ConvQuant:
    """Zero points, activation range and per-channel multipliers; the weights carry one scale
    or one per output channel."""
    if inp.quant is None or out.quant is None or weights.quant is None:
        raise unsupported(op, "missing quantization parameters")
    if weights.quant.scale.size not in (1, channels):
        raise unsupported(
            op, f"weights '{weights.name}' have {weights.quant.scale.size} scales for {channels} output channels"
        )
    _, in_zp = qparams(op, inp)
    _, out_zp = qparams(op, out)
    act_min, act_max = fused_range(op, out)
    mult, shift = channel_multipliers(op, inp, weights, out, channels)
    return ConvQuant(in_zp, out_zp, act_min, act_max, mult, shift)


def bias_values(op, bias: Optional[Tensor], channels: int, allowed: tuple) -> np.ndarray:
    """Bias as int64 (zeros if absent); rejects bias dtypes the TFLM kernel would misread."""
    if bias is None:
        return np.zeros(channels, np.int64)
    if not bias.is_const:
        raise unsupported(op, f"non-constant bias '{bias.name}'")
    if bias.dtype not in allowed:
        raise unsupported(op, f"{bias.dtype} bias '{bias.name}' (TFLM expects {'/'.join(allowed)})")
    if bias.size != channels:
        raise unsupported(op, f"bias '{bias.name}' has {bias.size} values for {channels} channels")
    return bias.data.astype(np.int64).ravel()


def fold_bias(bias: np.ndarray, w_by_channel: np.ndarray, input_offset: int, dtype: str = "int32") -> np.ndarray:
    """bias[c] + input_offset * sum(w[c, ...]): the input zero-point correction done at compile
    time, in wrap-around int32 as the device adds it (dtype "int64": exact)."""
    sums = w_by_channel.reshape(w_by_channel.shape[0], -1).astype(np.int64).sum(axis=1)
    folded = np.asarray(bias, np.int64) + input_offset * sums
    return wrap_int32(folded) if dtype == "int32" else folded.astype(np.int64)


# ------------------------------------------------------------------ proven requantization
@dataclass(frozen=True)
class FastRequant8:
    """int8 requantization out = (acc * M + C) >> E in one SMMLAR-style step, per channel,
    proven exact for every accumulator the layer can produce."""

    multiplier: np.ndarray  # M (int64 values, int32 range)
    constant: np.ndarray  # C = rounding + output zero point << E
    exponent: np.ndarray  # E = -shift, 1..31


def accumulator_bound(folded_bias: np.ndarray, w_by_channel: np.ndarray, max_input: int) -> np.ndarray:
    """|acc| per channel for any input of magnitude <= max_input (128 int8, 32768 int16)."""
    w = np.asarray(w_by_channel, np.int64).reshape(len(folded_bias), -1)
    return np.abs(np.asarray(folded_bias, np.int64)) + np.abs(w).sum(axis=1) * max_input


def fast_requant_s8(quant: ConvQuant, folded: np.ndarray, w_by_channel: np.ndarray) -> Optional[FastRequant8]:
    """The int8 fast requantization, or None where the compile-time bound on the accumulator
    (folded bias + |w| x 128) does not prove it exact (see mm_conv_gemm.h)."""
    mult, shift = np.asarray(quant.multiplier, np.int64), np.asarray(quant.shift, np.int64)
    e = -shift
    if not (np.all(e >= 1) and np.all(e <= 31) and np.all(mult >= 0)):
        return None
    c = (1 << (e - 1)) + quant.output_zp * (1 << e)
    bound = accumulator_bound(folded, w_by_channel, 128)
    if not (np.all(2 * bound < (1 << 30)) and np.all(bound + np.abs(c) + 2 < (1 << 30))):
        return None
    return FastRequant8(mult, c, e)


def reduced_multipliers_s16(quant: ConvQuant) -> tuple[np.ndarray, np.ndarray]:
    """(R, T): TFLM's 16-bit reduced multiplier and its total right shift 15 - shift (int64)."""
    mult, shift = np.asarray(quant.multiplier, np.int64), np.asarray(quant.shift, np.int64)
    return np.where(mult < 0x7FFF0000, (mult + (1 << 15)) >> 16, 0x7FFF), 15 - shift


def fast_requant_s16(quant: ConvQuant, bias: np.ndarray, w_by_channel: np.ndarray) -> Optional[np.ndarray]:
    """int16x8: the per-channel multipliers R << (32 - T) of the one-instruction requantization
    SMMULR / VRMULH(acc + bias, .), or None unless every accumulator provably fits int32 and
    16 <= T <= 32."""
    reduced, total = reduced_multipliers_s16(quant)
    bound = accumulator_bound(bias, w_by_channel, 32768)
    if not (np.all(total >= 16) and np.all(total <= 32) and np.all(bound < (1 << 31) - 1)):
        return None
    return reduced << (32 - total)


# ------------------------------------------------------------------ FULLY_CONNECTED
@dataclass(frozen=True)
class FcGeometry:
    batches: int
    in_depth: int
    out_depth: int

    @property
    def macs(self) -> int:
        return self.batches * self.in_depth * self.out_depth


def fc_geometry(op) -> FcGeometry:
    """FULLY_CONNECTED: weights (out_depth, in_depth); every in_depth input values are a batch."""
    inp, weights = op.inputs[0], op.inputs[1]
    out_depth, in_depth = int(weights.shape[-2]), int(weights.shape[-1])
    return FcGeometry(inp.size // in_depth, in_depth, out_depth)


@dataclass(frozen=True)
class FcQuant(ConvQuant):
    weights_zp: int = 0  # per-tensor weight zero point (0 when per-channel)
    per_channel: bool = False


def fc_quant(op, out_depth: int) -> FcQuant:
    inp, weights, out = op.inputs[0], op.inputs[1], op.outputs[0]
    _, in_zp = qparams(op, inp)
    _, out_zp = qparams(op, out)
    if weights.quant is None:
        raise unsupported(op, f"weights '{weights.name}' are not quantized")
    per_channel = weights.quant.scale.size > 1
    w_zp = 0 if per_channel else int(weights.quant.zero_point[0])
    act_min, act_max = fused_range(op, out)
    mult, shift = channel_multipliers(op, inp, weights, out, out_depth)
    return FcQuant(in_zp, out_zp, act_min, act_max, mult, shift, w_zp, per_channel)


# ------------------------------------------------------------------ pools
@dataclass(frozen=True)
class PoolGeometry:
    batches: int
    in_h: int
    in_w: int
    depth: int
    out_h: int
    out_w: int
    stride_h: int
    stride_w: int
    filter_h: int
    filter_w: int
    pad_h: int
    pad_w: int

    @property
    def macs(self) -> int:
        return self.batches * self.out_h * self.out_w * self.depth * self.filter_h * self.filter_w


def pool_out_size(padding: int, size: int, filter_size: int, stride: int) -> int:
    """TFLite's windowed output size; padding 0 = SAME, 1 = VALID (schema enum)."""
    if padding == SAME:
        return (size + stride - 1) // stride
    return (size - filter_size + stride) // stride


def pool_geometry(op) -> PoolGeometry:
    """AVERAGE_POOL_2D / MAX_POOL_2D over 4-D NHWC; the output shape must be the computed one."""
    inp, out = op.inputs[0], op.outputs[0]
    o = op.options
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise unsupported(op, f"input '{inp.name}' must be 4-D NHWC, got shape {inp.shape}")
    n, h, w, c = (int(d) for d in inp.shape)
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    fh, fw = int(o.get("filter_height", 1)), int(o.get("filter_width", 1))
    padding = int(o.get("padding", SAME))
    if padding not in (SAME, VALID) or min(sh, sw, fh, fw) < 1:
        raise unsupported(op, f"padding {padding}, strides {sh}x{sw}, filter {fh}x{fw}")
    oh, ow = pool_out_size(padding, h, fh, sh), pool_out_size(padding, w, fw, sw)
    if (n, oh, ow, c) != tuple(out.shape):
        raise unsupported(op, f"output shape {out.shape} does not match the computed {(n, oh, ow, c)}")
    # TFLM ComputePadding (dilation 1): the top/left half of the total padding
    return PoolGeometry(
        n, h, w, c, oh, ow, sh, sw, fh, fw, max(0, (oh - 1) * sh + fh - h) // 2, max(0, (ow - 1) * sw + fw - w) // 2
    )


def pool_quant(op) -> tuple[int, int]:
    """Integer pools: TFLM requires equal input and output quantization (no rescaling);
    the fused-activation range (act_min, act_max)."""
    inp, out = op.inputs[0], op.outputs[0]
    s_in, z_in = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if abs(s_in - s_out) > 1e-6 or z_in != z_out:
        raise unsupported(
            op, f"input '{inp.name}' and output '{out.name}' quantization differ (TFLM requires them equal)"
        )
    return fused_range(op, out)


# ------------------------------------------------------------------ ADD / SUB / MUL
@dataclass(frozen=True)
class AddQuant:
    """int8 / int16 ADD and SUB: TFLM's general path (left shift 20 / 15)."""

    input1_offset: int
    input1_multiplier: int
    input1_shift: int
    input2_offset: int
    input2_multiplier: int
    input2_shift: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    left_shift: int
    act_min: int
    act_max: int


def add_quant(op) -> AddQuant:
    """TFLM ADD Prepare in double (the reference interpreter's SUB matches the same arithmetic)."""
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    left_shift = 15 if out.dtype == "int16" else 20
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = smaller_than_one(op, s1 / twice_max)
    m2, sh2 = smaller_than_one(op, s2 / twice_max)
    mo, sho = smaller_than_one(op, twice_max / ((1 << left_shift) * so))
    act_min, act_max = fused_range(op, out)
    return AddQuant(-z1, m1, sh1, -z2, m2, sh2, zo, mo, sho, left_shift, act_min, act_max)


@dataclass(frozen=True)
class MulQuant:
    input1_offset: int
    input2_offset: int
    output_offset: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def mul_quant(op) -> MulQuant:
    """TFLM MUL Prepare: one multiplier s1 * s2 / s_out in double; int16 needs zero points 0."""
    a, b, out = op.inputs[0], op.inputs[1], op.outputs[0]
    s1, z1 = qparams(op, a)
    s2, z2 = qparams(op, b)
    so, zo = qparams(op, out)
    if out.dtype == "int16" and (z1, z2, zo) != (0, 0, 0):
        raise unsupported(op, f"int16 MUL needs zero points 0 (got {z1}, {z2}, {zo})")
    mult, shift = checked_multiplier(op, s1 * s2 / so)
    act_min, act_max = fused_range(op, out)
    return MulQuant(-z1, -z2, zo, mult, shift, act_min, act_max)


# ------------------------------------------------------------------ SOFTMAX
@dataclass(frozen=True)
class SoftmaxS8:
    """int8-input SOFTMAX (int8 or int16 output): TFLM's fixed-point exp parameters."""

    outer: int
    depth: int
    multiplier: int
    left_shift: int
    diff_min: int  # -CalculateInputRadius(5, left_shift): differences below it give exp 0


def input_radius(int_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """TFLM CalculateInputRadius (double arithmetic, floor)."""
    v = 1.0 * ((1 << int_bits) - 1) * (1 << (total_bits - int_bits)) / (1 << left_shift)
    return int(math.floor(v))


def softmax_s8(op) -> SoftmaxS8:
    """Checks TFLM's output quantization (int8: 1/256, -128; int16: 1/65536, -32768) and
    derives the input multiplier from beta * s_in * 2^26."""
    inp, out = op.inputs[0], op.outputs[0]
    if not inp.shape:
        raise unsupported(op, "scalar input")
    s_in, _ = qparams(op, inp)
    s_out, z_out = qparams(op, out)
    if out.dtype == "int8":
        if z_out != -128 or np.float32(s_out) != np.float32(1.0 / 256):
            raise unsupported(op, "int8 output must have scale 1/256 and zero point -128")
    elif out.dtype == "int16":
        if z_out != -32768 or abs(s_out - 1.0 / 65536) > 0.001 / 65536:
            raise unsupported(op, "int16 output must have scale 1/65536 and zero point -32768")
    else:
        raise unsupported(op, f"int8 input with {out.dtype} output")
    beta = float(op.options.get("beta", 1.0))
    real = min(beta * float(s_in) * float(1 << (31 - 5)), float((1 << 31) - 1))
    if real <= 1.0:
        raise unsupported(op, f"beta * input scale {beta * s_in} is too small")
    mult, left_shift = quantize_multiplier(real)
    depth = int(inp.shape[-1])
    return SoftmaxS8(inp.size // depth if depth else 0, depth, mult, left_shift, -input_radius(5, left_shift))
