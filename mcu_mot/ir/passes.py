"""Graph passes run before lowering.

- fold_constants: evaluate ops whose inputs are all known at compile time
  (the SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chains Keras 3 Flatten emits).
- fuse_activations: merge a standalone RELU/RELU6/RELU_N1_TO_1 into the op that
  produces its input when that is exact (same quantization, single consumer).
"""

from __future__ import annotations

import numpy as np

from mcu_mot.errors import MotError
from mcu_mot.ir.graph import Graph, Tensor


def run_passes(graph: Graph) -> Graph:
    fold_constants(graph)
    infer_space_batch_shapes(graph)
    infer_dynamic_shapes(graph)
    fuse_activations(graph)
    remove_dead_ops(graph)
    graph.renumber()
    return graph


# ---------------------------------------------------------------- folding
def _shape(op, ins):
    return np.array(op.inputs[0].shape, dtype=np.int64 if op.options.get("out_type") == 4 else np.int32)


def _strided_slice(op, ins):
    x, begin, end, strides = (np.asarray(v) for v in ins)
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask"):
        raise _CannotFold
    begin, end, strides = begin.ravel(), end.ravel(), strides.ravel()
    if not len(begin) == len(end) == len(strides):
        raise _FoldError(f"begin, end and strides have {len(begin)}, {len(end)} and {len(strides)} values")
    if len(begin) > x.ndim:
        raise _FoldError(f"{len(begin)} begin values for an input of rank {x.ndim}")
    slices = []
    for i in range(len(begin)):
        b = None if (o.get("begin_mask", 0) >> i) & 1 else int(begin[i])
        e = None if (o.get("end_mask", 0) >> i) & 1 else int(end[i])
        s = int(strides[i])
        if s == 0:
            raise _FoldError(f"stride 0 on axis {i}")
        if (o.get("shrink_axis_mask", 0) >> i) & 1:
            if not -x.shape[i] <= int(begin[i]) < x.shape[i]:
                raise _FoldError(f"begin {int(begin[i])} is out of range for axis {i} of size {x.shape[i]}")
            slices.append(int(begin[i]))
        else:
            slices.append(slice(b, e, s))
    return np.asarray(x[tuple(slices)])


def _pack(op, ins):
    return np.stack([np.asarray(v) for v in ins], axis=op.options.get("axis", 0))


def _concat(op, ins):
    return np.concatenate([np.asarray(v) for v in ins], axis=op.options.get("axis", 0))


def _gather(op, ins):
    if op.options.get("batch_dims", 0):
        raise _CannotFold
    return np.take(ins[0], ins[1], axis=op.options.get("axis", 0))


def _reduce_prod(op, ins):
    axes = tuple(np.atleast_1d(ins[1]).tolist())
    return np.prod(ins[0], axis=axes, keepdims=bool(op.options.get("keep_dims", False)))


def _cast(op, ins):
    return ins[0].astype(op.outputs[0].dtype)


def _reshape(op, ins):
    return ins[0].reshape(op.outputs[0].shape)


def _arith(fn):
    def run(op, ins):
        if op.options.get("fused_activation_function", 0):
            raise _CannotFold
        return fn(*ins)

    return run


class _CannotFold(Exception):
    pass


class _FoldError(Exception):
    """The op's constant operands make no sense (the model is malformed)."""


_FOLDERS = {
    "SHAPE": _shape,
    "STRIDED_SLICE": _strided_slice,
    "PACK": _pack,
    "GATHER": _gather,
    "REDUCE_PROD": _reduce_prod,
    "CAST": _cast,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
    "ADD": _arith(np.add),
    "SUB": _arith(np.subtract),
    "MUL": _arith(np.multiply),
}
_INT_ONLY = {"ADD", "SUB", "MUL", "CONCATENATION", "PACK"}


def fold_constants(graph: Graph) -> None:
    """Replace ops whose inputs are all constant by constant output tensors."""
    changed = True
    while changed:
        changed = False
        for op in list(graph.ops):
            fold = _FOLDERS.get(op.opcode)
            if op.opcode == "CONCATENATION":
                fold = _concat
            if fold is None or len(op.outputs) != 1:
                continue
            needs_data = [t for t in op.inputs if t is not None]
            if op.opcode == "SHAPE":
                needs_data = []
            if any(not t.is_const for t in needs_data):
                continue
            out = op.outputs[0]
            if op.opcode in _INT_ONLY and out.quant is not None:
                continue  # quantized arithmetic must follow the kernel's rounding
            try:
                value = fold(op, [t.data for t in needs_data] if op.opcode != "SHAPE" else [])
            except _CannotFold:
                continue
            except (_FoldError, IndexError, ValueError, TypeError, OverflowError) as exc:
                raise MotError(
                    f"op {op.index} {op.opcode} '{op.name}': its constant operands cannot be evaluated: {exc}"
                ) from None
            value = np.asarray(value)
            if value.size != out.size:
                raise MotError(
                    f"op {op.index} {op.opcode} '{op.name}': computes {value.size} values of shape "
                    f"{tuple(value.shape)}, but its output tensor has shape {tuple(out.shape)}"
                )
            out.data = value.astype(out.dtype if out.dtype != "bool" else "bool").reshape(out.shape)
            graph.ops.remove(op)
            changed = True


# ---------------------------------------------------------------- shapes
_BATCH_PRESERVING = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "SUB",
    "MUL",
    "RELU",
    "RELU6",
    "LEAKY_RELU",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "QUANTIZE",
    "DEQUANTIZE",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "PAD",
    "PADV2",
}


def infer_space_batch_shapes(graph: Graph) -> None:
    """The converter stores batch 1 for tensors between SPACE_TO_BATCH_ND and
    BATCH_TO_SPACE_ND (how Keras 3 writes dilated convs); the interpreter
    resizes them at run time. We compute the real shapes at compile time."""
    if not any(op.opcode == "SPACE_TO_BATCH_ND" for op in graph.ops):
        return
    for op in graph.ops:
        inp, out = op.inputs[0], op.outputs[0]
        if op.opcode == "SPACE_TO_BATCH_ND" and op.inputs[1].is_const and op.inputs[2].is_const:
            bh, bw = (int(v) for v in op.inputs[1].data.ravel()[:2])
            pads = op.inputs[2].data.reshape(-1, 2)
            b, h, w, c = inp.shape
            out.shape = (b * bh * bw, (h + int(pads[0].sum())) // bh, (w + int(pads[1].sum())) // bw, c)
        elif op.opcode == "BATCH_TO_SPACE_ND" and op.inputs[1].is_const and op.inputs[2].is_const:
            bh, bw = (int(v) for v in op.inputs[1].data.ravel()[:2])
            crops = op.inputs[2].data.reshape(-1, 2)
            b, h, w, c = inp.shape
            out.shape = (b // (bh * bw), h * bh - int(crops[0].sum()), w * bw - int(crops[1].sum()), c)
        elif (
            op.opcode in _BATCH_PRESERVING
            and len(inp.shape) == 4
            and len(out.shape) == 4
            and inp.shape[0] != out.shape[0]
        ):
            out.shape = (inp.shape[0],) + tuple(out.shape[1:])


_SHAPE_PRESERVING = {
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "LEAKY_RELU",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "QUANTIZE",
    "DEQUANTIZE",
    "SOFTMAX",
}


def infer_dynamic_shapes(graph: Graph) -> None:
    """Recompute shapes the converter left as placeholders in models with a dynamic
    batch (e.g. a Keras 3 Dense on a rank-3 input: RESHAPE outputs stored as (1, 1)),
    once constant folding has made their shape operands known."""
    for op in graph.ops:
        out = op.outputs[0] if op.outputs else None
        inp = op.inputs[0] if op.inputs else None
        if out is None or inp is None:
            continue
        if op.opcode == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] is not None and op.inputs[1].is_const:
            new = [int(d) for d in op.inputs[1].data.ravel()]
            if new.count(-1) == 1:
                rest = int(np.prod([d for d in new if d != -1])) or 1
                new[new.index(-1)] = inp.size // rest
            if int(np.prod(new)) == inp.size:
                out.shape = tuple(new)
        elif op.opcode == "FULLY_CONNECTED" and len(op.inputs) > 1 and op.inputs[1].is_const:
            units, depth = op.inputs[1].shape[-2], op.inputs[1].shape[-1]
            if depth and inp.size % depth == 0:
                if op.options.get("keep_num_dims"):
                    out.shape = tuple(inp.shape[:-1]) + (units,)
                else:
                    out.shape = (inp.size // depth, units)
        elif op.opcode in _SHAPE_PRESERVING and out.size != inp.size:
            out.shape = tuple(inp.shape)
        elif op.opcode in ("ADD", "SUB", "MUL") and len(op.inputs) == 2:
            try:
                out.shape = tuple(np.broadcast_shapes(tuple(inp.shape), tuple(op.inputs[1].shape)))
            except ValueError:
                pass


# ---------------------------------------------------------------- fusion
_ACT_CODES = {"RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
_FUSABLE_PRODUCERS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "SUB",
    "MUL",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "TRANSPOSE_CONV_NOFUSE",
}


def _same_quant(a: Tensor, b: Tensor) -> bool:
    if a.dtype != b.dtype:
        return False
    if a.quant is None or b.quant is None:
        return a.quant is None and b.quant is None
    return np.array_equal(a.quant.scale.astype(np.float32), b.quant.scale.astype(np.float32)) and np.array_equal(
        a.quant.zero_point, b.quant.zero_point
    )


def fuse_activations(graph: Graph) -> None:
    for op in list(graph.ops):
        code = _ACT_CODES.get(op.opcode)
        if code is None:
            continue
        src = op.inputs[0]
        prod = graph.producer(src)
        if prod is None or prod.opcode not in _FUSABLE_PRODUCERS:
            continue
        if prod.options.get("fused_activation_function", 0) != 0:
            continue
        if len(graph.consumers(src)) != 1 or src in graph.outputs:
            continue
        if not _same_quant(src, op.outputs[0]):
            continue
        prod.options["fused_activation_function"] = code
        prod.outputs = [op.outputs[0]]
        graph.ops.remove(op)


def remove_dead_ops(graph: Graph) -> None:
    """Drop ops none of whose outputs reach a graph output."""
    live = {id(t) for t in graph.outputs}
    keep = []
    for op in reversed(graph.ops):
        if any(id(t) in live for t in op.outputs):
            keep.append(op)
            for t in op.inputs:
                if t is not None:
                    live.add(id(t))
    graph.ops = list(reversed(keep))
