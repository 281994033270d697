"""AVERAGE_POOL_2D / MAX_POOL_2D lowering (int8, int16, float32).

TFLM requires equal input/output quantization for the integer kernels, so no
rescaling happens: an integer average (rounded half away from zero) or a max,
then the fused-activation clamp.
"""
import numpy as np

from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix, qparams
from mcu_mot.ir.quantize import activation_range

_FLT_MAX = float(np.finfo(np.float32).max)


def out_size(padding: int, size: int, filter_size: int, stride: int) -> int:
    """TFLite's windowed output size; padding 0 = SAME, 1 = VALID (schema enum)."""
    if padding == 0:
        return (size + stride - 1) // stride
    return (size - filter_size + stride) // stride


def same_padding(stride: int, size: int, filter_size: int, out: int) -> int:
    """TFLM ComputePadding (dilation 1): the top/left half of the total padding."""
    return max(0, (out - 1) * stride + filter_size - size) // 2


def pool_geometry(op, inp, out):
    o = op.options
    if len(inp.shape) != 4 or len(out.shape) != 4:
        raise unsupported(op, f"input '{inp.name}' must be 4-D NHWC, got shape {inp.shape}")
    n, h, w, c = inp.shape
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    fh, fw = int(o.get("filter_height", 1)), int(o.get("filter_width", 1))
    padding = int(o.get("padding", 0))
    if padding not in (0, 1) or min(sh, sw, fh, fw) < 1:
        raise unsupported(op, f"padding {padding}, strides {sh}x{sw}, filter {fh}x{fw}")
    oh, ow = out_size(padding, h, fh, sh), out_size(padding, w, fw, sw)
    if (n, oh, ow, c) != tuple(out.shape):
        raise unsupported(op, f"output shape {out.shape} does not match the computed {(n, oh, ow, c)}")
    return dict(batches=n, in_h=h, in_w=w, depth=c, out_h=oh, out_w=ow,
                stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw,
                pad_h=same_padding(sh, h, fh, oh), pad_w=same_padding(sw, w, fw, ow))


def float_activation_range(op):
    """TFLM CalculateActivationRange<float>: +-FLT_MAX when there is no activation."""
    fused = int(op.options.get("fused_activation_function", 0))
    if fused not in (0, 1, 2, 3):
        raise unsupported(op, f"fused activation {fused}")
    lo, hi = {0: (-_FLT_MAX, _FLT_MAX), 1: (0.0, _FLT_MAX), 2: (-1.0, 1.0), 3: (0.0, 6.0)}[fused]
    return lo, hi


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    sfx = kernel_suffix(op, inp)
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} with output {out.dtype}")
    fields = pool_geometry(op, inp, out)
    fused = int(op.options.get("fused_activation_function", 0))
    if sfx == "f32":
        lo, hi = float_activation_range(op)
        fields.update(act_min=0, act_max=0, act_min_f=lo, act_max_f=hi)
    else:
        s_in, z_in = qparams(op, inp)
        s_out, z_out = qparams(op, out)
        if abs(s_in - s_out) > 1e-6 or z_in != z_out:
            raise unsupported(op, f"input '{inp.name}' and output '{out.name}' quantization differ "
                                  "(TFLM requires them equal)")
        if fused not in (0, 1, 2, 3):
            raise unsupported(op, f"fused activation {fused}")
        lo, hi = activation_range(fused, out.dtype, s_out, z_out)
        fields.update(act_min=lo, act_max=hi, act_min_f=0.0, act_max_f=0.0)
    kind = "avg" if op.opcode == "AVERAGE_POOL_2D" else "max"
    window = fields["out_h"] * fields["out_w"] * fields["depth"] * fields["batches"]
    params = ctx.struct(f"{op.name}_p", "mm_pool_params", fields)
    return Call(f"mm_{kind}_pool_{sfx}", [params, inp, out], "mm_pool.h",
                macs=window * fields["filter_h"] * fields["filter_w"])
