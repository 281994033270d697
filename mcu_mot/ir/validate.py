"""Validate every value the compiler reads from a .tflite flatbuffer, before the reader builds
the Graph: a malformed or hostile model ends in one MotError line naming the tensor or op,
never in a NaN multiplier, a negative index silently picking another tensor, or a crash deep
inside code generation.

Checked (subgraph 0, the one the reader uses):
- subgraph inputs/outputs and operator inputs/outputs are tensor indices in range
  (-1, "no tensor", only for optional operator inputs); opcode indices in range
- tensor types are ones the compiler knows; shapes have a sane rank and non-negative dims,
  and no tensor is larger than MAX_TENSOR_BYTES
- buffer indices in range; constant data (inline or after the flatbuffer) inside the file
  and exactly as long as the shape and type say
- quantization: scales finite and > 0, zero points as many as scales and inside the range
  of the tensor's type, quantized_dimension inside the rank and, per channel, as many scales
  as that dimension has channels
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mcu_mot.errors import MotError
from mcu_mot.safetext import clean_name

MAX_RANK = 8
MAX_TENSOR_BYTES = (1 << 31) - 1  # offsets and sizes in the generated C are 32-bit
MAX_TENSORS = 1 << 20
# int16x8 biases: accumulator + bias must not overflow int64 (the products add at most ~2^47)
MAX_BIAS64 = 1 << 62

# TensorType -> (name, bytes per element, zero point range or None)
_TYPES = {
    tflite.TensorType.FLOAT32: ("float32", 4, None),
    tflite.TensorType.INT32: ("int32", 4, (-(1 << 31), (1 << 31) - 1)),
    tflite.TensorType.UINT8: ("uint8", 1, (0, 255)),
    tflite.TensorType.INT64: ("int64", 8, (-(1 << 63), (1 << 63) - 1)),
    tflite.TensorType.INT16: ("int16", 2, (-32768, 32767)),
    tflite.TensorType.INT8: ("int8", 1, (-128, 127)),
    tflite.TensorType.BOOL: ("bool", 1, None),
}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}


def _name(raw, fallback: str) -> str:
    return clean_name(raw, fallback)


class _Where:
    def __init__(self, path):
        self.file = str(path)

    def fail(self, msg: str) -> MotError:
        return MotError(f"{self.file}: {msg}")


def validate_model(buf: bytes, path) -> None:
    """Raise a one-line MotError for the first invalid value of the model in `buf`."""
    where = _Where(Path(path))
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise where.fail("model has no subgraph")
    sg = model.Subgraphs(0)
    if sg is None:
        raise where.fail("subgraph 0 is missing")
    n_tensors = sg.TensorsLength()
    if n_tensors > MAX_TENSORS:
        raise where.fail(f"subgraph 0 declares {n_tensors} tensors (at most {MAX_TENSORS})")
    n_buffers = model.BuffersLength()
    names = []
    for i in range(n_tensors):
        t = sg.Tensors(i)
        if t is None:
            raise where.fail(f"tensor {i} is missing")
        names.append(_name(t.Name(), f"tensor{i}"))
        _check_tensor(where, model, t, i, names[i], n_buffers, len(buf))

    def tensor_index(j, what: str, optional: bool = False) -> None:
        j = int(j)
        if optional and j == -1:
            return
        if not 0 <= j < n_tensors:
            raise where.fail(f"{what} refers to tensor {j}, but the model has tensors 0..{n_tensors - 1}")

    for k in sg.InputsAsNumpy() if sg.InputsLength() else []:
        tensor_index(k, "a model input")
    for k in sg.OutputsAsNumpy() if sg.OutputsLength() else []:
        tensor_index(k, "a model output")
    n_codes = model.OperatorCodesLength()
    # data flow: what an operator reads is a model input, a constant, a variable, or written before
    ready = {int(k) for k in (sg.InputsAsNumpy() if sg.InputsLength() else [])}
    for i in range(n_tensors):
        t = sg.Tensors(i)
        if t.IsVariable() or _has_data(model, t):
            ready.add(i)
    for j in range(sg.OperatorsLength()):
        op = sg.Operators(j)
        if op is None:
            raise where.fail(f"operator {j} is missing")
        code = int(op.OpcodeIndex())
        if not 0 <= code < n_codes:
            raise where.fail(f"operator {j} has opcode index {code}, but the model has {n_codes} operator codes")
        ins = op.InputsAsNumpy() if op.InputsLength() else []
        outs = op.OutputsAsNumpy() if op.OutputsLength() else []
        opname = _opname(model, code)
        label = f"operator {j} ({opname})"
        for n, k in enumerate(ins):
            if int(k) == -1 and not _may_omit(opname, n):
                raise where.fail(f"{label} input {n} is missing (tensor index -1), which {opname} does not allow")
            tensor_index(k, f"{label} input {n}", optional=True)
        for n, k in enumerate(outs):
            tensor_index(k, f"{label} output {n}")
        for n, k in enumerate(ins):
            if int(k) != -1 and int(k) not in ready:
                raise where.fail(
                    f"{label} input {n} reads tensor {int(k)} '{names[int(k)]}', which is neither a "
                    "model input nor a constant nor written by an earlier operator"
                )
        ready.update(int(k) for k in outs)
        _check_op(where, sg, opname, label, [int(k) for k in ins], [int(k) for k in outs], names, model, op)
    for k in sg.OutputsAsNumpy() if sg.OutputsLength() else []:
        if int(k) not in ready:
            raise where.fail(f"model output tensor {int(k)} '{names[int(k)]}' is never written")


def _has_data(model, t) -> bool:
    b = model.Buffers(int(t.Buffer())) if model.BuffersLength() else None
    return b is not None and (b.DataLength() > 0 or b.Offset() > 1)


def _shape(t) -> tuple:
    return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()


# op -> (weights input, bias input, which weights dimension counts the output channels)
_WEIGHTED = {
    "CONV_2D": (1, 2, 0),
    "DEPTHWISE_CONV_2D": (1, 2, 3),
    "FULLY_CONNECTED": (1, 2, 0),
    "TRANSPOSE_CONV": (1, 3, 0),
}


_GEOMETRY = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
}
_POSITIVE = (
    "StrideH",
    "StrideW",
    "DilationHFactor",
    "DilationWFactor",
    "FilterHeight",
    "FilterWidth",
    "DepthMultiplier",
)


def _check_geometry(where: _Where, op, opname: str, label: str) -> None:
    """Strides, dilations, filter sizes and depth multipliers of the 2-D ops are >= 1."""
    cls = getattr(tflite, _GEOMETRY[opname], None)
    table = op.BuiltinOptions()
    if cls is None or table is None:
        return
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    for field in _POSITIVE:
        if hasattr(opts, field):
            value = int(getattr(opts, field)())
            if value < 1 and not (field == "DepthMultiplier" and value == 0):  # 0: TFLM infers it
                raise where.fail(f"{label}: option {field} = {value} (must be at least 1)")


def _check_op(where: _Where, sg, opname: str, label: str, ins: list, outs: list, names: list, model, op=None) -> None:
    """The structure the lowerings rely on: 2-D geometry options >= 1; for the weighted ops,
    weights of the right rank and a constant bias with one value per output channel."""
    if op is not None and opname in _GEOMETRY:
        _check_geometry(where, op, opname, label)
    if opname not in _WEIGHTED:
        return
    wi, bi, cdim = _WEIGHTED[opname]
    if len(ins) <= wi or ins[wi] == -1 or not outs:
        raise where.fail(f"{label} has no weights input")
    w = sg.Tensors(ins[wi])
    wshape = _shape(w)
    rank = 2 if opname == "FULLY_CONNECTED" else 4
    if len(wshape) != rank if opname != "FULLY_CONNECTED" else len(wshape) < 2:
        raise where.fail(f"{label}: weights tensor {ins[wi]} '{names[ins[wi]]}' has shape {wshape}, not rank {rank}")
    if opname == "FULLY_CONNECTED":  # (the input's shape may be a placeholder of a dynamic batch)
        channels = wshape[-2]
    else:
        channels = wshape[cdim]
    if len(ins) > bi and ins[bi] != -1:
        b = sg.Tensors(ins[bi])
        if not _has_data(model, b):
            raise where.fail(f"{label}: bias tensor {ins[bi]} '{names[ins[bi]]}' is not constant (not supported)")
        if math.prod(_shape(b)) != channels:
            raise where.fail(
                f"{label}: bias tensor {ins[bi]} '{names[ins[bi]]}' has {math.prod(_shape(b))} values "
                f"for {channels} output channels"
            )
        if b.Type() == tflite.TensorType.INT64:
            values = _int64_data(model, b)
            lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
            if max(-lo, hi) > MAX_BIAS64:
                big = lo if -lo > hi else hi
                raise where.fail(
                    f"{label}: bias tensor {ins[bi]} '{names[ins[bi]]}' holds {big}, beyond the "
                    f"+-2^62 an int64 accumulator adds without overflow"
                )


def _int64_data(model, t) -> np.ndarray:
    b = model.Buffers(int(t.Buffer()))
    if b.DataLength() > 0:
        raw = b.DataAsNumpy().tobytes()
    else:
        raw = bytes(b._tab.Bytes[b.Offset() : b.Offset() + b.Size()])
    return np.frombuffer(raw[: len(raw) // 8 * 8], np.int64)


# inputs an op may leave out (index -1); ops not listed have none. The recurrent ops (which the
# compiler does not lower; they get an "unsupported op" error later) may omit any but the first.
_OPTIONAL_INPUTS = {
    "CONV_2D": {2},
    "DEPTHWISE_CONV_2D": {2},
    "FULLY_CONNECTED": {2},
    "TRANSPOSE_CONV": {3},
    "CONV_3D": {2},
    "CONV_3D_TRANSPOSE": {3},
    "SVDF": {3, 4},
}
_ANY_BUT_FIRST = (
    "LSTM",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "BIDIRECTIONAL_SEQUENCE_LSTM",
    "RNN",
    "UNIDIRECTIONAL_SEQUENCE_RNN",
    "BIDIRECTIONAL_SEQUENCE_RNN",
)


def _may_omit(opname: str, position: int) -> bool:
    if opname.startswith("CUSTOM") or opname.startswith("BUILTIN_"):
        return True
    if opname in _ANY_BUT_FIRST:
        return position > 0
    return position in _OPTIONAL_INPUTS.get(opname, ())


def _opname(model, code: int) -> str:
    c = model.OperatorCodes(code)
    builtin = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
    return BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")


def _check_tensor(where: _Where, model, t, i: int, name: str, n_buffers: int, file_size: int) -> None:
    label = f"tensor {i} '{name}'"
    ttype = t.Type()
    if ttype not in _TYPES:
        raise where.fail(
            f"{label}: type {_TYPE_NAMES.get(ttype, ttype)} is not supported "
            f"(supported: {', '.join(v[0] for v in _TYPES.values())})"
        )
    dtype, itemsize, zp_range = _TYPES[ttype]
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    if len(shape) > MAX_RANK:
        raise where.fail(f"{label}: rank {len(shape)} (at most {MAX_RANK})")
    for d in shape:
        if d < 0:
            raise where.fail(f"{label}: shape {tuple(shape)} has a negative dimension")
    count = math.prod(shape)
    if count * itemsize > MAX_TENSOR_BYTES:
        raise where.fail(f"{label}: shape {tuple(shape)} is {count * itemsize} bytes (at most {MAX_TENSOR_BYTES})")

    b_index = int(t.Buffer())
    if not 0 <= b_index < max(n_buffers, 1):
        raise where.fail(f"{label}: buffer index {b_index}, but the model has {n_buffers} buffers")
    b = model.Buffers(b_index) if n_buffers else None
    if b is not None:
        size = None
        if b.DataLength() > 0:
            size = b.DataLength()
        elif b.Offset() > 1:
            off, size = int(b.Offset()), int(b.Size())
            if off + size > file_size:
                raise where.fail(
                    f"{label}: its data (bytes {off}..{off + size}) lies beyond the end of the file ({file_size} bytes)"
                )
        if size is not None and size != count * itemsize:
            raise where.fail(
                f"{label}: buffer {b_index} holds {size} bytes, but shape {tuple(shape)} of "
                f"{dtype} needs {count * itemsize}"
            )

    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return
    scales = q.ScaleAsNumpy().astype(np.float64)
    bad = [float(s) for s in scales if not (math.isfinite(s) and s > 0)]
    if bad:
        raise where.fail(f"{label}: quantization scale {bad[0]!r} is not a finite positive number")
    n = len(scales)
    zps = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(n, np.int64)
    if len(zps) != n:
        raise where.fail(f"{label}: {n} quantization scales but {len(zps)} zero points")
    if zp_range is not None:
        lo, hi = zp_range
        out = [int(z) for z in zps if not lo <= int(z) <= hi]
        if out:
            raise where.fail(f"{label}: zero point {out[0]} is outside the range of {dtype} ({lo}..{hi})")
    axis = int(q.QuantizedDimension())
    if axis != 0 and not 0 <= axis < len(shape):
        raise where.fail(f"{label}: quantized_dimension {axis} is outside its rank {len(shape)}")
    if n > 1:
        if not shape:
            raise where.fail(f"{label}: {n} per-channel scales for a scalar")
        if shape[axis] != n:
            raise where.fail(
                f"{label}: {n} per-channel scales, but dimension {axis} of shape {tuple(shape)} "
                f"has {shape[axis]} channels"
            )
