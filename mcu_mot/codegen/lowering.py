"""Op lowering: turn each Graph op into one kernel call with compile-time constants.

A lowering function is registered per TFLite op name with `@lowers("CONV_2D")`.
It receives the op and a LoweringContext, and returns a `Call` (or an `Alias`
for ops that are pure views such as RESHAPE). Arguments of a Call are C
expressions (str), Tensors (resolved to arena or weight pointers once the
memory plan exists) or SCRATCH (the op's planned scratch buffer).

The scratch contract (docs/kernels.md): a kernel that takes SCRATCH has its size
registered with `@scratch_size(kernel, shape)`, the Python twin of the C
`<kernel>_get_buffer_size_isa(isa, shape...)`; the lowering gives the Call only the
shape (`scratch_shape`) and lower_op computes scratch_bytes from the registered function,
so no kernel gets scratch without a size function (tests/test_kernel_contract.py
checks the two against each other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from mcu_mot.errors import MotError
from mcu_mot.ir.graph import C_TYPES, Op, Tensor
from mcu_mot.safetext import c_ident, one_line

SCRATCH = object()  # marker: the op's scratch buffer in the arena

_LOWERINGS: dict[str, Callable] = {}
ISA_LEVELS = ("plain", "dsp", "mve")  # index = MM_ISA_* in firmware/kernels/mm_isa.h


@dataclass(frozen=True)
class ScratchSize:
    fn: Callable  # fn(isa, **shape) -> bytes
    shape: tuple  # argument names, in the order of the C size function's
    isas: tuple  # levels the kernel exists at (the C _isa function returns -1 at the others)


_SCRATCH_SIZES: dict[str, ScratchSize] = {}


def scratch_size(kernel: str, shape: tuple, isas: tuple = ISA_LEVELS):
    """Register fn(isa, **shape) as the scratch bytes of `kernel` at ISA level isa: the
    number the C `<kernel>_get_buffer_size_isa(level, shape...)` returns."""

    def register(fn):
        _SCRATCH_SIZES[kernel] = ScratchSize(fn, tuple(shape), tuple(isas))
        return fn

    return register


def scratch_sizes() -> dict[str, ScratchSize]:
    """Every registered kernel's scratch contract (complete once mcu_mot.codegen.ops is imported)."""
    return dict(_SCRATCH_SIZES)


def registrar(table: dict):
    """A `@lowers("OP", ...)` decorator that records lowerings in `table` (one per backend)."""

    def lowers(*opcodes: str):
        def register(fn):
            for code in opcodes:
                table[code] = fn
            return fn

        return register

    return lowers


lowers = registrar(_LOWERINGS)


@dataclass
class Call:
    kernel: str  # C function name, mm_<op>_<type>
    args: list  # str | Tensor | SCRATCH
    header: str  # kernel header to include
    scratch_bytes: int = 0  # portable kernels: set by lower_op from scratch_shape
    macs: int = 0
    inplace: Optional[tuple] = None  # (input position, output position) that may share bytes
    # Raster-order kernels (conv/depthwise/pool): how many output pixels the kernel computes
    # together (reading all their inputs before writing any); 0 = not raster order, so its
    # output must not overlap its input (see codegen/inplace.py).
    raster_block: int = 1
    reads: list = field(default_factory=list)  # activation tensors read (filled by lower_op)
    writes: list = field(default_factory=list)  # activation tensors written
    scratch_shape: Optional[dict] = None  # the arguments of the kernel's scratch size function


@dataclass
class Alias:
    """The output is a view of the input: same bytes, no code (RESHAPE, SQUEEZE)."""

    source: Tensor
    view: Tensor


class LoweringContext:
    """Collects the constant arrays and parameter structs the calls refer to."""

    @property
    def dsp(self) -> bool:
        """ARMv7E-M DSP instructions are there (M4/M7/M33, and M55 besides MVE)."""
        return self.isa in ("dsp", "mve")

    @property
    def mve(self) -> bool:
        return self.isa == "mve"

    def __init__(self, backend: str = "portable", isa: str = "plain"):
        self.backend = backend
        self.isa = isa  # "plain" | "dsp" | "mve": kernel paths and layouts to target
        self.arrays: list[dict] = []  # {name, ctype, values, align}
        self.structs: list[dict] = []  # {name, ctype, fields}
        self._names: set[str] = set()
        self._array_cache: dict = {}

    def _unique(self, hint: str) -> str:
        """A new C identifier part from `hint` (often a tensor name from the model file):
        letters, digits and underscores only, at most 40 of the hint's, made unique."""
        base = c_ident(hint, 40)
        if base[0].isdigit():
            base = "c_" + base
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        return name

    def array(self, hint: str, values, dtype: Optional[str] = None) -> str:
        """Emit a const array (placed in flash) and return its C name."""
        values = np.ascontiguousarray(values)
        dtype = dtype or str(values.dtype)
        key = (dtype, values.shape, values.tobytes())
        if key in self._array_cache:
            return self._array_cache[key]
        name = "mmw_" + self._unique(hint)
        self.arrays.append(
            {"name": name, "ctype": C_TYPES[dtype], "dtype": dtype, "values": values.astype(dtype).ravel()}
        )
        self._array_cache[key] = name
        return name

    def struct(self, hint: str, ctype: str, fields: dict) -> str:
        """Emit `static const ctype name = {.field = value, ...}` and return `&name`."""
        name = "mmp_" + self._unique(hint)
        self.structs.append({"name": name, "ctype": ctype, "fields": {k: _c_value(v) for k, v in fields.items()}})
        return "&" + name

    def prune(self, steps) -> None:
        """Drop the arrays no parameter struct and no call refers to (a lowering may
        prepare an array and then pick a kernel that does not need it)."""
        text = " ".join(str(v) for st in self.structs for v in st["fields"].values())
        text += " " + " ".join(str(a) for low in steps if isinstance(low, Call) for a in low.args if isinstance(a, str))
        used = set(re.findall(r"mmw_[A-Za-z0-9_]+", text))
        self.arrays = [a for a in self.arrays if a["name"] in used]

    def weights(self, tensor: Tensor, hint: Optional[str] = None) -> str:
        """A constant tensor's data as a const array name."""
        if tensor is None:
            return "NULL"
        return self.array(hint or tensor.name, tensor.data, tensor.dtype)


# A struct field given as text is a C expression the lowerings built (array names, casts,
# NULL, arena offsets): never a name from the model file.
_C_EXPR = re.compile(r"[A-Za-z0-9_ ()*&+\-.,{}=\[\]]*")


def _c_value(v) -> str:
    if isinstance(v, str):
        if not _C_EXPR.fullmatch(v):
            raise MotError(f"internal error: parameter value {one_line(v, 60)!r} is not a C expression")
        return v
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        v = int(v)
        if v == -(1 << 31):
            return "INT32_MIN"
        if v == -(1 << 63):
            return "INT64_MIN"
        return str(v) + ("LL" if abs(v) >= (1 << 31) else "")
    if isinstance(v, (float, np.floating)):
        return c_float(v)
    raise TypeError(f"cannot emit {v!r} as C")


def c_float(v) -> str:
    v = float(np.float32(v))
    if np.isnan(v):  # a model's parameters may hold NaN: a constant, never the call nanf
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return repr(v) + "f"


def unsupported(op: Op, why: str = "") -> MotError:
    out = op.outputs[0] if op.outputs else None
    dtype = out.dtype if out is not None else "?"
    detail = f": {why}" if why else ""
    where = f"output tensor '{one_line(op.name, 120)}'"
    if op.name.startswith(("StatefulPartitionedCall", "Identity", "serving_default")):
        src = next((t for t in op.inputs if t is not None and not t.is_const), None)
        if src is not None:  # graph outputs lose the layer name: say what it reads
            where += f" (reading '{one_line(src.name, 120)}')"
    # names come from the model file: the message stays one line whatever they hold
    return MotError(
        one_line(f"unsupported op {one_line(op.opcode, 80)} ({dtype}) at index {op.index}, {where}{detail}", 1000)
    )


def lower_op(op: Op, ctx: LoweringContext):
    fn = _LOWERINGS.get(op.opcode)
    if fn is None:
        raise unsupported(op)
    result = fn(op, ctx)
    if isinstance(result, Call):
        result.reads = [t for t in op.inputs if t is not None and not t.is_const]
        result.writes = list(op.outputs)
        _plan_scratch(result, ctx.isa)
    return result


def _plan_scratch(call: Call, isa: str) -> None:
    """scratch_bytes of a portable kernel from its registered size function (the contract)."""
    takes = any(a is SCRATCH for a in call.args)
    if not takes and call.scratch_shape is None and not call.scratch_bytes:
        return
    size = _SCRATCH_SIZES.get(call.kernel)
    shape = call.scratch_shape or {}
    if not takes or size is None or set(shape) != set(size.shape) or isa not in size.isas or call.scratch_bytes:
        raise MotError(
            f"internal error: kernel {call.kernel} takes scratch outside the scratch contract "
            f"(register its size with @scratch_size, pass scratch_shape)"
        )
    call.scratch_bytes = int(size.fn(isa, **shape))
