"""AVERAGE_POOL_2D / MAX_POOL_2D lowering (int8, int16, float32).

TFLM requires equal input/output quantization for the integer kernels, so no
rescaling happens: an integer average (rounded half away from zero) or a max,
then the fused-activation clamp.
"""

from dataclasses import asdict

from mcu_mot.codegen.analysis import float_range, pool_geometry, pool_quant
from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.codegen.ops.common import kernel_suffix


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D")
def lower_pool(op, ctx):
    inp, out = op.inputs[0], op.outputs[0]
    sfx = kernel_suffix(op, inp)
    if out.dtype != inp.dtype:
        raise unsupported(op, f"input {inp.dtype} with output {out.dtype}")
    g = pool_geometry(op)
    fields = asdict(g)
    if sfx == "f32":
        lo, hi = float_range(op)
        fields.update(act_min=0, act_max=0, act_min_f=lo, act_max_f=hi)
    else:
        lo, hi = pool_quant(op)
        fields.update(act_min=lo, act_max=hi, act_min_f=0.0, act_max_f=0.0)
    kind = "avg" if op.opcode == "AVERAGE_POOL_2D" else "max"
    params = ctx.struct(f"{op.name}_p", "mm_pool_params", fields)
    return Call(f"mm_{kind}_pool_{sfx}", [params, inp, out], "mm_pool.h", macs=g.macs)
