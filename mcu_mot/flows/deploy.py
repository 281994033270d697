"""Compile and build with the backend choice resolved: `auto` measures both backends on an
emulated board (mcu_mot.flows.autotune, cached) and hands the chosen code to the stage below,
so codegen and fwbuild never reach up to the device."""

from __future__ import annotations

from pathlib import Path

from mcu_mot.boards import load_board
from mcu_mot.codegen import compile as codegen
from mcu_mot.codegen.cmsis_nn import cmsis_nn_path
from mcu_mot.codegen.compile import write_output_dir
from mcu_mot.flows.autotune import generate_auto
from mcu_mot.fwbuild import firmware


def compile_model(model_path, out_dir, backend: str = "portable", board: str = "host", progress=None) -> dict:
    """Write OUT/model.c, model.h, kernels/ and report.json atomically; return the report.
    backend auto with CMSIS_NN_PATH set measures both backends on QEMU first."""
    if backend != "auto":
        return codegen.compile_model(model_path, out_dir, backend=backend, board=board)
    compiled = generate_auto(model_path, board, progress=progress)
    write_output_dir(Path(out_dir), compiled)
    return compiled.report


def build_firmware(model_path, board, out_dir, backend: str = "portable", progress=None, **options) -> dict:
    """mcu_mot.fwbuild.build, with backend auto measured first when CMSIS_NN_PATH is set."""
    compiled = None
    if backend == "auto" and cmsis_nn_path(required=False) is not None:
        b = load_board(board)
        compiled = generate_auto(model_path, b.name)
    return firmware.build(model_path, board, out_dir, backend=backend, progress=progress, compiled=compiled, **options)
