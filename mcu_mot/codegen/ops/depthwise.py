"""DEPTHWISE_CONV_2D lowering (int8, int16x8, float32); shared geometry and
bit-exactness notes in conv.py."""
import numpy as np

from mcu_mot.codegen.lowering import SCRATCH, Call, lowers, scratch_size, unsupported
from mcu_mot.codegen.ops.common import channel_multipliers, fused_range, kernel_suffix, qparams
from mcu_mot.codegen.ops.common import _SAME, tflm_padding
from mcu_mot.codegen.ops.conv import _bias_data, _check_4d, _check_types, _f32_bias, _fold, _int32, _quant_common


FORCE_EXACT_RQ = False   # tests: take the exact-requantization 3x3 kernel even where the fast one is proven


# ------------------------------------------------ scratch (docs/kernels.md)
@scratch_size("mm_depthwise_conv_s8", ("out_c",))
def depthwise_s8_scratch(isa: str, out_c: int) -> int:
    return 4 * out_c     # int32 accumulator per output channel


@scratch_size("mm_depthwise_conv_s16", ("out_c",))
def depthwise_s16_scratch(isa: str, out_c: int) -> int:
    return 8 * out_c     # int64


@scratch_size("mm_depthwise_conv_f32", ("out_c",))
def depthwise_f32_scratch(isa: str, out_c: int) -> int:
    return 4 * out_c     # float


def _pad_row(in_c: int, step: int) -> int:
    return -(-in_c // step) * step


@scratch_size("mm_depthwise_conv_3x3_s8", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s8_scratch(isa: str, in_c: int) -> int:
    """The pad row: the DSP kernel fills in_c rounded up to 4 bytes, the Helium one to 8."""
    return _pad_row(in_c, 8 if isa == "mve" else 4)


@scratch_size("mm_depthwise_conv_3x3_s8_q", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s8_q_scratch(isa: str, in_c: int) -> int:
    return _pad_row(in_c, 4)     # the DSP code on Helium too


@scratch_size("mm_depthwise_conv_3x3_s16", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s16_scratch(isa: str, in_c: int) -> int:
    return 2 * _pad_row(in_c, 4)


@scratch_size("mm_depthwise_conv_3x3_s16_q", ("in_c",), isas=("dsp", "mve"))
def dw3x3_s16_q_scratch(isa: str, in_c: int) -> int:
    return 2 * _pad_row(in_c, 4)


# -------------------------------------------------------- DEPTHWISE_CONV_2D
@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise_conv_2d(op, ctx):
    from mcu_mot.codegen.ops.hybrid import is_hybrid, lower_depthwise_conv_2d_hybrid
    if is_hybrid(op):
        return lower_depthwise_conv_2d_hybrid(op, ctx)
    inp, weights = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    out = op.outputs[0]
    sfx = kernel_suffix(op, inp)
    _check_4d(op, inp, weights, out)
    _check_types(op, inp, weights, out)
    batches, in_h, in_w, in_c = inp.shape
    one, k_h, k_w, out_c = weights.shape
    _, out_h, out_w, out_c2 = out.shape
    if one != 1 or out_c2 != out_c or out.shape[0] != batches:
        raise unsupported(op, f"filter {weights.shape} does not match output {out.shape}")
    o = op.options
    dm = int(o.get("depth_multiplier", 1))
    if dm <= 0 or in_c * dm != out_c:
        raise unsupported(op, f"depth_multiplier {dm} with {in_c} input and {out_c} output channels")
    s_h, s_w = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    d_h, d_w = int(o.get("dilation_h_factor", 1)), int(o.get("dilation_w_factor", 1))
    padding = int(o.get("padding", _SAME))
    geom = dict(batches=batches, in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                depth_mult=dm, k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, dil_h=d_h, dil_w=d_w,
                pad_h=tflm_padding(op, padding, s_h, d_h, in_h, k_h),
                pad_w=tflm_padding(op, padding, s_w, d_w, in_w, k_w))
    macs = batches * out_h * out_w * out_c * k_h * k_w
    if sfx == "f32":
        act_min, act_max = fused_range(op, out)
        params = ctx.struct(f"{op.name}_p", "mm_dwconv_f32_params", dict(
            geom, act_min=act_min, act_max=act_max, bias=_f32_bias(op, ctx, bias, out_c)))
        return Call("mm_depthwise_conv_f32", [params, inp, ctx.weights(weights), out, SCRATCH],
                    "mm_depthwise_conv.h", scratch_shape=dict(out_c=out_c), macs=macs)

    if ctx.dsp and k_h == 3 and k_w == 3 and dm == 1:
        return _lower_dw3x3(op, ctx, sfx, geom, inp, weights, bias, out, macs)
    in_zp, out_zp, q = _quant_common(op, ctx, inp, weights, out, out_c)
    if sfx == "s8":
        b = _bias_data(op, bias, out_c, ("int32",))
        w = weights.data.reshape(k_h * k_w, out_c).T          # (channel, taps)
        fields = dict(geom, input_offset=-in_zp, output_offset=out_zp, **q,
                      bias=ctx.array(f"{op.name}_bias", _int32(b)),
                      bias_folded=ctx.array(f"{op.name}_bias_f", _fold(b, w, -in_zp)),
                      bias64="NULL")
    else:
        b = _bias_data(op, bias, out_c, ("int64",))   # TFLM reads the int16 bias as int64
        fields = dict(geom, input_offset=0, output_offset=0, **q, bias="NULL", bias_folded="NULL",
                      bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)))
    params = ctx.struct(f"{op.name}_p", "mm_dwconv_params", fields)
    return Call(f"mm_depthwise_conv_{sfx}", [params, inp, ctx.weights(weights), out, SCRATCH],
                "mm_depthwise_conv.h", scratch_shape=dict(out_c=out_c), macs=macs)


# --------------------------------------------- 3x3, depth multiplier 1, DSP / MVE
def _pairs(lo, hi) -> np.ndarray:
    """int16 pairs [lo | hi << 16] as int32 words."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    return _int32((lo & 0xFFFF) | ((hi & 0xFFFF) << 16))


def _pack_dw3x3(w: np.ndarray, s16: bool) -> np.ndarray:
    """(3, 3, C) weights -> per group of 4 channels, per row: W01(c0..c3), third column x2
    (layout in mm_depthwise_conv_3x3.h); channels padded to a multiple of 4 with zeros."""
    c = w.shape[2]
    g = (c + 3) // 4
    wp = np.zeros((3, 3, g * 4), np.int64)
    wp[:, :, :c] = w
    wp = wp.reshape(3, 3, g, 4).transpose(2, 0, 1, 3)          # (group, row, col, lane)
    w01 = _pairs(wp[:, :, 0, :], wp[:, :, 1, :])               # (group, row, 4)
    third = wp[:, :, 2, :]
    a, b = ((0, 1), (2, 3)) if s16 else ((0, 2), (1, 3))
    w2 = np.stack([_pairs(third[..., a[0]], third[..., a[1]]), _pairs(third[..., b[0]], third[..., b[1]])], -1)
    return np.concatenate([w01, w2], -1).reshape(-1)           # (group, row, 6)


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
    rq = np.concatenate([split(padded(mult)), split(padded(cconst)), split(padded(-e, -1))], 1)   # (g, 6, 4)
    return dict(w=f"(const int32_t *){ctx.array(f'{op.name}_w3', wl)}",
                bias=ctx.array(f"{op.name}_bias_f", _int32(bias.reshape(-1))),
                rq=ctx.array(f"{op.name}_rq", _int32(rq.reshape(-1))))


def _lower_dw3x3(op, ctx, sfx, geom, inp, weights, bias, out, macs):
    """The 3x3 kernels of mm_depthwise_conv_3x3.h (pad row in scratch, packed int16 weights)."""
    if weights.quant is None or weights.quant.scale.size not in (1, geom["out_c"]):
        raise unsupported(op, f"weights '{weights.name}' quantization does not match {geom['out_c']} channels")
    c = geom["in_c"]
    cp = (c + 3) // 4 * 4
    _, in_zp = qparams(op, inp)
    _, out_zp = qparams(op, out)
    act_min, act_max = fused_range(op, out)
    mult, shift = (np.asarray(v, np.int64) for v in channel_multipliers(op, inp, weights, out, c))
    w = weights.data.reshape(3, 3, c).astype(np.int64)
    fields = {k: geom[k] for k in ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "stride_h", "stride_w",
                                   "dil_h", "dil_w", "pad_h", "pad_w")}
    fields.update(act_min=act_min, act_max=act_max, bias="NULL", bias64="NULL", rq="NULL",
                  multiplier="NULL", shift="NULL")
    kernel = f"mm_depthwise_conv_3x3_{sfx}"
    if sfx == "s16":
        b = _bias_data(op, bias, c, ("int64",))
        fields.update(input_zp=0, output_offset=0, w=ctx.array(f"{op.name}_w3", _pack_dw3x3(w, True)))
        reduced = np.where(mult < 0x7FFF0000, (mult + (1 << 15)) >> 16, 0x7FFF)
        total = 15 - shift
        bound = np.abs(b) + np.abs(w).reshape(9, c).sum(axis=0) * 32768
        if not FORCE_EXACT_RQ and np.all(total >= 16) and np.all(total <= 32) and np.all(bound < (1 << 31) - 1):
            pad = np.zeros(cp - c, np.int64)
            fields.update(bias=ctx.array(f"{op.name}_bias", _int32(np.concatenate([b, pad]))),
                          rq=ctx.array(f"{op.name}_rq", _int32(np.concatenate([reduced << (32 - total), pad]))))
        else:
            kernel += "_q"
            fields.update(bias64=ctx.array(f"{op.name}_bias", b.astype(np.int64)),
                          multiplier=ctx.array(f"{op.name}_mult", mult.astype(np.int32)),
                          shift=ctx.array(f"{op.name}_shift", shift.astype(np.int32)))
    else:
        b = _bias_data(op, bias, c, ("int32",))
        folded = b + (-in_zp) * w.reshape(9, c).sum(axis=0)      # exact (int64)
        e = -shift
        rnd = np.where(e >= 1, np.left_shift(1, np.clip(e - 1, 0, 62)), 0)
        cconst = rnd + out_zp * np.left_shift(1, np.clip(e, 0, 62))
        bound = np.abs(folded) + np.abs(w).reshape(9, c).sum(axis=0) * 128
        fast = not FORCE_EXACT_RQ and bool(np.all(e >= 1) and np.all(e <= 31) and np.all(mult >= 0)
                    and np.all(2 * bound < (1 << 30)) and np.all(bound + np.abs(cconst) + 2 < (1 << 30)))
        fields.update(input_zp=in_zp, output_offset=out_zp)
        if fast and ctx.mve:
            params = ctx.struct(f"{op.name}_p", "mm_dw3x3_params", dict(fields, **_mve_s8_layout(op, ctx, w, folded,
                                                                                                mult, cconst, e)))
            return Call(kernel, [params, inp, out, SCRATCH], "mm_depthwise_conv_3x3.h",
                        scratch_shape=dict(in_c=c), macs=macs)
        if fast:
            pad = cp - c
            bias_p = np.concatenate([2 * folded, np.zeros(pad, np.int64)])
            rq = np.stack([np.concatenate([mult, np.zeros(pad, np.int64)]),
                           np.concatenate([cconst, np.zeros(pad, np.int64)]),
                           np.concatenate([e, np.ones(pad, np.int64)])]).reshape(3, cp // 4, 4).transpose(1, 0, 2)
            fields.update(w=ctx.array(f"{op.name}_w3", _pack_dw3x3(2 * w, False)),
                          bias=ctx.array(f"{op.name}_bias_f", _int32(bias_p)),
                          rq=ctx.array(f"{op.name}_rq", _int32(rq.reshape(-1))))
        else:
            kernel += "_q"
            fields.update(w=ctx.array(f"{op.name}_w3", _pack_dw3x3(w, False)),
                          bias=ctx.array(f"{op.name}_bias_f", _int32(np.concatenate(
                              [folded, np.zeros(cp - c, np.int64)]))),
                          multiplier=ctx.array(f"{op.name}_mult", mult.astype(np.int32)),
                          shift=ctx.array(f"{op.name}_shift", shift.astype(np.int32)))
    params = ctx.struct(f"{op.name}_p", "mm_dw3x3_params", fields)
    return Call(kernel, [params, inp, out, SCRATCH], "mm_depthwise_conv_3x3.h", scratch_shape=dict(in_c=c),
                macs=macs)
