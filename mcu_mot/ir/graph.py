"""Graph, Tensor, Op and Quant: the compiler's single internal representation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4, "bool": 1}
C_TYPES = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "float32": "float",
    "bool": "uint8_t",
}


@dataclass
class Quant:
    """Affine quantization: real = scale * (q - zero_point); per-channel along `axis`."""

    scale: np.ndarray  # float64, shape (1,) or (channels,)
    zero_point: np.ndarray  # int64, same shape
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def single(self) -> tuple[float, int]:
        return float(self.scale[0]), int(self.zero_point[0])


@dataclass(eq=False)
class Tensor:
    index: int
    name: str
    shape: tuple
    dtype: str
    quant: Optional[Quant] = None
    data: Optional[np.ndarray] = None  # constant buffer, None for activations

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if len(self.shape) else 1

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]

    @property
    def ctype(self) -> str:
        return C_TYPES[self.dtype]

    def __repr__(self):
        return f"Tensor({self.index}, {self.name!r}, {self.shape}, {self.dtype})"


@dataclass(eq=False)
class Op:
    index: int
    opcode: str  # TFLite builtin name, e.g. "CONV_2D"
    inputs: list  # list[Optional[Tensor]]
    outputs: list  # list[Tensor]
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.outputs[0].name if self.outputs else f"op{self.index}"

    def __repr__(self):
        return f"Op({self.index}, {self.opcode}, out={self.name!r})"


@dataclass
class Graph:
    name: str
    tensors: list
    ops: list
    inputs: list
    outputs: list

    def consumers(self, tensor: Tensor) -> list:
        return [op for op in self.ops if any(t is tensor for t in op.inputs if t is not None)]

    def producer(self, tensor: Tensor):
        for op in self.ops:
            if any(t is tensor for t in op.outputs):
                return op
        return None

    def renumber(self) -> None:
        """Give ops consecutive indices after passes removed some."""
        for i, op in enumerate(self.ops):
            op.index = i
