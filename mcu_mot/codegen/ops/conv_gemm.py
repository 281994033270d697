"""CONV_2D (one group, int8 / int16x8) on cores with DSP or Helium: the
patch x weight-row kernel of mm_conv_gemm.h, with its weight layout made here.

DSP: rows padded to a multiple of 4 with the bytes of each group of 4 stored
as w0 w2 w1 w3 (SXTB16 / SXTB16 ROR 8 then yield (w0, w1) and (w2, w3)),
channel pairs interleaved word by word (one LDRD loads both rows' words);
Helium: rows padded to a multiple of 16 in natural order, channels in quads
with the quad's rows interleaved in 16-byte steps and, for int8, the
input zero-point correction folded into the bias (the kernel pads windows
with the zero point). Flash cost: the row padding (and one zero row for an odd channel count on DSP).
"""

from __future__ import annotations

import numpy as np

from mcu_mot.codegen.analysis import ConvGeometry, ConvQuant, fast_requant_s8, fast_requant_s16, fold_bias
from mcu_mot.codegen.lowering import SCRATCH, Call, scratch_size

_DSP_ORDER = np.array([0, 2, 1, 3])


def row_length(k: int, mve: bool) -> int:
    """k_pad: the weight row (and patch) length for rows of k = k_h * k_w * in_c values."""
    step = 16 if mve else 4
    return -(-k // step) * step


@scratch_size("mm_conv_gemm_s8", ("in_c", "k_h", "k_w"), isas=("dsp", "mve"))
def conv_gemm_s8_scratch(isa: str, in_c: int, k_h: int, k_w: int) -> int:
    """Two patches of k_pad values: int8 on Helium (padded with the zero point), int16 on DSP."""
    return 2 * row_length(k_h * k_w * in_c, isa == "mve") * (1 if isa == "mve" else 2)


@scratch_size("mm_conv_gemm_s16", ("in_c", "k_h", "k_w"), isas=("dsp", "mve"))
def conv_gemm_s16_scratch(isa: str, in_c: int, k_h: int, k_w: int) -> int:
    """Two int16 patches of k_pad values."""
    return 2 * row_length(k_h * k_w * in_c, isa == "mve") * 2


def gemm_weights(w: np.ndarray, mve: bool) -> tuple[np.ndarray, int]:
    """(out_c, k) int8 weights -> the kernel's row layout and its row length k_pad."""
    out_c, k = w.shape
    k_pad = row_length(k, mve)
    rows = np.zeros((out_c, k_pad), np.int8)
    rows[:, :k] = w
    if mve:
        # channels in quads (zero rows complete the last), the quad's 4 rows interleaved
        # in 16-byte steps so one pointer walks them
        extra = -out_c % 4
        if extra:
            rows = np.concatenate([rows, np.zeros((extra, k_pad), np.int8)])
        rows = rows.reshape(-1, 4, k_pad // 16, 16).transpose(0, 2, 1, 3)
    else:
        # groups of 4 as w0 w2 w1 w3; channels in pairs (a zero row completes an odd count),
        # the pair's two rows interleaved word by word so one LDRD fetches both
        rows = rows.reshape(out_c, k_pad // 4, 4)[:, :, _DSP_ORDER]
        if out_c % 2:
            rows = np.concatenate([rows, np.zeros((1,) + rows.shape[1:], np.int8)])
        rows = rows.reshape(-1, 2, k_pad // 4, 4).transpose(0, 2, 1, 3)
    return rows.reshape(-1, k_pad), k_pad


def lower_conv_gemm(op, ctx, g: ConvGeometry, qa: ConvQuant, sfx: str, weights, bias: np.ndarray, fields: dict) -> Call:
    """The mm_conv_gemm call for a one-group CONV_2D; `fields` are the quantization fields
    (bias: raw on DSP, zero-point-folded on Helium int8; bias64, multiplier, shift, offsets,
    activation range), `bias` the layer's bias values (int64, zeros if none)."""
    inp, out = op.inputs[0], op.outputs[0]
    out_c = g.out_c
    w, k_pad = gemm_weights(weights.data.reshape(out_c, -1), ctx.mve)
    k = int(weights.data.size // out_c)
    assert k == g.k_h * g.k_w * g.in_c, "one-group conv rows are k_h x k_w x in_c"
    rq = "NULL"
    if sfx == "s8" and not ctx.mve:
        rq = _fast_requantization(op, ctx, weights, qa, bias)
    elif sfx == "s16":
        rq, bias32 = _fast_requantization_s16(op, ctx, weights, qa, bias)
        if rq != "NULL":
            fields = dict(fields, bias=bias32, bias64="NULL")
    params = ctx.struct(
        f"{op.name}_gp",
        "mm_conv_gemm_params",
        dict(
            batches=g.batches,
            in_h=g.in_h,
            in_w=g.in_w,
            in_c=g.in_c,
            out_h=g.out_h,
            out_w=g.out_w,
            out_c=out_c,
            k_h=g.k_h,
            k_w=g.k_w,
            stride_h=g.stride_h,
            stride_w=g.stride_w,
            dil_h=g.dil_h,
            dil_w=g.dil_w,
            pad_h=g.pad_h,
            pad_w=g.pad_w,
            k=k,
            k_pad=k_pad,
            input_offset=fields["input_offset"],
            output_offset=fields["output_offset"],
            act_min=fields["act_min"],
            act_max=fields["act_max"],
            bias=fields["bias"],
            bias64=fields["bias64"],
            # the proven-range requantization needs no multiplier/shift arrays
            multiplier=fields["multiplier"] if rq == "NULL" else "NULL",
            shift=fields["shift"] if rq == "NULL" else "NULL",
            rq=rq,
        ),
    )
    macs = g.batches * g.out_h * g.out_w * out_c * k
    layout = ctx.array(f"{weights.name}_{'mve' if ctx.mve else 'dsp'}", w)
    return Call(
        f"mm_conv_gemm_{sfx}",
        [params, inp, layout, out, SCRATCH],
        "mm_conv_gemm.h",
        scratch_shape=dict(in_c=g.in_c, k_h=g.k_h, k_w=g.k_w),
        macs=macs,
        raster_block=2,
    )


def _fast_requantization(op, ctx, weights, qa: ConvQuant, bias: np.ndarray) -> str:
    """{M, C, E} per channel for the kernel's SMMLAR requantization, or "NULL" where the
    compile-time bound on the accumulator does not prove it exact (see mm_conv_gemm.h)."""
    w = weights.data.reshape(qa.multiplier.size, -1).astype(np.int64)
    fast = fast_requant_s8(qa, fold_bias(bias, w, qa.input_offset, "int64"), w)
    if fast is None:
        return "NULL"
    return ctx.array(
        f"{op.name}_rq", np.stack([fast.multiplier, fast.constant, fast.exponent], axis=1).astype(np.int32)
    )


def _fast_requantization_s16(op, ctx, weights, qa: ConvQuant, bias: np.ndarray) -> tuple[str, str]:
    """int16x8: (rq, int32 bias) arrays, both padded to channel quads, for the kernel's
    one-instruction requantization SMMULR / VRMULH(acc + bias, R << (32 - T)) where the compiler proves
    that every accumulator fits int32 and 16 <= T <= 32 (T = 15 - shift, R the 16-bit reduced
    multiplier TFLM uses); ("NULL", "NULL") otherwise."""
    out_c = qa.multiplier.size
    rq = fast_requant_s16(qa, bias, weights.data.reshape(out_c, -1))
    if rq is None:
        return "NULL", "NULL"
    pad = -out_c % 4
    rq = np.concatenate([rq, np.zeros(pad, np.int64)]).astype(np.int32)
    b32 = np.concatenate([bias, np.zeros(pad, np.int64)]).astype(np.int32)
    return ctx.array(f"{op.name}_rq16", rq), ctx.array(f"{op.name}_bias32", b32)
