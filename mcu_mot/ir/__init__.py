"""The Graph IR: one representation between .tflite import and code generation."""

from mcu_mot.ir.graph import Graph, Op, Quant, Tensor
from mcu_mot.ir.reader import read_tflite

__all__ = ["Graph", "Op", "Quant", "Tensor", "read_tflite"]
