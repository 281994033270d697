"""Which kernels may run with their output overlapping their input, and by how much.

The portable conv, depthwise and pooling kernels walk output pixels in raster
order and write a pixel only from inputs of that pixel's window, so their
output can start `raster_lead` bytes below their input (plan/overlap.py).
A kernel added to RASTER_KERNELS must keep that property; one that computes
k output pixels together says so with Call(raster_block=k), one that does
not walk in raster order with raster_block=0.
"""

from __future__ import annotations

from mcu_mot.codegen.analysis import window_geometry
from mcu_mot.codegen.lowering import Call
from mcu_mot.ir.graph import DTYPE_BYTES
from mcu_mot.plan.overlap import raster_lead

RASTER_KERNELS = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"}


def overlap_lead(op, call: Call):
    """(0, 0, lead) for a raster-order kernel whose output may overlap its input, else None."""
    if op.opcode not in RASTER_KERNELS or call.inplace is not None or call.raster_block <= 0:
        return None
    inp, out = op.inputs[0], op.outputs[0]
    if len(inp.shape) != 4 or len(out.shape) != 4:
        return None
    o = op.options
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = op.inputs[1]
        k_h, k_w = int(w.shape[1]), int(w.shape[2])
    else:
        k_h, k_w = int(o.get("filter_height", 1)), int(o.get("filter_width", 1))
    g = window_geometry(op, inp, out, k_h, k_w, k_c=1)
    lead = raster_lead(
        inp.shape,
        out.shape,
        DTYPE_BYTES[inp.dtype],
        DTYPE_BYTES[out.dtype],
        (g.stride_h, g.stride_w),
        (g.pad_h, g.pad_w),
        block=call.raster_block,
    )
    return (0, 0, lead)
