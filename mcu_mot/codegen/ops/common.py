"""Helpers of the portable lowerings: kernel dtype suffixes. The op analysis (geometry,
quantization, requantization ranges) both backends share is codegen/analysis.py."""

from __future__ import annotations

from mcu_mot.codegen.lowering import unsupported
from mcu_mot.ir.graph import Op, Tensor

SUFFIX = {"int8": "s8", "int16": "s16", "float32": "f32"}


def kernel_suffix(op: Op, tensor: Tensor, allowed=("int8", "int16", "float32")) -> str:
    if tensor.dtype not in allowed:
        raise unsupported(op, f"dtype {tensor.dtype} is not supported")
    return SUFFIX[tensor.dtype]
