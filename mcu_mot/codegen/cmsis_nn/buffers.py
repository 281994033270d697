"""Scratch sizes of the CMSIS-NN functions, computed at compile time.

Each function mirrors what the library's *_get_buffer_size returns when it is
compiled for the target (GCC; isa "mve" = ARM_MATH_MVEI, "dsp" = ARM_MATH_DSP,
"plain" = neither), so the scratch can be planned in the arena. The tests
check them against the library's own *_get_buffer_size_dsp / _mve functions
compiled on the host.

Shapes: dims are (n, h, w, c) tuples as in cmsis_nn_dims; `conv` carries
padding, stride and dilation as (h, w) pairs.
"""

from __future__ import annotations

CH_IN_BLOCK_MVE = 124
DW_ONE_IN_CH_THRESHOLD = 1  # GCC value (armclang uses 8)


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _is_1x1(conv, inp, filt) -> bool:
    return (
        conv["padding"] == (0, 0) and filt[1] == 1 and filt[2] == 1 and conv["dilation"] == (1, 1) and inp[3] == filt[3]
    )


def _is_1_x_n(conv, inp, filt) -> bool:
    return (
        inp[1] == 1
        and conv["dilation"][1] == 1
        and filt[1] == 1
        and (conv["stride"][1] * inp[3]) % 4 == 0
        and inp[3] == filt[3]
    )


def _conv_s8_im2col(isa, inp, filt) -> int:
    cols = filt[2] * filt[1] * inp[3]
    if isa == "mve":
        return 4 * ((cols + 15) // 16) * 16
    aligned = cols + (4 - cols % 4) % 4
    return 2 * aligned * 2


def _conv_1_x_n_s8_mve(conv, inp, filt, out) -> int:
    in_x, pad_x, k_x, out_x, s_x = inp[2], conv["padding"][1], filt[2], out[2], conv["stride"][1]
    total_pad = (out_x - 1) * s_x + k_x - in_x
    asym = _cmod(total_pad, 2)
    right = max(1, _cdiv(pad_x + asym + s_x - 1, s_x)) if pad_x + asym != 0 else 0
    left = max(1, _cdiv(pad_x + s_x - 1, s_x)) if pad_x != 0 else 0
    no_pad = max(out_x - (right + left), 0)
    if right + no_pad + left != out_x:
        return _conv_s8_im2col("mve", inp, filt)
    pad_left = pad_x * inp[3]
    pad_right = right * inp[3] if asym else pad_left
    elem_left = k_x * inp[3]
    elem_right = elem_left - inp[3]
    return max(elem_left + pad_left, elem_right + pad_right)


def convolve_wrapper_s8(isa, conv, inp, filt, out) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size."""
    if _is_1x1(conv, inp, filt):
        return 0  # the 1x1 fast path only takes a buffer with armclang on DSP
    if _is_1_x_n(conv, inp, filt):
        return _conv_1_x_n_s8_mve(conv, inp, filt, out) if isa == "mve" else _conv_s8_im2col(isa, inp, filt)
    return _conv_s8_im2col(isa, inp, filt)


def convolve_wrapper_s16(isa, conv, inp, filt, out) -> int:
    """arm_convolve_wrapper_s16_get_buffer_size."""
    cols = inp[3] * filt[2] * filt[1]
    if isa == "mve":
        return 4 * ((cols + 7) // 8) * 8 * 2
    return 2 * cols * 2


def depthwise_to_conv_mve(dw, inp, filt, out) -> int:
    """MVE: a depthwise conv with one input channel runs as a conv; scratch = conv's + the
    transposed filter."""
    conv_filt = (filt[3], filt[1], filt[2], filt[0])
    return convolve_wrapper_s8("mve", dw, inp, conv_filt, out) + filt[0] * filt[1] * filt[2] * filt[3]


def depthwise_wrapper_s8(isa, dw, inp, filt, out) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size (filt = (1, h, w, out_c))."""
    if isa == "mve" and inp[3] == 1 and out[3] > DW_ONE_IN_CH_THRESHOLD:
        return depthwise_to_conv_mve(dw, inp, filt, out)
    if inp[3] == out[3] and inp[0] == 1 and dw["dilation"] == (1, 1):
        if isa == "mve":
            return 4 * CH_IN_BLOCK_MVE * filt[2] * filt[1]
        if isa == "dsp":
            if filt[1] == 3 and filt[2] == 3 and dw["padding"][0] <= 1 and dw["padding"][1] <= 1:
                return 0
            return inp[3] * filt[2] * filt[1] * 2
    return 0


def depthwise_wrapper_s16(isa, dw, inp, filt, out) -> int:
    """arm_depthwise_conv_wrapper_s16_get_buffer_size."""
    fast = dw["ch_mult"] == 1 and dw["dilation"] == (1, 1) and filt[2] * filt[1] < 512
    if not fast:
        return 0
    if isa == "mve":
        return 4 * inp[3] * filt[2] * filt[1] * 2 + 8
    if isa == "dsp":
        return inp[3] * filt[2] * filt[1] * 2
    return 0


def fully_connected_s8(isa, out_depth: int) -> int:
    """arm_fully_connected_s8_get_buffer_size: MVE wants the kernel sums (we pass them as
    constants, computed at compile time, instead of a scratch buffer)."""
    return out_depth * 4 if isa == "mve" else 0


def avgpool(isa, out_w: int, channels: int) -> int:
    """arm_avgpool_s8/s16_get_buffer_size."""
    return channels * 4 if isa == "dsp" else 0
