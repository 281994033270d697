"""FULLY_CONNECTED lowering (int8, int16x8, float32).

With symmetric weights the DSP and MVE targets get the mm_fully_connected_blocked_*
kernels (one per dtype, the ISA path chosen inside) and a blocked weight layout
made here for the target ISA (see fc_blocked_layout and mm_fully_connected.h).
"""

import numpy as np

from mcu_mot.codegen.analysis import fc_geometry, fc_quant, fold_bias, fused_range, weighted_operands
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.codegen.ops.hybrid import is_hybrid, lower_fully_connected_hybrid


@lowers("FULLY_CONNECTED")
def lower_fully_connected(op, ctx):
    if is_hybrid(op):  # dynamic-range: float activations, int8 weights
        return lower_fully_connected_hybrid(op, ctx)
    inp, weights, bias, out = weighted_operands(op)
    sfx = kernel_suffix(op, inp)
    if not weights.is_const:
        raise unsupported(op, "non-constant weights")
    if op.options.get("weights_format", 0) != 0:
        raise unsupported(op, "shuffled weights format")
    g = fc_geometry(op)
    batches, in_depth, out_depth, macs = g.batches, g.in_depth, g.out_depth, g.macs
    act_min, act_max = fused_range(op, out)
    if sfx == "f32":
        params = ctx.struct(
            f"{op.name}_p",
            "mm_fc_f32_params",
            dict(
                batches=batches,
                in_depth=in_depth,
                out_depth=out_depth,
                act_min=act_min,
                act_max=act_max,
                bias=ctx.weights(bias) if bias is not None else "NULL",
            ),
        )
        return Call(
            "mm_fully_connected_f32", [params, inp, ctx.weights(weights), out], "mm_fully_connected.h", macs=macs
        )
    if weights.dtype != "int8":
        raise unsupported(op, f"{weights.dtype} weights")
    q = fc_quant(op, out_depth)
    w_zp = q.weights_zp
    w = weights.data.reshape(out_depth, in_depth)
    if w_zp == 0:
        raw = bias.data.astype(np.int64) if bias is not None else np.zeros(out_depth, np.int64)
        bias_vals = fold_bias(raw, w, q.input_offset, "int32" if sfx == "s8" else "int64")
    else:
        bias_vals = bias.data if bias is not None else np.zeros(out_depth, np.int64)
    fields = dict(
        batches=batches,
        in_depth=in_depth,
        out_depth=out_depth,
        input_offset=q.input_offset,
        filter_offset=-w_zp,
        output_offset=q.output_zp,
        act_min=act_min,
        act_max=act_max,
        multiplier=ctx.array(f"{op.name}_mult", q.multiplier),
        shift=ctx.array(f"{op.name}_shift", q.shift),
    )
    if sfx == "s8":
        fields.update(bias=ctx.array(f"{op.name}_bias", np.asarray(bias_vals, np.int32)), bias64="NULL")
    else:
        fields.update(bias="NULL", bias64=ctx.array(f"{op.name}_bias", np.asarray(bias_vals, np.int64)))
    params = ctx.struct(f"{op.name}_p", "mm_fc_params", fields)
    if w_zp == 0 and ctx.dsp:
        variant = "mve" if ctx.mve else "dsp"
        layout = fc_blocked_layout(w.astype(np.int8), sfx, variant)
        return Call(
            f"mm_fully_connected_blocked_{sfx}",
            [params, inp, ctx.array(f"{op.name}_w{variant}", layout, "int8"), out],
            "mm_fully_connected.h",
            macs=macs,
        )
    return Call(
        f"mm_fully_connected_{sfx}", [params, inp, ctx.weights(weights), out], "mm_fully_connected.h", macs=macs
    )


def fc_blocked_layout(w: np.ndarray, sfx: str, variant: str) -> np.ndarray:
    """The weight layout of mm_fully_connected_blocked_{s8,s16} for `variant` (the target ISA,
    dsp or mve): rows in blocks of 4 (the
    out_depth % 4 rows left over as blocks of 1), each block stored group by group (G columns
    of each of its rows in turn). dsp: G = 4, the in_depth % 4 tail of each row follows the
    block's groups, row by row; int16 groups are stored [w0 w2 w1 w3] (SXTB16 pairs).
    mve: G = 16 (int8) or 8 (int16), the last group zero-padded."""
    out_depth, in_depth = w.shape
    if variant == "dsp":
        g, pad = 4, False
    else:
        g, pad = (16 if sfx == "s8" else 8), True
    perm = [0, 2, 1, 3] if (variant == "dsp" and sfx == "s16") else None
    if pad and in_depth % g:
        w = np.concatenate([w, np.zeros((out_depth, g - in_depth % g), w.dtype)], axis=1)
    cols = w.shape[1]
    main = cols - cols % g
    parts = []
    blocks = [(r, 4) for r in range(0, out_depth - out_depth % 4, 4)]
    blocks += [(r, 1) for r in range(out_depth - out_depth % 4, out_depth)]
    for r, n in blocks:
        blk = w[r : r + n]
        grouped = blk[:, :main].reshape(n, main // g, g)
        if perm is not None:
            grouped = grouped[:, :, perm]
        parts.append(grouped.transpose(1, 0, 2).ravel())
        parts.append(blk[:, main:].ravel())
    return np.concatenate(parts).astype(np.int8)
