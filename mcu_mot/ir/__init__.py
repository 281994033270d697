"""The Graph IR: one representation between .tflite import and code generation."""
from .graph import Graph, Op, Quant, Tensor
from .reader import read_tflite

__all__ = ["Graph", "Op", "Quant", "Tensor", "read_tflite"]
