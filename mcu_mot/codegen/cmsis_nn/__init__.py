"""The cmsis-nn backend: layers lowered to calls into Arm's CMSIS-NN library.

CMSIS-NN is not part of mcu_mot: the user points CMSIS_NN_PATH at a checkout
(https://github.com/ARM-software/CMSIS-NN). A lowering here returns a Call to
a CMSIS-NN function with every parameter struct (cmsis_nn_conv_params,
cmsis_nn_dims, per-channel multipliers/shifts...) as static const data, or
raises NotCovered when CMSIS-NN has no function with TFLM's semantics for that
layer: the compiler then lowers the layer with the portable kernels.

Scratch buffers are planned in the arena like ours (Call.scratch_bytes, sizes
computed in buffers.py); the cmsis_nn_context pointing at them is built once
the memory plan exists (ScratchContext, resolved in codegen/compile.py).
"""

from __future__ import annotations

from mcu_mot.codegen.cmsis_nn import ops as _ops  # noqa: F401  (importing the lowerings registers them)
from mcu_mot.codegen.cmsis_nn.registry import (
    _LOWERINGS,
    HEADER,
    NotCovered,
    ScratchContext,
    cmsis_nn_path,
    is_cmsis_call,
    lowers,
)

__all__ = ["HEADER", "NotCovered", "ScratchContext", "cmsis_nn_path", "is_cmsis_call", "lower", "lowers"]


def lower(op, ctx):
    """A Call to CMSIS-NN for `op`, or raise NotCovered(reason)."""
    fn = _LOWERINGS.get(op.opcode)
    if fn is None:
        raise NotCovered(f"CMSIS-NN has no {op.opcode}")
    call = fn(op, ctx)
    call.reads = [t for t in op.inputs if t is not None and not t.is_const]
    call.writes = list(op.outputs)
    return call
