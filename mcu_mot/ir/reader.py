"""Read a .tflite flatbuffer into the Graph IR.

Uses the `tflite` package (code generated from the official schema) so that no
hand-written flatbuffer parsing lives here and TensorFlow is not imported.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import tflite
from tflite.utils import BUILTIN_OPCODE2NAME

from mcu_mot.errors import MotError
from mcu_mot.ir.graph import Graph, Op, Quant, Tensor
from mcu_mot.safetext import clean_name

# TensorType enum -> our dtype names
_TENSOR_TYPES = {
    tflite.TensorType.FLOAT32: "float32",
    tflite.TensorType.INT32: "int32",
    tflite.TensorType.UINT8: "uint8",
    tflite.TensorType.INT64: "int64",
    tflite.TensorType.INT16: "int16",
    tflite.TensorType.INT8: "int8",
    tflite.TensorType.BOOL: "bool",
}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_OPTION_CLASSES = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}


def read_tflite(path) -> Graph:
    """Parse `path` into a Graph; any malformation becomes a one-line MotError."""
    path = Path(path)
    if not path.is_file():
        raise MotError(f"model file not found: {path}")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise MotError(f"{path}: not a .tflite model (no TFL3 identifier)")
    try:
        __import__("mcu_mot.ir.validate", fromlist=["validate_model"]).validate_model(buf, path)
        return _parse(buf, path.stem)
    except MotError:
        raise
    except Exception as exc:  # the flatbuffer library raises anything on bad offsets
        raise MotError(f"{path}: malformed .tflite model ({type(exc).__name__}: {exc})") from None


def _parse(buf: bytes, name: str) -> Graph:
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise MotError("model has no subgraph")
    sg = model.Subgraphs(0)
    tensors = [_read_tensor(model, sg.Tensors(i), i, buf) for i in range(sg.TensorsLength())]
    ops = []
    for i in range(sg.OperatorsLength()):
        top = sg.Operators(i)
        code = model.OperatorCodes(top.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opname = BUILTIN_OPCODE2NAME.get(builtin, f"BUILTIN_{builtin}")
        if opname == "CUSTOM":
            opname = "CUSTOM:" + clean_name(code.CustomCode(), "?")
        ins = [tensors[j] if j >= 0 else None for j in top.InputsAsNumpy()] if top.InputsLength() else []
        outs = [tensors[j] for j in top.OutputsAsNumpy()] if top.OutputsLength() else []
        ops.append(Op(i, opname, ins, outs, _read_options(top)))
    inputs = [tensors[j] for j in sg.InputsAsNumpy()]
    outputs = [tensors[j] for j in sg.OutputsAsNumpy()]
    return Graph(name, tensors, ops, inputs, outputs)


def _read_tensor(model, t, index: int, buf: bytes) -> Tensor:
    ttype = t.Type()
    name = clean_name(t.Name(), f"tensor{index}")
    if ttype not in _TENSOR_TYPES:
        dtype = _TYPE_NAMES.get(ttype, str(ttype)).lower()
    else:
        dtype = _TENSOR_TYPES[ttype]
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() > 0:
        scale = q.ScaleAsNumpy().astype(np.float64)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros_like(scale, np.int64)
        quant = Quant(scale, zp, int(q.QuantizedDimension()))
    data = None
    b = model.Buffers(t.Buffer())
    raw = None
    if b is not None and b.DataLength() > 0:
        raw = b.DataAsNumpy().tobytes()
    elif b is not None and b.Offset() > 1:  # large models keep buffers after the flatbuffer
        raw = buf[b.Offset() : b.Offset() + b.Size()]
    if raw is not None:
        npdtype = np.dtype(dtype if dtype != "bool" else "bool")
        data = np.frombuffer(raw, dtype=npdtype).reshape(shape).copy()
    return Tensor(index, name, shape, dtype, quant, data)


def _read_options(top) -> dict:
    """Turn the op's builtin options table into a plain dict with snake_case keys."""
    kind = top.BuiltinOptionsType()
    table = top.BuiltinOptions()
    if kind == 0 or table is None:
        return {}
    cls = getattr(tflite, _OPTION_CLASSES[kind])
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    out = {}
    for attr, fn in inspect.getmembers(obj, inspect.ismethod):
        if attr.startswith(("Init", "GetRootAs", "_")) or attr.endswith(("Length", "IsNone")):
            continue
        if attr.endswith("AsNumpy"):
            val = fn()
            out[_snake(attr[:-7])] = [] if isinstance(val, int) else val.tolist()
            continue
        try:
            val = fn()
        except TypeError:
            continue  # vector element accessors take an index; read via AsNumpy
        out.setdefault(_snake(attr), val)
    return out


def _snake(name: str) -> str:
    s = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return s.replace("_h_", "_h_")
