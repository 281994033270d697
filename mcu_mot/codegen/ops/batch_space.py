"""SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: how Keras 3 expresses dilated convolutions."""

from mcu_mot.codegen.lowering import Call, lowers, unsupported
from mcu_mot.ir.graph import DTYPE_BYTES


def _params(op, ctx, kernel: str):
    inp, out = op.inputs[0], op.outputs[0]
    block, pads = op.inputs[1], op.inputs[2]
    if len(inp.shape) != 4 or not (block.is_const and pads.is_const):
        raise unsupported(op, "only 4-D tensors with constant block shape and paddings")
    if inp.dtype != out.dtype:
        raise unsupported(op, "input and output types differ")
    bh, bw = (int(v) for v in block.data.ravel()[:2])
    pad = pads.data.reshape(-1, 2)
    fields = dict(
        in_b=inp.shape[0],
        in_h=inp.shape[1],
        in_w=inp.shape[2],
        out_b=out.shape[0],
        out_h=out.shape[1],
        out_w=out.shape[2],
        block_h=bh,
        block_w=bw,
        pad_top=int(pad[0, 0]),
        pad_left=int(pad[1, 0]),
        pixel_bytes=inp.shape[3] * DTYPE_BYTES[inp.dtype],
        pad_byte=int(out.quant.zero_point[0]) & 0xFF if out.dtype == "int8" and out.quant else 0,
    )
    p = ctx.struct(f"{op.name}_p", "mm_batch_space_params", fields)
    return Call(kernel, [p, inp, out], "mm_batch_space.h")


@lowers("SPACE_TO_BATCH_ND")
def lower_space_to_batch(op, ctx):
    return _params(op, ctx, "mm_space_to_batch")


@lowers("BATCH_TO_SPACE_ND")
def lower_batch_to_space(op, ctx):
    return _params(op, ctx, "mm_batch_to_space")
