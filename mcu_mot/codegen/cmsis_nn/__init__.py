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

import os
from pathlib import Path
from typing import Callable

from mcu_mot.errors import MotError
from mcu_mot.codegen.lowering import registrar

HEADER = "arm_nnfunctions.h"
_LOWERINGS: dict[str, Callable] = {}


class NotCovered(Exception):
    """CMSIS-NN has no function for this layer (or one that differs from TFLM)."""


class ScratchContext:
    """Call argument: a cmsis_nn_context whose buf is the layer's planned scratch."""

    def __init__(self, size: int):
        self.size = int(size)

    def __repr__(self):
        return f"ScratchContext({self.size})"


lowers = registrar(_LOWERINGS)


def cmsis_nn_path(required: bool = True):
    """The CMSIS-NN checkout CMSIS_NN_PATH points at (a Path), or None when unset and not required.
    A path that is not a checkout is a one-line MotError either way."""
    raw = os.environ.get("CMSIS_NN_PATH", "").strip()
    if not raw:
        if required:
            raise MotError("backend cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout "
                           "(git clone https://github.com/ARM-software/CMSIS-NN); or use --backend portable")
        return None
    path = Path(raw).expanduser()
    if not (path / "Include" / "arm_nnfunctions.h").is_file() or not (path / "Source").is_dir():
        raise MotError(f"CMSIS_NN_PATH={raw} does not look like a CMSIS-NN checkout "
                       "(no Include/arm_nnfunctions.h and Source/)")
    return path.resolve()


def lower(op, ctx):
    """A Call to CMSIS-NN for `op`, or raise NotCovered(reason)."""
    _load()
    fn = _LOWERINGS.get(op.opcode)
    if fn is None:
        raise NotCovered(f"CMSIS-NN has no {op.opcode}")
    call = fn(op, ctx)
    call.reads = [t for t in op.inputs if t is not None and not t.is_const]
    call.writes = list(op.outputs)
    return call


def is_cmsis_call(call) -> bool:
    return getattr(call, "header", None) == HEADER


_loaded = False


def _load():
    global _loaded
    if not _loaded:
        from mcu_mot.codegen.cmsis_nn import ops  # noqa: F401  (registers the lowerings)
        _loaded = True
