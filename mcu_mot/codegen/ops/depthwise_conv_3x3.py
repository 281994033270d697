"""DEPTHWISE_CONV_2D 3x3 with depth multiplier 1 on cores with DSP or Helium (int8, int16x8):
the kernels of mm_depthwise_conv_3x3.h, with their packed weight layouts and, where the
compiler proves it exact (codegen/analysis.py), the fast requantization; depthwise_conv.py
hands these layers over."""

import numpy as np

from mcu_mot.codegen.analysis import (
    DEPTHWISE_3X3_FIELDS,
    ConvGeometry,
    bias_values,
    conv_quant,
    fast_requant_s8,
    fast_requant_s16,
    fold_bias,
    geometry_fields,
)
from mcu_mot.codegen.lowering import SCRATCH, Call, scratch_size, unsupported
from mcu_mot.ir.quantize import wrap_int32

FORCE_EXACT_RQ = False  # tests: take the exact-requantization 3x3 kernel even where the fast one is proven


# ------------------------------------------------ scratch (docs/kernels.md)
def _pad_row(in_c: int, step: int) -> int:
    return -(-in_c // step) * step


@scratch_size("mm_depthwise_conv_3x3_s8", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s8_scratch(isa: str, in_c: int) -> int:
    """The pad row: the DSP kernel fills in_c rounded up to 4 bytes, the Helium one to 8."""
    return _pad_row(in_c, 8 if isa == "mve" else 4)


@scratch_size("mm_depthwise_conv_3x3_s8_q", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s8_q_scratch(isa: str, in_c: int) -> int:
    return _pad_row(in_c, 4)  # the DSP code on Helium too


@scratch_size("mm_depthwise_conv_3x3_s16", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s16_scratch(isa: str, in_c: int) -> int:
    return 2 * _pad_row(in_c, 4)


@scratch_size("mm_depthwise_conv_3x3_s16_q", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s16_q_scratch(isa: str, in_c: int) -> int:
    return 2 * _pad_row(in_c, 4)


# --------------------------------------------- 3x3, depth multiplier 1, DSP / MVE
def _pairs(lo, hi) -> np.ndarray:
    """int16 pairs [lo | hi << 16] as int32 words."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    return wrap_int32((lo & 0xFFFF) | ((hi & 0xFFFF) << 16))


def _pack_dw3x3(w: np.ndarray, s16: bool) -> np.ndarray:
    """(3, 3, C) weights -> per group of 4 channels, per row: W01(c0..c3), third column x2
    (layout in mm_depthwise_conv_3x3.h); channels padded to a multiple of 4 with zeros."""
    c = w.shape[2]
    g = (c + 3) // 4
    wp = np.zeros((3, 3, g * 4), np.int64)
    wp[:, :, :c] = w
    wp = wp.reshape(3, 3, g, 4).transpose(2, 0, 1, 3)  # (group, row, col, lane)
    w01 = _pairs(wp[:, :, 0, :], wp[:, :, 1, :])  # (group, row, 4)
    third = wp[:, :, 2, :]
    a, b = ((0, 1), (2, 3)) if s16 else ((0, 2), (1, 3))
    w2 = np.stack([_pairs(third[..., a[0]], third[..., a[1]]), _pairs(third[..., b[0]], third[..., b[1]])], -1)
    return np.concatenate([w01, w2], -1).reshape(-1)  # (group, row, 6)


def _mve_s8_layout(op, ctx, w, folded, mult, cconst, e) -> dict:
    """Helium int8 layout (mm_depthwise_conv_3x3.c): groups of 8 channels, doubled int16 weights
    tap-major, bias / M / C / -E split into even and odd channels."""
    c = w.shape[2]
    g = (c + 7) // 8
    cp = g * 8

    def padded(v, fill=0):
        out = np.full(cp, fill, np.int64)
        out[:c] = v
        return out

    wp = np.zeros((9, cp), np.int64)
    wp[:, :c] = 2 * w.reshape(9, c)
    wl = wp.reshape(9, g, 8).transpose(1, 0, 2).reshape(-1).astype(np.int16)

    def split(v):  # (g, 2, 4): even lanes, odd lanes
        v = v.reshape(g, 4, 2)
        return np.stack([v[:, :, 0], v[:, :, 1]], 1)

    bias = split(padded(2 * folded))
    rq = np.concatenate([split(padded(mult)), split(padded(cconst)), split(padded(-e, -1))], 1)  # (g, 6, 4)
    return dict(
        w=f"(const int32_t *){ctx.array(f'{op.name}_w3', wl)}",
        bias=ctx.array(f"{op.name}_bias_f", wrap_int32(bias.reshape(-1))),
        rq=ctx.array(f"{op.name}_rq", wrap_int32(rq.reshape(-1))),
    )


def lower_dw3x3(op, ctx, sfx, g: ConvGeometry, inp, weights, bias, out):
    """The 3x3 kernels of mm_depthwise_conv_3x3.h (pad row in scratch, packed int16 weights)."""
    if weights.quant is None or weights.quant.scale.size not in (1, g.out_c):
        raise unsupported(op, f"weights '{weights.name}' quantization does not match {g.out_c} channels")
    c = g.in_c
    cp = (c + 3) // 4 * 4
    qa = conv_quant(op, inp, weights, out, c)
    mult, shift = (np.asarray(v, np.int64) for v in (qa.multiplier, qa.shift))
    w = weights.data.reshape(3, 3, c).astype(np.int64)
    w_by_channel = w.reshape(9, c).T
    fields = geometry_fields(g, DEPTHWISE_3X3_FIELDS)
    fields.update(
        act_min=qa.act_min, act_max=qa.act_max, bias="NULL", bias64="NULL", rq="NULL", multiplier="NULL", shift="NULL"
    )
    kernel = f"mm_depthwise_conv_3x3_{sfx}"
    macs = g.macs
    if sfx == "s16":
        b = bias_values(op, bias, c, ("int64",))
        fields.update(input_zp=0, output_offset=0, w=ctx.array(f"{op.name}_w3", _pack_dw3x3(w, True)))
        rq = None if FORCE_EXACT_RQ else fast_requant_s16(qa, b, w_by_channel)
        if rq is not None:
            pad = np.zeros(cp - c, np.int64)
            fields.update(
                bias=ctx.array(f"{op.name}_bias", wrap_int32(np.concatenate([b, pad]))),
                rq=ctx.array(f"{op.name}_rq", wrap_int32(np.concatenate([rq, pad]))),
            )
        else:
            kernel += "_q"
            fields.update(
                bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)),
                multiplier=ctx.array(f"{op.name}_mult", mult.astype(np.int32)),
                shift=ctx.array(f"{op.name}_shift", shift.astype(np.int32)),
            )
    else:
        b = bias_values(op, bias, c, ("int32",))
        folded = fold_bias(b, w_by_channel, qa.input_offset, "int64")  # exact
        fast = None if FORCE_EXACT_RQ else fast_requant_s8(qa, folded, w_by_channel)
        fields.update(input_zp=qa.input_zp, output_offset=qa.output_zp)
        if fast is not None and ctx.mve:
            params = ctx.struct(
                f"{op.name}_p",
                "mm_dw3x3_params",
                dict(fields, **_mve_s8_layout(op, ctx, w, folded, fast.multiplier, fast.constant, fast.exponent)),
            )
            return Call(
                kernel, [params, inp, out, SCRATCH], "mm_depthwise_conv_3x3.h", scratch_shape=dict(in_c=c), macs=macs
            )
        if fast is not None:
            pad = cp - c
            bias_p = np.concatenate([2 * folded, np.zeros(pad, np.int64)])
            rq = (
                np.stack(
                    [
                        np.concatenate([fast.multiplier, np.zeros(pad, np.int64)]),
                        np.concatenate([fast.constant, np.zeros(pad, np.int64)]),
                        np.concatenate([fast.exponent, np.ones(pad, np.int64)]),
                    ]
                )
                .reshape(3, cp // 4, 4)
                .transpose(1, 0, 2)
            )
            fields.update(
                w=ctx.array(f"{op.name}_w3", _pack_dw3x3(2 * w, False)),
                bias=ctx.array(f"{op.name}_bias_f", wrap_int32(bias_p)),
                rq=ctx.array(f"{op.name}_rq", wrap_int32(rq.reshape(-1))),
            )
        else:
            kernel += "_q"
            fields.update(
                w=ctx.array(f"{op.name}_w3", _pack_dw3x3(w, False)),
                bias=ctx.array(f"{op.name}_bias_f", wrap_int32(np.concatenate([folded, np.zeros(cp - c, np.int64)]))),
                multiplier=ctx.array(f"{op.name}_mult", mult.astype(np.int32)),
                shift=ctx.array(f"{op.name}_shift", shift.astype(np.int32)),
            )
    params = ctx.struct(f"{op.name}_p", "mm_dw3x3_params", fields)
    return Call(kernel, [params, inp, out, SCRATCH], "mm_depthwise_conv_3x3.h", scratch_shape=dict(in_c=c), macs=macs)
