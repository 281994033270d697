"""The kernels' scratch contract (docs/kernels.md, "Scratch contract").

Every portable kernel that takes scratch declares, in its header, the C size functions
<kernel>_get_buffer_size(shape...) (the level the file is compiled for) and
<kernel>_get_buffer_size_isa(isa, shape...) (any level), and has a Python twin registered with
@scratch_size, from which lower_op plans the Call's scratch. Checked here:
  - the headers' scratch kernels, the C size functions and the registry name the same kernels
    with the same arguments, and a lowering cannot hand out scratch outside the registry;
  - the C functions, built into a host library per ISA level (plain; dsp with the instructions
    emulated; Helium kernels cannot be built on x86, so the mve sizes come from the explicit-level
    functions of both libraries) agree with the Python ones on 200+ random shapes per kernel and level;
  - lowering 200 random ops per op family and level (tails, 1x1, strides, padding, dilation, depth
    multipliers) gives every scratch call exactly the C size of the op's own shape.
"""

from __future__ import annotations

import ctypes
import re
import subprocess

import numpy as np
import pytest

import mcu_mot.codegen.ops  # noqa: F401  (registers the lowerings and their scratch sizes)
from mcu_mot.codegen import lowering
from mcu_mot.codegen.lowering import ISA_LEVELS, SCRATCH, Call, LoweringContext, lower_op, scratch_sizes
from mcu_mot.device.simulator import host_compiler
from mcu_mot.errors import MotError
from mcu_mot.fwbuild.sanitize import host_cflags
from mcu_mot.ir.graph import Op, Quant, Tensor
from mcu_mot.resources import KERNELS

N_SHAPES = 200
HOST_LEVELS = ("plain", "dsp")  # the levels a host library can be built at


# ------------------------------------------------------------- the C side, parsed
def _headers() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(KERNELS.glob("mm_*.h"))}


def _scratch_kernels() -> dict[str, str]:
    """kernel -> header, for every kernel function a header declares with a scratch parameter."""
    found = {}
    for name, text in _headers().items():
        for fn, params in re.findall(r"\bvoid\s+(mm_\w+)\s*\(([^;{)]*)\)\s*;", text):
            if re.search(r"\bvoid\s*\*\s*scratch\b", params):
                found[fn] = name
    return found


def _size_declarations() -> dict[str, tuple[tuple, tuple, str]]:
    """kernel -> (arguments of _get_buffer_size, arguments of _get_buffer_size_isa after isa, header)."""
    decl = {}
    for name, text in _headers().items():
        for fn, suffix, params in re.findall(r"\bint32_t\s+(mm_\w+?)_get_buffer_size(_isa)?\s*\(([^;{)]*)\)\s*;", text):
            args = tuple(re.fullmatch(r"\s*int32_t\s+(\w+)\s*", a).group(1) for a in params.split(","))
            plain, isa, _ = decl.get(fn, (None, None, name))
            if suffix:
                assert args[0] == "isa", f"{fn}_get_buffer_size_isa: the level comes first"
                isa = args[1:]
            else:
                plain = args
            decl[fn] = (plain, isa, name)
    return decl


def test_every_scratch_kernel_has_both_size_functions_and_a_registered_twin():
    kernels = _scratch_kernels()
    decl = _size_declarations()
    reg = scratch_sizes()
    assert len(kernels) >= 12, kernels
    assert set(kernels) == set(reg), "C kernels with scratch vs @scratch_size registry"
    for k, header in kernels.items():
        assert k in decl, f"{header}: {k} takes scratch but declares no {k}_get_buffer_size"
        plain, isa, where = decl[k]
        assert where == header, f"{k}'s size functions belong next to it, in {header}"
        assert plain is not None and isa is not None, f"{k}: both _get_buffer_size and _get_buffer_size_isa"
        assert plain == isa == reg[k].shape, (k, plain, isa, reg[k].shape)
        assert set(reg[k].isas) <= set(ISA_LEVELS) and reg[k].isas
    assert set(decl) <= set(kernels), "a size function without its kernel"


def test_lower_op_refuses_scratch_outside_the_contract(monkeypatch):
    t = Tensor(0, "x", (1, 4), "int8")
    op = Op(0, "MM_TEST_OP", [t], [Tensor(1, "y", (1, 4), "int8")])
    for call in (
        Call("mm_unregistered_s8", ["&p", t, SCRATCH], "mm_x.h", scratch_bytes=16),
        Call("mm_unregistered_s8", ["&p", t, SCRATCH], "mm_x.h", scratch_shape=dict(n=4)),
        Call("mm_depthwise_conv_s8", ["&p", t, SCRATCH], "mm_x.h"),  # no shape
        Call(
            "mm_depthwise_conv_s8", ["&p", t, SCRATCH], "mm_x.h", scratch_shape=dict(out_c=4), scratch_bytes=16
        ),  # bytes by hand
        Call("mm_depthwise_conv_s8", ["&p", t], "mm_x.h", scratch_shape=dict(out_c=4)),  # no SCRATCH
        Call("mm_depthwise_conv_3x3_s8", ["&p", t, SCRATCH], "mm_x.h", scratch_shape=dict(in_c=4)),
    ):
        monkeypatch.setitem(lowering._LOWERINGS, "MM_TEST_OP", lambda op, ctx, c=call: c)
        with pytest.raises(MotError, match="outside the scratch contract"):
            lower_op(op, LoweringContext("portable", "plain"))  # 3x3: no such kernel at plain
    ok = Call("mm_depthwise_conv_s8", ["&p", t, SCRATCH], "mm_x.h", scratch_shape=dict(out_c=5))
    monkeypatch.setitem(lowering._LOWERINGS, "MM_TEST_OP", lambda op, ctx: ok)
    assert lower_op(op, LoweringContext("portable", "plain")).scratch_bytes == 20


# ------------------------------------------------------------- host libraries
@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """level -> the size functions of every scratch kernel that exists at that level, in a host
    shared library built at that level (dsp: MM_EMULATE_DSP, as the host simulator runs it)."""
    reg, kernels = scratch_sizes(), _scratch_kernels()
    d = tmp_path_factory.mktemp("contract")
    out = {}
    for level in HOST_LEVELS:
        sources = sorted({KERNELS / kernels[k].replace(".h", ".c") for k in reg if level in reg[k].isas})
        so = d / f"sizes_{level}.so"
        flags = host_cflags(["-O1", "-std=gnu99", "-Wall", "-Werror", "-fPIC", "-shared", "-fwrapv"], shared=True)
        cmd = [
            host_compiler(),
            *flags,
            *(["-DMM_EMULATE_DSP=1"] if level == "dsp" else []),
            f"-I{KERNELS}",
            *map(str, sources),
            "-lm",
            "-o",
            str(so),
        ]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        lib = ctypes.CDLL(str(so))
        fns = {}
        for k in reg:
            if level not in reg[k].isas:
                continue
            n = len(reg[k].shape)
            plain, isa = getattr(lib, f"{k}_get_buffer_size"), getattr(lib, f"{k}_get_buffer_size_isa")
            plain.argtypes, plain.restype = [ctypes.c_int32] * n, ctypes.c_int32
            isa.argtypes, isa.restype = [ctypes.c_int32] * (n + 1), ctypes.c_int32
            fns[k] = (plain, isa)
        out[level] = (lib, fns)
    return out


def _dim(rng, name: str) -> int:
    """A random value for a size-function argument, over the kernel's valid range with tails."""
    if name in ("in_c", "out_c"):
        pick = rng.integers(0, 4)
        if pick == 0:
            return int(rng.integers(1, 18))  # every tail of 4, 8, 16
        if pick == 1:
            return max(1, int(16 * rng.integers(1, 40) + rng.integers(-1, 2)))  # around multiples of 16
        return int(rng.integers(1, 1025))
    if name in ("k_h", "k_w"):
        return 1 if rng.random() < 0.3 else int(rng.integers(1, 12))  # 1x1 often
    if name in ("in_h", "in_w"):
        return 1 if rng.random() < 0.1 else int(rng.integers(1, 129))
    if name == "in_depth":
        return int(rng.integers(1, 8193))
    raise AssertionError(f"no random range for size argument '{name}': add one")


def _shapes(kernel: str, shape: tuple, n: int) -> list[dict]:
    rng = np.random.default_rng(sum(map(ord, kernel)))
    edge = [dict.fromkeys(shape, v) for v in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33)]
    return edge + [{a: _dim(rng, a) for a in shape} for _ in range(n)]


@pytest.mark.parametrize("level", HOST_LEVELS)
def test_c_sizes_match_python_at_every_level(libs, level):
    _, fns = libs[level]
    reg = scratch_sizes()
    checked = {}
    for k, size in sorted(reg.items()):
        if level not in size.isas:
            continue
        plain, isa_fn = fns[k]
        for shape in _shapes(k, size.shape, N_SHAPES):
            args = [shape[a] for a in size.shape]
            # the target-level function is the explicit one at the library's level
            assert plain(*args) == isa_fn(ISA_LEVELS.index(level), *args), (k, level, shape)
            for isa in ISA_LEVELS:
                c = isa_fn(ISA_LEVELS.index(isa), *args)
                if isa in size.isas:
                    assert c == size.fn(isa, **shape) > 0, (k, isa, shape, c)
                    checked[k, isa] = checked.get((k, isa), 0) + 1
                else:
                    assert c == -1, f"{k} does not exist at {isa}: its size function says -1, not {c}"
    assert all(v >= N_SHAPES for v in checked.values())
    assert {isa for _, isa in checked} == set(ISA_LEVELS)  # mve too, through the explicit level


# ------------------------------------------------------------- the lowerings themselves
def _quant(scale, zp=0, axis=0) -> Quant:
    return Quant(np.asarray(scale, np.float64).reshape(-1), np.asarray(zp, np.int64).reshape(-1), axis)


class _Ops:
    """Random ops of the families whose kernels take scratch (and their no-scratch siblings)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.n = 0

    def t(self, shape, dtype, quant=None, data=None) -> Tensor:
        self.n += 1
        return Tensor(self.n, f"t{self.n}", tuple(int(s) for s in shape), dtype, quant, data)

    def channels(self, hi=24) -> int:
        return int(self.rng.integers(1, 18)) if self.rng.random() < 0.6 else int(self.rng.integers(1, hi + 1))

    def window(self, k3=False):
        """(in_h, in_w, k_h, k_w, options, out_h, out_w): SAME or VALID, strides, dilations."""
        r = self.rng
        k_h, k_w = (1, 1) if r.random() < 0.2 else (int(r.integers(1, 6)), int(r.integers(1, 6)))
        if k3 or r.random() < 0.3:
            k_h = k_w = 3
        s_h, s_w = int(r.integers(1, 4)), int(r.integers(1, 4))
        d_h, d_w = (1, 1) if r.random() < 0.6 else (int(r.integers(1, 4)), int(r.integers(1, 4)))
        in_h, in_w = int(r.integers(1, 13)), int(r.integers(1, 13))
        e_h, e_w = (k_h - 1) * d_h + 1, (k_w - 1) * d_w + 1
        valid = r.random() < 0.4 and in_h >= e_h and in_w >= e_w
        if valid:
            out_h, out_w = -(-(in_h - e_h + 1) // s_h), -(-(in_w - e_w + 1) // s_w)
        else:
            out_h, out_w = -(-in_h // s_h), -(-in_w // s_w)
        opts = dict(
            padding=1 if valid else 0,
            stride_h=s_h,
            stride_w=s_w,
            dilation_h_factor=d_h,
            dilation_w_factor=d_w,
            fused_activation_function=int(r.integers(0, 4)),
        )
        return in_h, in_w, k_h, k_w, opts, out_h, out_w

    def act(self, shape, dtype) -> Tensor:
        r = self.rng
        if dtype == "float32":
            return self.t(shape, dtype)
        zp = int(r.integers(-128, 128)) if dtype == "int8" else 0
        return self.t(shape, dtype, _quant(float(10.0 ** r.uniform(-3, 0)), zp))

    def weights(self, shape, axis, dtype="int8") -> Tensor:
        r = self.rng
        if dtype == "float32":
            return self.t(shape, dtype, data=r.standard_normal(shape).astype(np.float32))
        scales = 10.0 ** r.uniform(-3, -1, shape[axis] if r.random() < 0.7 else 1)
        return self.t(
            shape, "int8", _quant(scales, np.zeros(scales.size), axis), r.integers(-127, 128, shape).astype(np.int8)
        )

    def bias(self, n, act_dtype, int64=False) -> Tensor | None:
        r = self.rng
        if r.random() < 0.2:
            return None
        if act_dtype == "float32":
            return self.t((n,), "float32", data=r.standard_normal(n).astype(np.float32))
        dtype = "int32" if act_dtype == "int8" else "int64" if int64 or r.random() < 0.5 else "int32"
        return self.t((n,), dtype, _quant(np.ones(n)), r.integers(-5000, 5000, n).astype(dtype))

    def out(self, shape, dtype, rescale=None) -> Tensor:
        """rescale (s_in * s_w): an output scale that makes the requantization factor fall below
        1/2 or above it as often (the fast and the exact 3x3 kernels); else any scale."""
        r = self.rng
        if dtype == "float32":
            return self.t(shape, dtype)
        zp = int(r.integers(-128, 128)) if dtype == "int8" else 0
        if rescale is None:
            return self.t(shape, dtype, _quant(float(10.0 ** r.uniform(-7, -1)), zp))
        real = 10.0 ** r.uniform(-4, -0.5) if r.random() < 0.5 else 10.0 ** r.uniform(-0.2, 2)
        return self.t(shape, dtype, _quant(rescale / real, zp))

    def conv(self, dtype, hybrid=False) -> Op:
        in_h, in_w, k_h, k_w, opts, out_h, out_w = self.window()
        in_c, out_c = self.channels(40), self.channels()
        act = "float32" if hybrid else dtype
        w = self.weights((out_c, k_h, k_w, in_c), 0)
        ins = [self.act((1, in_h, in_w, in_c), act), w, self.bias(out_c, act)]
        return Op(0, "CONV_2D", ins, [self.out((1, out_h, out_w, out_c), act)], opts)

    def depthwise(self, dtype, hybrid=False, k3=False) -> Op:
        """k3: 3x3, depth multiplier 1 (the 3x3 kernels on DSP / Helium), one weight scale."""
        in_h, in_w, k_h, k_w, opts, out_h, out_w = self.window(k3)
        in_c = self.channels(40)
        dm = 1 if k3 or self.rng.random() < 0.6 else int(self.rng.integers(1, 4))
        act = "float32" if hybrid else dtype
        w = self.weights((1, k_h, k_w, in_c * dm), 3, "float32" if dtype == "float32" else "int8")
        if hybrid:  # TF Lite wants one scale per output channel
            w.quant = _quant(10.0 ** self.rng.uniform(-3, -1, in_c * dm), np.zeros(in_c * dm), 3)
        inp = self.act((1, in_h, in_w, in_c), act)
        rescale = None
        if k3:
            w.quant = _quant(w.quant.scale[:1], [0], 3)
            rescale = float(inp.quant.scale[0] * np.float32(w.quant.scale[0]))
        ins = [inp, w, self.bias(in_c * dm, act, int64=True)]
        return Op(
            0,
            "DEPTHWISE_CONV_2D",
            ins,
            [self.out((1, out_h, out_w, in_c * dm), act, rescale)],
            dict(opts, depth_multiplier=dm),
        )

    def fully_connected(self) -> Op:
        batches, in_depth, out_depth = int(self.rng.integers(1, 4)), self.channels(300), self.channels()
        ins = [
            self.act((batches, in_depth), "float32"),
            self.weights((out_depth, in_depth), 0),
            self.bias(out_depth, "float32"),
        ]
        return Op(
            0,
            "FULLY_CONNECTED",
            ins,
            [self.out((batches, out_depth), "float32")],
            dict(asymmetric_quantize_inputs=bool(self.rng.integers(0, 2))),
        )


FAMILIES = {  # the 3x3 ones first: the other depthwise ops then need not make up their share
    "depthwise3x3_s8": lambda g: g.depthwise("int8", k3=True),
    "depthwise3x3_s16": lambda g: g.depthwise("int16", k3=True),
    "conv_s8": lambda g: g.conv("int8"),
    "conv_s16": lambda g: g.conv("int16"),
    "depthwise_s8": lambda g: g.depthwise("int8"),
    "depthwise_s16": lambda g: g.depthwise("int16"),
    "depthwise_f32": lambda g: g.depthwise("float32"),
    "hybrid_fc": lambda g: g.fully_connected(),
    "hybrid_conv": lambda g: g.conv("int8", hybrid=True),
    "hybrid_depthwise": lambda g: g.depthwise("int8", hybrid=True),
}


def _op_shape(kernel: str, op: Op) -> dict:
    """The size-function arguments of `kernel`, read off the op's own tensors (not the lowering's)."""
    inp, w = op.inputs[0], op.inputs[1]
    if kernel.startswith("mm_conv_gemm_"):
        return dict(in_c=inp.shape[3], k_h=w.shape[1], k_w=w.shape[2])
    if kernel.startswith("mm_depthwise_conv_3x3_"):
        return dict(in_c=inp.shape[3])
    if kernel in ("mm_conv_hybrid", "mm_depthwise_conv_hybrid"):
        return dict(in_h=inp.shape[1], in_w=inp.shape[2], in_c=inp.shape[3])
    if kernel == "mm_fully_connected_hybrid":
        return dict(in_depth=w.shape[1])
    if kernel.startswith("mm_depthwise_conv_"):
        return dict(out_c=w.shape[3])
    raise AssertionError(f"{kernel} takes scratch: say here which of the op's dimensions its size needs")


def test_lowered_scratch_is_the_c_size_of_the_op(libs):
    reg = scratch_sizes()
    isa_fns = {k: fns[k][1] for _, fns in libs.values() for k in fns}  # the explicit-level functions
    seen = {}
    for li, level in enumerate(ISA_LEVELS):
        counts = {}  # kernel -> ops lowered to it at this level
        for fi, (family, make) in enumerate(FAMILIES.items()):
            gen, mine, n = _Ops(1000 * li + fi), set(), 0
            # N_SHAPES ops, more while a kernel this family reaches has had fewer (at most 5 N_SHAPES)
            while n < N_SHAPES or min(counts[k] for k in mine) < N_SHAPES and n < 5 * N_SHAPES:
                op, n = make(gen), n + 1
                try:
                    call = lower_op(op, LoweringContext("portable", level))
                except MotError as e:  # a random op the compiler rejects (none expected)
                    raise AssertionError(f"{family} at {level}: {e}") from None
                assert isinstance(call, Call)
                mine.add(call.kernel)
                counts[call.kernel] = counts.get(call.kernel, 0) + 1
                if not any(a is SCRATCH for a in call.args):
                    assert call.scratch_bytes == 0 and call.kernel not in reg, (family, level, call.kernel)
                    continue
                shape = _op_shape(call.kernel, op)
                assert call.scratch_shape == shape, (call.kernel, level, call.scratch_shape, shape)
                c = isa_fns[call.kernel](li, *[shape[a] for a in reg[call.kernel].shape])
                assert call.scratch_bytes == c > 0, (call.kernel, level, shape, call.scratch_bytes, c)
                seen[call.kernel, level] = seen.get((call.kernel, level), 0) + 1
    want = {(k, level) for k in reg for level in reg[k].isas}
    assert set(seen) == want, f"kernels and levels no random op reached: {sorted(want - set(seen))}"
    few = {kl: n for kl, n in seen.items() if n < N_SHAPES}
    assert not few, f"too few random ops reached {few}"
