"""What the CMSIS-NN lowerings share: the header, the lowering registry, the NotCovered signal,
the scratch-context argument and where the user's CMSIS-NN checkout is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from mcu_mot.codegen.lowering import registrar
from mcu_mot.errors import MotError

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
            raise MotError(
                "backend cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout "
                "(git clone https://github.com/ARM-software/CMSIS-NN); or use --backend portable"
            )
        return None
    path = Path(raw).expanduser()
    if not (path / "Include" / "arm_nnfunctions.h").is_file() or not (path / "Source").is_dir():
        raise MotError(
            f"CMSIS_NN_PATH={raw} does not look like a CMSIS-NN checkout (no Include/arm_nnfunctions.h and Source/)"
        )
    return path.resolve()


def is_cmsis_call(call) -> bool:
    return getattr(call, "header", None) == HEADER
