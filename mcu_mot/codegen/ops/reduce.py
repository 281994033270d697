"""MEAN lowering (int8, int16, float32), e.g. GlobalAveragePooling2D.

Integer MEAN follows TFLM's QuantizedMeanOrSum: an int32 (wrapping) sum per
output, minus zero_point * count, then MultiplyByQuantizedMultiplier with
QuantizeMultiplier(s_in / s_out) folded with 1/count exactly as TFLM folds it
at run time (shift = floor(log2(count)) clamped, multiplier << shift / count).
"""

import numpy as np

from mcu_mot.codegen.analysis import qparams
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix
from mcu_mot.ir.quantize import quantize_multiplier, wrap_int32

GROUPS = 4  # MM_REDUCE_GROUPS in mm_reduce.h


def reduce_groups(op, shape, axes):
    """Merge adjacent axes into (dim, stride) groups: kept ones and reduced ones."""
    ndim = len(shape)
    strides = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(ndim)]
    groups = []  # [kind, dim, stride]
    for i, d in enumerate(shape):
        if d == 1:
            continue
        kind = "red" if i in axes else "keep"
        if groups and groups[-1][0] == kind:
            groups[-1][1] *= d
            groups[-1][2] = strides[i]
        else:
            groups.append([kind, d, strides[i]])
    keep = [(d, s) for k, d, s in groups if k == "keep"]
    red = [(d, s) for k, d, s in groups if k == "red"]
    if len(keep) > GROUPS or len(red) > GROUPS:
        raise unsupported(op, f"reduction of shape {shape} over axes {sorted(axes)} is too fragmented")
    pad = lambda g: [(1, 0)] * (GROUPS - len(g)) + g
    return pad(keep), pad(red)


def resolve_axes(op, axis_tensor, ndim):
    if axis_tensor is None or not axis_tensor.is_const:
        raise unsupported(op, "non-constant reduction axes")
    axes = set()
    for a in np.atleast_1d(axis_tensor.data).astype(np.int64).tolist():
        a = a + ndim if a < 0 else a
        if not 0 <= a < ndim:
            raise unsupported(op, f"axis {a} out of range for rank {ndim}")
        axes.add(int(a))
    return axes


def mean_multiplier(op, s_in: float, s_out: float, count: int):
    """TFLM: QuantizeMultiplier(double(s_in)/double(s_out)), then folded with 1/count."""
    mult, shift = quantize_multiplier(float(s_in) / float(s_out))
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    if fold < 0:
        raise unsupported(op, f"scale ratio {s_in}/{s_out} is too small")
    mult = (mult << fold) // count
    return int(mult), shift - fold


@lowers("MEAN")
def lower_mean(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    sfx = kernel_suffix(op, inp)
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} with output {out.dtype}")
    shape = tuple(int(d) for d in inp.shape)
    if not shape or min(shape) < 1:
        raise unsupported(op, f"input shape {shape}")
    axes = resolve_axes(op, op.inputs[1] if len(op.inputs) > 1 else None, len(shape))
    keep, red = reduce_groups(op, shape, axes)
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if axes else 1
    outputs = int(np.prod([d for d, _ in keep], dtype=np.int64))
    if outputs != out.size:
        raise unsupported(op, f"output '{out.name}' has {out.size} elements, expected {outputs}")
    fields = dict(
        keep_dims="{%s}" % ", ".join(str(d) for d, _ in keep),
        keep_strides="{%s}" % ", ".join(str(s) for _, s in keep),
        red_dims="{%s}" % ", ".join(str(d) for d, _ in red),
        red_strides="{%s}" % ", ".join(str(s) for _, s in red),
        count=count,
    )
    if sfx == "f32":
        fields.update(zp_times_count=0, multiplier=0, shift=0, output_zp=0)
    else:
        s_in, z_in = qparams(op, inp)
        s_out, z_out = qparams(op, out)
        mult, shift = mean_multiplier(op, s_in, s_out, count)
        zc = wrap_int32(z_in * count)
        fields.update(zp_times_count=zc, multiplier=mult, shift=shift, output_zp=z_out)
    params = ctx.struct(f"{op.name}_p", "mm_reduce_params", fields)
    return Call(f"mm_mean_{sfx}", [params, inp, out], "mm_reduce.h", macs=inp.size)
