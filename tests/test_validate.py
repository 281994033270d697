"""Every value read from a model is validated (mcu_mot/ir/validate.py, issue 23): a malformed
model ends in one MotError line naming the tensor or op, never in an internal error. Field
patches are made in place in the flatbuffer (the reader's own accessors locate each field), and
a seeded fuzzer mutates fields and bytes of valid models many times."""

from __future__ import annotations

import struct
import traceback

import numpy as np
import pytest
import tflite

from mcu_mot.codegen.compile import generate
from mcu_mot.errors import MotError

# ---------------------------------------------------------------- in-place flatbuffer patches


class Patch:
    """A model's bytes plus accessors that rewrite single fields in place."""

    def __init__(self, data: bytes):
        self.buf = bytearray(data)
        self.model = tflite.Model.GetRootAsModel(self.buf, 0)
        self.sg = self.model.Subgraphs(0)

    def tensor(self, i):
        return self.sg.Tensors(i)

    def tensors(self):
        return [self.sg.Tensors(i) for i in range(self.sg.TensorsLength())]

    def find(self, pred):
        return next(i for i, t in enumerate(self.tensors()) if pred(t))

    @staticmethod
    def _scalar(table, slot: int, fmt: str, value) -> bool:
        """Overwrite the scalar field at vtable `slot` of `table` (False if it is absent, i.e. default)."""
        o = table._tab.Offset(slot)
        if not o:
            return False
        struct.pack_into("<" + fmt, table._tab.Bytes, table._tab.Pos + o, value)
        return True

    def set_buffer_index(self, i, value):
        return self._scalar(self.tensor(i), 8, "I", value)

    def set_quantized_dimension(self, i, value):
        return self._scalar(self.tensor(i).Quantization(), 16, "i", value)

    def set_type(self, i, value):
        return self._scalar(self.tensor(i), 6, "b", value)

    def set_opcode_index(self, j, value):
        return self._scalar(self.sg.Operators(j), 4, "I", value)

    def scales(self, i):
        return self.tensor(i).Quantization().ScaleAsNumpy()  # a writable view into buf

    def zero_points(self, i):
        return self.tensor(i).Quantization().ZeroPointAsNumpy()

    def shape(self, i):
        return self.tensor(i).ShapeAsNumpy()

    def op_inputs(self, j):
        return self.sg.Operators(j).InputsAsNumpy()

    def op_outputs(self, j):
        return self.sg.Operators(j).OutputsAsNumpy()

    def data(self, i):
        return self.model.Buffers(self.tensor(i).Buffer()).DataAsNumpy()

    def save(self, path):
        path.write_bytes(bytes(self.buf))
        return path


def quantized(t) -> bool:
    q = t.Quantization()
    return q is not None and q.ScaleLength() > 0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """int8 and int16x8 models covering conv, depthwise, FC, pooling, add, softmax and the
    SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE chain of Flatten."""
    import keras
    from harness import convert, keras_model, save

    L = keras.layers
    d = tmp_path_factory.mktemp("validate-models")

    def body(x):
        a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
        b = L.DepthwiseConv2D(3, padding="same")(a)
        y = L.Add()([a, b])
        y = L.MaxPooling2D(2)(y)
        return L.Softmax()(L.Dense(5)(L.Flatten()(y)))

    out = {}
    for mode in ("int8", "int16"):
        out[mode] = save(convert(keras_model(body, (8, 8, 2), seed=3), mode), d, f"v_{mode}")
    return out


def compile_(path, board="host"):
    return generate(path, "portable", board)


def one_line_error(path, match=None):
    with pytest.raises(MotError) as e:
        compile_(path)
    msg = str(e.value)
    assert "\n" not in msg and "internal error" not in msg, msg
    if match:
        import re

        assert re.search(match, msg), msg
    return msg


# ---------------------------------------------------------------- targeted values


def test_valid_models_compile(models):
    for path in models.values():
        assert compile_(path).report["layers"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 0.0, -0.5])
def test_bad_scale_is_one_line_naming_the_tensor(models, tmp_path, value):
    p = Patch(models["int8"].read_bytes())
    w = p.find(lambda t: quantized(t) and t.Quantization().ScaleLength() > 1)  # per-channel conv weights
    p.scales(w)[1] = value
    name = p.tensor(w).Name().decode()
    msg = one_line_error(p.save(tmp_path / "m.tflite"), r"quantization scale .* is not a finite positive number")
    assert f"tensor {w} '{name}'" in msg


def test_zero_point_out_of_range(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    i = p.find(lambda t: quantized(t) and t.Type() == tflite.TensorType.INT8 and t.Quantization().ZeroPointLength())
    p.zero_points(i)[0] = 300
    one_line_error(p.save(tmp_path / "m.tflite"), rf"tensor {i} .*zero point 300 is outside the range of int8")


def test_quantized_dimension_outside_rank(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    i = p.find(lambda t: quantized(t) and t.Quantization().ScaleLength() > 1 and t.Quantization()._tab.Offset(16))
    assert p.set_quantized_dimension(i, 7)
    one_line_error(p.save(tmp_path / "m.tflite"), rf"tensor {i} .*quantized_dimension 7 is outside its rank")


def test_negative_and_huge_dimensions(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    i = p.find(lambda t: t.ShapeLength() == 4)
    p.shape(i)[1] = -3
    one_line_error(p.save(tmp_path / "neg.tflite"), rf"tensor {i} .*negative dimension")
    p = Patch(models["int8"].read_bytes())
    p.shape(i)[1] = 1 << 30
    one_line_error(p.save(tmp_path / "huge.tflite"), rf"tensor {i} .*bytes \(at most")


def test_buffer_size_must_match_shape(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    w = p.find(lambda t: quantized(t) and t.Quantization().ScaleLength() > 1 and t.ShapeLength() == 4)
    p.shape(w)[0] -= 1  # the weights' buffer now holds one filter too many
    one_line_error(p.save(tmp_path / "m.tflite"), rf"tensor {w} .*buffer \d+ holds \d+ bytes, but shape")


def test_indices_in_range(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    n = p.sg.TensorsLength()
    p.op_inputs(0)[0] = n + 5
    one_line_error(p.save(tmp_path / "in.tflite"), rf"operator 0 \(CONV_2D\) input 0 refers to tensor {n + 5}")
    p = Patch(models["int8"].read_bytes())
    p.op_inputs(0)[1] = -2  # -1 means "no tensor"; -2 once picked the last tensor
    one_line_error(p.save(tmp_path / "neg.tflite"), r"operator 0 \(CONV_2D\) input 1 refers to tensor -2")
    p = Patch(models["int8"].read_bytes())
    p.op_outputs(1)[0] = -1
    one_line_error(p.save(tmp_path / "out.tflite"), r"operator 1 .* output 0 refers to tensor -1")
    p = Patch(models["int8"].read_bytes())
    i = p.find(lambda t: t.Buffer() > 0)
    assert p.set_buffer_index(i, 1 << 20)
    one_line_error(p.save(tmp_path / "buf.tflite"), rf"tensor {i} .*buffer index {1 << 20}")
    p = Patch(models["int8"].read_bytes())
    j = next(j for j in range(p.sg.OperatorsLength()) if p.sg.Operators(j).OpcodeIndex())
    assert p.set_opcode_index(j, 99)
    one_line_error(p.save(tmp_path / "code.tflite"), rf"operator {j} has opcode index 99")
    p = Patch(models["int8"].read_bytes())
    j = next(j for j in range(p.sg.OperatorsLength()) if p.sg.Operators(j).InputsLength() == 1)
    p.op_inputs(j)[0] = -1  # a required input left out
    one_line_error(p.save(tmp_path / "req.tflite"), rf"operator {j} .* input 0 is missing \(tensor index -1\)")


def test_unknown_tensor_type(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    assert p.set_type(0, tflite.TensorType.COMPLEX64)
    one_line_error(p.save(tmp_path / "m.tflite"), r"tensor 0 .*type COMPLEX64 is not supported")


def test_strided_slice_fold_out_of_range(models, tmp_path):
    p = Patch(models["int8"].read_bytes())
    ops = [
        tflite.utils.BUILTIN_OPCODE2NAME[
            max(
                p.model.OperatorCodes(p.sg.Operators(j).OpcodeIndex()).BuiltinCode(),
                p.model.OperatorCodes(p.sg.Operators(j).OpcodeIndex()).DeprecatedBuiltinCode(),
            )
        ]
        for j in range(p.sg.OperatorsLength())
    ]
    j = ops.index("STRIDED_SLICE")
    begin = int(p.op_inputs(j)[1])
    p.data(begin)[:4] = np.frombuffer(struct.pack("<i", 9), np.uint8)
    one_line_error(p.save(tmp_path / "m.tflite"), r"STRIDED_SLICE .*begin 9 is out of range for axis 0 of size 4")


def test_rescale_factor_out_of_range(models, tmp_path):
    """Finite positive scales can still give a conv a multiplier past 2^31 (undefined shifts)."""
    p = Patch(models["int8"].read_bytes())
    out = int(p.op_outputs(0)[0])
    p.scales(out)[0] = 1e-30
    one_line_error(p.save(tmp_path / "m.tflite"), r"CONV_2D.*rescaling factor .* is too large")


# ---------------------------------------------------------------- fuzzing

_FLOATS = [float("nan"), float("inf"), -1.0, 0.0, 1e-45, 1e-30, 1e30, 3.4e38, 0.5]
_INTS = [-(1 << 31), -(1 << 20), -129, -2, -1, 0, 1, 2, 7, 127, 128, 255, 256, 32768, 1 << 20, (1 << 31) - 1]


def _mutate(data: bytes, rng) -> bytes:
    p = Patch(data)
    tensors = p.tensors()
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 9))
        i = int(rng.integers(0, len(tensors)))
        t = tensors[i]
        try:
            if kind == 0 and quantized(t):
                s = p.scales(i)
                s[int(rng.integers(0, len(s)))] = rng.choice(_FLOATS)
            elif kind == 1 and quantized(t) and t.Quantization().ZeroPointLength():
                z = p.zero_points(i)
                z[int(rng.integers(0, len(z)))] = rng.choice(_INTS)
            elif kind == 2 and quantized(t):
                p.set_quantized_dimension(i, int(rng.choice([-1, 1, 2, 3, 4, 9])))
            elif kind == 3 and t.ShapeLength():
                sh = p.shape(i)
                sh[int(rng.integers(0, len(sh)))] = rng.choice(_INTS)
            elif kind == 4:
                p.set_buffer_index(i, int(rng.choice([0, 1, 2, len(tensors), 1 << 24])))
            elif kind == 5:
                j = int(rng.integers(0, p.sg.OperatorsLength()))
                v = p.op_inputs(j) if rng.integers(0, 2) else p.op_outputs(j)
                if len(v):
                    v[int(rng.integers(0, len(v)))] = int(
                        rng.choice([-3, -1, 0, len(tensors) - 1, len(tensors), int(rng.integers(0, len(tensors)))])
                    )
            elif kind == 6 and t.Buffer() and p.model.Buffers(t.Buffer()).DataLength():
                d = p.data(i)
                k = int(rng.integers(0, len(d)))
                d[k] = int(rng.integers(0, 256))
            elif kind == 7:
                p.set_type(i, int(rng.integers(0, 18)))
            else:  # raw bytes anywhere
                k = int(rng.integers(8, len(p.buf)))
                p.buf[k] = int(rng.integers(0, 256))
        except Exception:
            pass  # a mutation that broke the accessors: keep the bytes as they are
    return bytes(p.buf)


def _fuzz(models, tmp_path, seed: int, n: int):
    rng = np.random.default_rng(seed)
    sources = [m.read_bytes() for m in models.values()]
    outcomes = {"ok": 0, "error": 0}
    path = tmp_path / "fuzz.tflite"
    for k in range(n):
        data = _mutate(sources[k % len(sources)], rng)
        path.write_bytes(data)
        board = "host" if k % 3 else "qemu-mps2-an386"
        try:
            compile_(path, board)
            outcomes["ok"] += 1
        except MotError as e:
            assert "\n" not in str(e), f"mutation {k} (seed {seed}): multi-line error {e!s}"
            outcomes["error"] += 1
        except Exception:
            bad = tmp_path / f"crash-{seed}-{k}.tflite"
            bad.write_bytes(data)
            pytest.fail(f"mutation {k} (seed {seed}, kept as {bad}): not a MotError:\n{traceback.format_exc()}")
    assert outcomes["ok"] and outcomes["error"], outcomes
    return outcomes


def test_fuzz_fields_and_bytes(models, tmp_path):
    _fuzz(models, tmp_path, seed=23, n=300)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 104))
def test_fuzz_more(models, tmp_path, seed):
    _fuzz(models, tmp_path, seed=seed, n=1500)


def test_int64_bias_beyond_accumulator_range(models, tmp_path):
    """int16x8 biases past +-2^62 could overflow the int64 accumulator: refused in one line."""
    p = Patch(models["int16"].read_bytes())
    i = p.find(lambda t: t.Type() == tflite.TensorType.INT64 and t.Buffer() > 0)
    p.data(i).view(np.int64)[0] = (1 << 62) + 1
    one_line_error(p.save(tmp_path / "m.tflite"), rf"bias tensor {i} .* holds {(1 << 62) + 1}, beyond the \+-2\^62")
    p.data(i).view(np.int64)[0] = 1 << 62  # the limit itself compiles
    assert compile_(p.save(tmp_path / "ok.tflite")).report["layers"]
