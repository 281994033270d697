"""Dynamic-range ("hybrid") FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D: float32
activations with int8 weights, as the TF converter emits them for Optimize.DEFAULT
without a representative dataset.

TFLite Micro has no hybrid kernels; the reference is the TF Lite interpreter
(builtin reference ops). It quantizes each batch of the input on the fly:
FULLY_CONNECTED symmetrically or asymmetrically per its `asymmetric_quantize_inputs`
option, CONV_2D asymmetrically with per-channel weight scales (reference
HybridConvPerChannel) or symmetrically when all weight scales are equal
(HybridConv), DEPTHWISE_CONV_2D always asymmetrically (per-channel scales).
The kernels in firmware/kernels/mm_hybrid.c repeat its float arithmetic step
for step. conv.py and fully_connected.py delegate here when `is_hybrid(op)`.
"""

from __future__ import annotations

import numpy as np

from mcu_mot.codegen.analysis import HYBRID_FIELDS, fused_range, geometry_fields, window_geometry
from mcu_mot.codegen.lowering import SCRATCH, Call, scratch_size, unsupported


def is_hybrid(op) -> bool:
    """Float activations with int8 weights (weights at input 1 for CONV/DEPTHWISE/FC)."""
    if len(op.inputs) < 2 or op.inputs[0] is None or op.inputs[1] is None:
        return False
    return op.inputs[0].dtype == "float32" and op.inputs[1].dtype == "int8"


def _weights(op, channels: int, axis_name: str):
    weights = op.inputs[1]
    if not weights.is_const:
        raise unsupported(op, f"non-constant weights '{weights.name}'")
    q = weights.quant
    if q is None or q.scale.size == 0:
        raise unsupported(op, f"int8 weights '{weights.name}' without a scale")
    if np.any(q.zero_point != 0):
        raise unsupported(op, f"weights '{weights.name}' have a non-zero zero point")
    if q.scale.size not in (1, channels):
        raise unsupported(op, f"weights '{weights.name}' have {q.scale.size} scales for {channels} {axis_name}")
    return weights, q.scale.astype(np.float32)


def _bias(op, ctx, index: int, channels: int) -> str:
    bias = op.inputs[index] if len(op.inputs) > index else None
    if bias is None:
        return "NULL"
    if not bias.is_const or bias.dtype != "float32" or bias.size != channels:
        raise unsupported(op, f"bias '{bias.name}' ({bias.dtype}, {bias.size} values) for {channels} float outputs")
    return ctx.weights(bias)


def _check_output(op):
    out = op.outputs[0]
    if out.dtype != "float32":
        raise unsupported(op, f"float input with int8 weights but {out.dtype} output")
    return out


def _act(op, out, fc: bool):
    fused = int(op.options.get("fused_activation_function", 0))
    if fc and fused == 0:  # the FC reference applies no clamp at all without an activation
        return float("-inf"), float("inf")
    return fused_range(op, out)


# scratch (docs/kernels.md): the int8-quantized input, one batch row (FC) or one image
@scratch_size("mm_fully_connected_hybrid", ("in_depth",))
def fully_connected_hybrid_scratch(isa: str, in_depth: int) -> int:
    return in_depth


@scratch_size("mm_conv_hybrid", ("in_h", "in_w", "in_c"))
def conv_hybrid_scratch(isa: str, in_h: int, in_w: int, in_c: int) -> int:
    return in_h * in_w * in_c


@scratch_size("mm_depthwise_conv_hybrid", ("in_h", "in_w", "in_c"))
def depthwise_conv_hybrid_scratch(isa: str, in_h: int, in_w: int, in_c: int) -> int:
    return in_h * in_w * in_c


def lower_fully_connected_hybrid(op, ctx):
    inp = op.inputs[0]
    out = _check_output(op)
    if op.options.get("weights_format", 0) != 0:
        raise unsupported(op, "shuffled weights format")
    w_shape = op.inputs[1].shape
    if len(w_shape) != 2:
        raise unsupported(op, f"weights shape {w_shape}")
    out_depth, in_depth = int(w_shape[0]), int(w_shape[1])
    if in_depth <= 0 or inp.size % in_depth:
        raise unsupported(op, f"input of {inp.size} values is not a multiple of {in_depth}")
    weights, scales = _weights(op, out_depth, "output channels")
    batches = inp.size // in_depth
    asym = bool(op.options.get("asymmetric_quantize_inputs", False))
    act_min, act_max = _act(op, out, fc=True)
    w = weights.data.reshape(out_depth, in_depth)
    per_channel = scales.size == out_depth and weights.quant.scale.size > 1
    fields = dict(
        batches=batches,
        in_depth=in_depth,
        out_depth=out_depth,
        asymmetric=int(asym),
        act_min=act_min,
        act_max=act_max,
        bias=_bias(op, ctx, 2, out_depth),
        w_scale=ctx.array(f"{op.name}_wscale", scales) if per_channel else "NULL",
        w_scale0=float(scales[0]),
        row_sums=ctx.array(f"{op.name}_rowsum", w.astype(np.int32).sum(axis=1).astype(np.int32)) if asym else "NULL",
    )
    params = ctx.struct(f"{op.name}_p", "mm_fc_hybrid_params", fields)
    return Call(
        "mm_fully_connected_hybrid",
        [params, inp, ctx.weights(weights), out, SCRATCH],
        "mm_hybrid.h",
        scratch_shape=dict(in_depth=in_depth),
        macs=batches * in_depth * out_depth,
    )


def _geometry(op, inp, out, k_h, k_w):
    for t in (inp, out):
        if len(t.shape) != 4:
            raise unsupported(op, f"tensor '{t.name}' has shape {t.shape}, expected 4-D NHWC")
    if out.shape[0] != inp.shape[0]:
        raise unsupported(op, f"output shape {out.shape} does not match input {inp.shape}")
    g = window_geometry(op, inp, out, k_h, k_w, k_c=1)
    return geometry_fields(g, HYBRID_FIELDS)


def lower_conv_2d_hybrid(op, ctx):
    inp = op.inputs[0]
    out = _check_output(op)
    w_shape = op.inputs[1].shape
    if len(w_shape) != 4:
        raise unsupported(op, f"filter shape {w_shape}")
    out_c, k_h, k_w, k_c = (int(d) for d in w_shape)
    geom = _geometry(op, inp, out, k_h, k_w)
    if geom["out_c"] != out_c:
        raise unsupported(op, f"output shape {out.shape} does not match filter {w_shape}")
    if k_c <= 0 or geom["in_c"] % k_c:
        raise unsupported(op, f"input depth {geom['in_c']} is not a multiple of filter depth {k_c}")
    groups = geom["in_c"] // k_c
    if out_c % groups:
        raise unsupported(op, f"{out_c} output channels cannot be split into {groups} groups")
    weights, scales = _weights(op, out_c, "output channels")
    # TF Lite: per-channel path when the scales differ (or for grouped convs), else one scale
    per_channel = (scales.size > 1 and np.any(scales != scales[0])) or groups != 1
    if per_channel and scales.size != out_c:
        raise unsupported(op, f"grouped hybrid convolution with {scales.size} weight scale(s)")
    act_min, act_max = _act(op, out, fc=False)
    fields = dict(
        geom,
        k_c=k_c,
        oc_per_group=out_c // groups,
        depth_mult=1,
        per_channel=int(per_channel),
        act_min=act_min,
        act_max=act_max,
        bias=_bias(op, ctx, 2, out_c),
        w_scale=ctx.array(f"{op.name}_wscale", scales) if per_channel else "NULL",
        w_scale0=float(scales[0]),
    )
    params = ctx.struct(f"{op.name}_p", "mm_conv_hybrid_params", fields)
    macs = geom["batches"] * geom["out_h"] * geom["out_w"] * out_c * k_h * k_w * k_c
    return Call(
        "mm_conv_hybrid",
        [params, inp, ctx.weights(weights), out, SCRATCH],
        "mm_hybrid.h",
        scratch_shape={k: geom[k] for k in ("in_h", "in_w", "in_c")},
        macs=macs,
    )


def lower_depthwise_conv_2d_hybrid(op, ctx):
    inp = op.inputs[0]
    out = _check_output(op)
    w_shape = op.inputs[1].shape
    if len(w_shape) != 4 or int(w_shape[0]) != 1:
        raise unsupported(op, f"filter shape {w_shape}")
    _, k_h, k_w, out_c = (int(d) for d in w_shape)
    geom = _geometry(op, inp, out, k_h, k_w)
    dm = int(op.options.get("depth_multiplier", 1)) or 1
    if geom["out_c"] != out_c or geom["in_c"] * dm != out_c:
        raise unsupported(op, f"depth_multiplier {dm} with {geom['in_c']} input and {out_c} output channels")
    weights, scales = _weights(op, out_c, "output channels")
    if weights.quant.scale.size != out_c or weights.quant.axis != 3:
        # TF Lite requires one scale per output channel for hybrid depthwise
        raise unsupported(op, f"hybrid depthwise weights need {out_c} per-channel scales on axis 3")
    act_min, act_max = _act(op, out, fc=False)
    fields = dict(
        geom,
        k_c=1,
        oc_per_group=1,
        depth_mult=dm,
        per_channel=1,
        act_min=act_min,
        act_max=act_max,
        bias=_bias(op, ctx, 2, out_c),
        w_scale=ctx.array(f"{op.name}_wscale", scales),
        w_scale0=float(scales[0]),
    )
    params = ctx.struct(f"{op.name}_p", "mm_conv_hybrid_params", fields)
    macs = geom["batches"] * geom["out_h"] * geom["out_w"] * out_c * k_h * k_w
    return Call(
        "mm_depthwise_conv_hybrid",
        [params, inp, ctx.weights(weights), out, SCRATCH],
        "mm_hybrid.h",
        scratch_shape={k: geom[k] for k in ("in_h", "in_w", "in_c")},
        macs=macs,
    )
