"""Splice ops of one converted model into another converted model of the same Keras model.

The TF converter cannot mix int8 and int16x8 layers in one model, nor keep
layers in float32 in an int16x8 model. Both are done here on the flatbuffer
object API (tensorflow.lite.python.schema_py_generated ModelT):

- `base`: the model that is kept (e.g. full int8), `donor`: the same Keras
  model converted another way (int16x8, or float32);
- the ops of the two are paired by structure: QUANTIZE/DEQUANTIZE are
  transparent, every other op is matched by opcode and the (paired) values it
  reads, so the pairing does not depend on tensor names or op order;
- each selected base op is replaced by its donor twin (the donor's weights,
  bias, options and activation types). Where a donor op reads a value whose
  base tensor has another type or scale a QUANTIZE (float -> int, or
  int8 <-> int16 requantize) or DEQUANTIZE op is inserted; where a base op
  outside the selection reads what a donor op wrote, a conversion back to the
  base tensor is inserted. TFLite Micro and mcu_mot's compiler run these.
- ops left without readers are removed, unused tensors and buffers dropped.
"""

from __future__ import annotations

import copy

import numpy as np

from mcu_mot.errors import MotError
from mcu_mot.optimize.selective import QDQ, _ints, opcode
from mcu_mot.safetext import clean_name

QUANTIZE, DEQUANTIZE = 114, 6
FLOAT32 = 0
_TYPE_NAMES = {0: "float32", 2: "int32", 4: "int64", 7: "int16", 9: "int8", 3: "uint8"}


def read_model(data: bytes):
    from tensorflow.lite.tools import flatbuffer_utils  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write_model(model_t) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_t))


# ------------------------------------------------------------------ helpers
def _is_const(model_t, tensor_index: int) -> bool:
    t = model_t.subgraphs[0].tensors[tensor_index]
    b = model_t.buffers[t.buffer] if 0 <= t.buffer < len(model_t.buffers) else None
    return b is not None and b.data is not None and len(b.data) > 0


def _signature(t) -> tuple:
    """What a reader of the tensor cares about: type and quantization."""
    q = t.quantization
    scale = tuple(np.asarray(q.scale, np.float32).tolist()) if q is not None and q.scale is not None else ()
    zp = tuple(np.asarray(q.zeroPoint, np.int64).tolist()) if q is not None and q.zeroPoint is not None else ()
    if int(t.type) == FLOAT32:
        return (FLOAT32,)
    return (int(t.type), scale, zp)


def _type_name(t) -> str:
    return _TYPE_NAMES.get(int(t.type), f"type{int(t.type)}")


class _Graph:
    """Producer/consumer index and QUANTIZE/DEQUANTIZE-transparent values of one model."""

    def __init__(self, model_t):
        self.m = model_t
        self.sg = model_t.subgraphs[0]
        self.ops = list(self.sg.operators)
        self.codes = [opcode(model_t, op) for op in self.ops]
        self.producer = {}
        for i, op in enumerate(self.ops):
            for t in _ints(op.outputs):
                self.producer[t] = i
        self.inputs = _ints(self.sg.inputs)
        self.value = {t: ("in", k) for k, t in enumerate(self.inputs)}

    def is_qdq(self, i: int) -> bool:
        return self.codes[i] in QDQ

    def value_of(self, t: int):
        """The value a tensor carries (QUANTIZE/DEQUANTIZE chains collapse), None if unknown yet."""
        if t in self.value:
            return self.value[t]
        p = self.producer.get(t)
        if p is not None and self.is_qdq(p):
            src = _ints(self.ops[p].inputs)[0]
            v = self.value_of(src)
            if v is not None:
                self.value[t] = v
            return v
        return None

    def input_keys(self, i: int) -> list:
        keys = []
        for t in _ints(self.ops[i].inputs):
            if t < 0:
                keys.append(None)
            elif _is_const(self.m, t):
                keys.append(("const", tuple(_ints(self.sg.tensors[t].shape))))
            else:
                keys.append(self.value_of(t))
        return keys


def _pair(base: _Graph, donor: _Graph) -> dict:
    """base op index -> donor op index, for every non-QUANTIZE/DEQUANTIZE op that has a twin."""
    pairs, taken = {}, set()
    for bi in range(len(base.ops)):
        if base.is_qdq(bi):
            continue
        want = base.input_keys(bi)
        if any(k is None for k, t in zip(want, _ints(base.ops[bi].inputs)) if t >= 0):
            continue  # reads something that has no twin: cannot pair
        bname = base.sg.tensors[_ints(base.ops[bi].outputs)[0]].name
        best = None
        for di in range(len(donor.ops)):
            if di in taken or donor.is_qdq(di) or donor.codes[di] != base.codes[bi]:
                continue
            if len(_ints(donor.ops[di].outputs)) != len(_ints(base.ops[bi].outputs)):
                continue
            if donor.input_keys(di) != want:
                continue
            if best is None or donor.sg.tensors[_ints(donor.ops[di].outputs)[0]].name == bname:
                best = di
                if donor.sg.tensors[_ints(donor.ops[di].outputs)[0]].name == bname:
                    break
        if best is None:
            continue
        pairs[bi] = best
        taken.add(best)
        for k, (bt, dt) in enumerate(zip(_ints(base.ops[bi].outputs), _ints(donor.ops[best].outputs))):
            base.value[bt] = donor.value[dt] = ("op", bi, k)
    return pairs


# ------------------------------------------------------------------ splice
class _Builder:
    def __init__(self, base_t, donor_t):
        self.m, self.d = base_t, donor_t
        self.sg = base_t.subgraphs[0]
        self.dsg = donor_t.subgraphs[0]
        self.inserted: set = set()  # id() of the conversion ops added here

    def add_tensor(self, template, name: bytes, buffer: int = 0) -> int:
        t = copy.deepcopy(template)
        t.name = name
        t.buffer = buffer
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def empty_buffer(self) -> int:
        from tensorflow.lite.python import schema_py_generated as fb  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

        self.m.buffers.append(fb.BufferT())
        return len(self.m.buffers) - 1

    def copy_const(self, dt: int) -> int:
        t = self.dsg.tensors[dt]
        self.m.buffers.append(copy.deepcopy(self.d.buffers[t.buffer]))
        return self.add_tensor(t, t.name, len(self.m.buffers) - 1)

    def opcode_index(self, code_t) -> int:
        key = (max(int(code_t.builtinCode), int(code_t.deprecatedBuiltinCode)), code_t.customCode, int(code_t.version))
        for i, c in enumerate(self.m.operatorCodes):
            if (max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), c.customCode, int(c.version)) == key:
                return i
        self.m.operatorCodes.append(copy.deepcopy(code_t))
        return len(self.m.operatorCodes) - 1

    def builtin_index(self, builtin: int) -> int:
        for i, c in enumerate(self.m.operatorCodes):
            if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == builtin and c.customCode is None:
                return i
        from tensorflow.lite.python import schema_py_generated as fb  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

        c = fb.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
        self.m.operatorCodes.append(c)
        return len(self.m.operatorCodes) - 1

    def conversion(self, src: int, dst: int):
        """A QUANTIZE or DEQUANTIZE op src -> dst."""
        from tensorflow.lite.python import schema_py_generated as fb  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

        d = self.sg.tensors[dst]
        op = fb.OperatorT()
        if int(d.type) == FLOAT32:
            op.opcodeIndex = self.builtin_index(DEQUANTIZE)
            op.builtinOptionsType = fb.BuiltinOptions.DequantizeOptions
            op.builtinOptions = fb.DequantizeOptionsT()
        else:
            op.opcodeIndex = self.builtin_index(QUANTIZE)
            op.builtinOptionsType = fb.BuiltinOptions.QuantizeOptions
            op.builtinOptions = fb.QuantizeOptionsT()
        op.inputs = np.array([src], np.int32)
        op.outputs = np.array([dst], np.int32)
        self.inserted.add(id(op))
        return op


def splice(base: bytes, donor: bytes, selected: set, what: str = "donor"):
    """Replace the base ops in `selected` (indices into base's subgraph 0) by their donor twins.

    Returns the spliced model as a ModelT (pack it with write_model)."""
    base_t, donor_t = read_model(base), read_model(donor)
    for m in (base_t, donor_t):
        if len(m.subgraphs) != 1:
            raise MotError(f"cannot splice models with {len(m.subgraphs)} subgraphs")
    bg, dg = _Graph(base_t), _Graph(donor_t)
    pairs = _pair(bg, dg)
    selected = {i for i in selected if not bg.is_qdq(i)}
    for i in sorted(selected):
        if i not in pairs:
            t = bg.sg.tensors[_ints(bg.ops[i].outputs)[0]]
            raise MotError(
                f"cannot convert op {i} ({_opname(bg.codes[i])}, '{clean_name(t.name, '?')}') to "
                f"{what}: it has no counterpart in the {what} conversion"
            )
    # every base tensor's value (QUANTIZE/DEQUANTIZE chains included) and where it is produced
    for t in range(len(bg.sg.tensors)):
        bg.value_of(t)
    holders: dict = {}
    for t, v in bg.value.items():
        holders.setdefault(v, []).append(t)

    b = _Builder(base_t, donor_t)
    region_out: dict = {}  # value -> tensor written by a spliced op
    converted: dict = {}  # (tensor, signature) -> converted tensor
    graph_outputs = set(_ints(bg.sg.outputs))
    new_ops = []

    def readers_outside(t: int) -> bool:
        return t in graph_outputs or any(t in _ints(op.inputs) for j, op in enumerate(bg.ops) if j not in selected)

    def source_for(value, want, position: int) -> int:
        """A base tensor holding `value` in the donor tensor `want`'s type, converting if needed."""
        if value in region_out:
            cands = [region_out[value]]
        else:
            cands = [
                t
                for t in holders.get(value, [])
                if t in bg.inputs or (bg.producer.get(t, 1 << 30) < position and bg.producer[t] not in selected)
            ]
            cands += [t for t in converted.values() if bg.value.get(t) == value]
        if not cands:
            raise MotError(f"cannot splice: no tensor holds the input of op {position}")
        sig = _signature(want)
        for t in cands:
            if _signature(b.sg.tensors[t]) == sig:
                return t
        src = next((t for t in cands if int(b.sg.tensors[t].type) == FLOAT32), cands[0])
        key = (src, sig)
        if key not in converted:
            name = b.sg.tensors[src].name + f"_{_type_name(want)}".encode()
            new = b.add_tensor(want, name, b.empty_buffer())
            new_ops.append(b.conversion(src, new))
            bg.value[new] = value
            converted[key] = new
        return converted[key]

    for i, op in enumerate(bg.ops):
        if i not in selected:
            new_ops.append(op)
            continue
        dop = dg.ops[pairs[i]]
        ins = []
        for dt in _ints(dop.inputs):
            if dt < 0:
                ins.append(-1)
            elif _is_const(donor_t, dt):
                ins.append(b.copy_const(dt))
            else:
                ins.append(source_for(dg.value_of(dt), dg.sg.tensors[dt], i))
        outs, back = [], []
        for k, (bt, dt) in enumerate(zip(_ints(op.outputs), _ints(dop.outputs))):
            want = dg.sg.tensors[dt]
            if _signature(want) == _signature(bg.sg.tensors[bt]):
                nt = bt  # same type and scale: write the base tensor itself
            else:
                nt = b.add_tensor(want, bg.sg.tensors[bt].name + f"_{_type_name(want)}".encode(), b.empty_buffer())
                bg.value[nt] = ("op", i, k)
                if readers_outside(bt):
                    back.append((nt, bt))
            region_out[("op", i, k)] = nt
            outs.append(nt)
        new = copy.deepcopy(dop)
        new.opcodeIndex = b.opcode_index(donor_t.operatorCodes[dop.opcodeIndex])
        new.inputs = np.array(ins, np.int32)
        new.outputs = np.array(outs, np.int32)
        new.intermediates = None
        new_ops.append(new)
        new_ops.extend(b.conversion(nt, bt) for nt, bt in back)

    b.sg.operators = new_ops
    _shortcut_dequantize(base_t, b.inserted)
    _remove_dead(base_t)
    _compact(base_t)
    return base_t


def _opname(code: int) -> str:
    from tensorflow.lite.python import schema_py_generated as fb  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    for k, v in vars(fb.BuiltinOperator).items():
        if v == code and not k.startswith("_"):
            return k
    return str(code)


def _shortcut_dequantize(model_t, inserted: set) -> None:
    """DEQUANTIZE(QUANTIZE(x)) where the QUANTIZE was inserted here: dequantize x itself
    (int16 -> float directly), or read x when it is float already."""
    sg = model_t.subgraphs[0]
    producer = {t: op for op in sg.operators for t in _ints(op.outputs)}
    outputs = _ints(sg.outputs)
    for op in sg.operators:
        if opcode(model_t, op) != DEQUANTIZE:
            continue
        t = _ints(op.inputs)[0]
        p = producer.get(t)
        if p is None or opcode(model_t, p) != QUANTIZE or id(p) not in inserted:
            continue
        src = _ints(p.inputs)[0]
        if int(sg.tensors[src].type) != FLOAT32:
            op.inputs = np.array([src], np.int32)  # int16 -> float directly
        else:  # float -> int -> float: use the float
            dst = _ints(op.outputs)[0]
            for other in sg.operators:
                other.inputs = np.array([src if x == dst else x for x in _ints(other.inputs)], np.int32)
            sg.outputs = np.array([src if x == dst else x for x in outputs], np.int32)
            for sig in model_t.signatureDefs or []:
                for tm in sig.outputs or []:
                    if int(tm.tensorIndex) == dst:
                        tm.tensorIndex = src
            if src in _ints(sg.outputs):
                sg.tensors[src].name = sg.tensors[dst].name  # keep the output's name


def _remove_dead(model_t) -> None:
    sg = model_t.subgraphs[0]
    while True:
        read = set(_ints(sg.outputs))
        for op in sg.operators:
            read |= {t for t in _ints(op.inputs) if t >= 0}
        keep = [op for op in sg.operators if any(t in read for t in _ints(op.outputs))]
        if len(keep) == len(sg.operators):
            return
        sg.operators = keep


def _compact(model_t) -> None:
    """Drop tensors, buffers and operator codes nothing refers to; renumber the references."""
    sg = model_t.subgraphs[0]
    used = set(_ints(sg.inputs)) | set(_ints(sg.outputs))
    for op in sg.operators:
        used |= {t for t in _ints(op.inputs) if t >= 0} | set(_ints(op.outputs))
        used |= set(_ints(op.intermediates))
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    sg.tensors = [sg.tensors[i] for i in order]

    def re(v):
        return np.array([remap[x] if x >= 0 else -1 for x in _ints(v)], np.int32)

    for op in sg.operators:
        op.inputs, op.outputs = re(op.inputs), re(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = re(op.intermediates)
    sg.inputs, sg.outputs = re(sg.inputs), re(sg.outputs)
    for sig in model_t.signatureDefs or []:
        for tm in (sig.inputs or []) + (sig.outputs or []):
            tm.tensorIndex = remap.get(int(tm.tensorIndex), int(tm.tensorIndex))
    # buffers: 0 stays the empty sentinel; metadata buffers are kept
    ubuf = {0} | {int(t.buffer) for t in sg.tensors} | {int(md.buffer) for md in model_t.metadata or []}
    border = sorted(ubuf)
    bmap = {old: new for new, old in enumerate(border)}
    model_t.buffers = [model_t.buffers[i] for i in border]
    for t in sg.tensors:
        t.buffer = bmap[int(t.buffer)]
    for md in model_t.metadata or []:
        md.buffer = bmap[int(md.buffer)]
    # operator codes
    ucode = sorted({int(op.opcodeIndex) for op in sg.operators})
    cmap = {old: new for new, old in enumerate(ucode)}
    model_t.operatorCodes = [model_t.operatorCodes[i] for i in ucode]
    for op in sg.operators:
        op.opcodeIndex = cmap[int(op.opcodeIndex)]
