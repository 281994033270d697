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

from ..lowering import SCRATCH, Call

_DSP_ORDER = np.array([0, 2, 1, 3])


def gemm_weights(w: np.ndarray, mve: bool) -> tuple[np.ndarray, int]:
    """(out_c, k) int8 weights -> the kernel's row layout and its row length k_pad."""
    out_c, k = w.shape
    step = 16 if mve else 4
    k_pad = -(-k // step) * step
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


def lower_conv_gemm(op, ctx, geom: dict, sfx: str, weights, fields: dict) -> Call:
    """The mm_conv_gemm call for a one-group CONV_2D; `fields` are the quantization fields
    (bias: raw on DSP, zero-point-folded on Helium int8; bias64, multiplier, shift, offsets,
    activation range)."""
    inp, out = op.inputs[0], op.outputs[0]
    out_c = geom["out_c"]
    w, k_pad = gemm_weights(weights.data.reshape(out_c, -1), ctx.mve)
    k = int(weights.data.size // out_c)
    bias = fields["bias"]
    params = ctx.struct(f"{op.name}_gp", "mm_conv_gemm_params", dict(
        batches=geom["batches"], in_h=geom["in_h"], in_w=geom["in_w"], in_c=geom["in_c"],
        out_h=geom["out_h"], out_w=geom["out_w"], out_c=out_c, k_h=geom["k_h"], k_w=geom["k_w"],
        stride_h=geom["stride_h"], stride_w=geom["stride_w"], dil_h=geom["dil_h"], dil_w=geom["dil_w"],
        pad_h=geom["pad_h"], pad_w=geom["pad_w"], k=k, k_pad=k_pad,
        input_offset=fields["input_offset"], output_offset=fields["output_offset"],
        act_min=fields["act_min"], act_max=fields["act_max"], bias=bias, bias64=fields["bias64"],
        multiplier=fields["multiplier"], shift=fields["shift"]))
    patch_bytes = 1 if (sfx == "s8" and ctx.mve) else 2
    scratch = 2 * k_pad * patch_bytes      # = mm_conv_gemm_<sfx>_get_buffer_size()
    macs = geom["batches"] * geom["out_h"] * geom["out_w"] * out_c * k
    layout = ctx.array(f"{weights.name}_{'mve' if ctx.mve else 'dsp'}", w)
    return Call(f"mm_conv_gemm_{sfx}", [params, inp, layout, out, SCRATCH], "mm_conv_gemm.h",
                scratch_bytes=scratch, macs=macs, raster_block=2)
