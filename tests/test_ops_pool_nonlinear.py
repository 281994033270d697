"""Pooling, MEAN, SOFTMAX, LOGISTIC/TANH, CONCATENATION and PAD: bit-exact with TFLite Micro.

Models are built with Keras 3 (multi-output where that saves conversions), converted
int8 / int16x8 / float, and some are then edited in their flatbuffer to reach
variants the converter does not emit (fused activations on pools, softmax beta,
int8 -> int16 softmax, MEAN with equal input/output quantization).
"""

from __future__ import annotations

import harness
import numpy as np
import pytest

MODES = ("int8", "int16", "float")


def _keras():
    import keras

    return keras


def build(tmp_path, fn, shape, mode, name="model", rep=None, seed=0):
    model = harness.keras_model(fn, shape, seed=seed)
    return harness.save(harness.convert(model, mode, rep=rep, seed=seed), tmp_path, f"{name}_{mode}")


def rep_uniform(shape, lo, hi, extremes=(), seed=0):
    """Representative data in [lo, hi]; `extremes` are planted so calibration sees them exactly."""
    rng = np.random.default_rng(seed)

    def rep():
        for i in range(16):
            x = rng.uniform(lo, hi, (1,) + tuple(shape)).astype(np.float32)
            if i == 0 and extremes:
                x.reshape(-1)[: len(extremes)] = extremes
            yield [x]

    return rep


# ---------------------------------------------------------------- flatbuffer edits
def edit_model(src, dst, fn):
    """Unpack `src` with the TFLite schema object API, let fn(model, schema) edit it, write `dst`."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    fn(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return dst


def ops_of(model, schema, name):
    code = getattr(schema.BuiltinOperator, name)
    sg = model.subgraphs[0]
    found = []
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            found.append(op)
    return found


def tensor_quant(model, index):
    q = model.subgraphs[0].tensors[index].quantization
    return list(q.scale), list(q.zeroPoint)


def ref_bits(path, inputs=None, n=8):
    return harness.assert_bit_exact(path, inputs=inputs, n=n)


# ---------------------------------------------------------------- pooling
def _pools(x):
    L = _keras().layers
    return [
        L.AveragePooling2D(2, strides=2, padding="same")(x),
        L.AveragePooling2D(3, strides=(2, 1), padding="valid")(x),
        L.AveragePooling2D((2, 3), strides=3, padding="same")(x),
        L.MaxPooling2D(2, strides=2, padding="valid")(x),
        L.MaxPooling2D(3, strides=(1, 2), padding="same")(x),
        L.MaxPooling2D((3, 2), strides=2, padding="same")(x),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_pooling(tmp_path, mode):
    rep = rep_uniform((7, 9, 5), -0.3, 1.0)  # asymmetric: int8 zero point far from 0
    path = build(tmp_path, _pools, (7, 9, 5), mode, "pool", rep=rep)
    ref_bits(path)

    # TFLM applies a fused activation after pooling; the converter rarely emits one, so add it.
    def fuse(model, schema):
        acts = [
            schema.ActivationFunctionType.RELU,
            schema.ActivationFunctionType.RELU_N1_TO_1,
            schema.ActivationFunctionType.RELU6,
        ]
        pools = ops_of(model, schema, "AVERAGE_POOL_2D") + ops_of(model, schema, "MAX_POOL_2D")
        assert len(pools) == 6
        for i, op in enumerate(pools):
            op.builtinOptions.fusedActivationFunction = acts[i % 3]

    fused = edit_model(path, tmp_path / f"pool_fused_{mode}.tflite", fuse)
    rng = np.random.default_rng(3)
    inputs = None
    if mode == "float":  # wide enough that RELU6 and RELU_N1_TO_1 clip
        inputs = [rng.uniform(-8, 8, (6, 7, 9, 5)).astype(np.float32)]
    ref_bits(fused, inputs)


# ---------------------------------------------------------------- MEAN
def _means(x):
    k = _keras()
    L = k.layers
    return [
        L.GlobalAveragePooling2D()(x),
        L.GlobalAveragePooling2D(keepdims=True)(x),
        k.ops.mean(x, axis=1),
        k.ops.mean(x, axis=(1, 3), keepdims=True),
        k.ops.mean(x, axis=-1),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_mean(tmp_path, mode):
    rep = rep_uniform((5, 6, 7), -0.1, 1.0)
    path = build(tmp_path, _means, (5, 6, 7), mode, "mean", rep=rep)
    ref_bits(path)
    if mode == "float":
        return

    # Output quantization equal to the input's: TFLM has no shortcut, the generic path must match.
    def same_quant(model, schema):
        sg = model.subgraphs[0]
        for op in ops_of(model, schema, "MEAN"):
            src = sg.tensors[op.inputs[0]].quantization
            dst = sg.tensors[op.outputs[0]].quantization
            dst.scale, dst.zeroPoint = list(src.scale), list(src.zeroPoint)

    ref_bits(edit_model(path, tmp_path / f"mean_same_{mode}.tflite", same_quant))


# ---------------------------------------------------------------- SOFTMAX
def _softmaxes(x):
    L = _keras().layers
    a = L.Softmax()(L.Dense(10)(x))
    b = L.Softmax()(L.Reshape((4, 9))(L.Dense(36)(x)))
    return [a, b]


@pytest.mark.parametrize("mode", MODES)
def test_softmax(tmp_path, mode):
    path = build(tmp_path, _softmaxes, (12,), mode, "softmax")
    rng = np.random.default_rng(1)
    inputs = None
    if mode == "float":
        inputs = [rng.uniform(-6, 6, (8, 12)).astype(np.float32)]
    ref_bits(path, inputs)

    for beta in (0.37, 3.0):

        def set_beta(model, schema, beta=beta):
            for op in ops_of(model, schema, "SOFTMAX"):
                op.builtinOptions.beta = beta

        ref_bits(edit_model(path, tmp_path / f"softmax_beta_{mode}.tflite", set_beta), inputs)

    if mode == "int8":  # TFLM also runs int8 -> int16 softmax (scale 1/65536, zero point -32768)

        def to_int16(model, schema):
            sg = model.subgraphs[0]
            for op in ops_of(model, schema, "SOFTMAX"):
                t = sg.tensors[op.outputs[0]]
                t.type = schema.TensorType.INT16
                t.quantization.scale, t.quantization.zeroPoint = [1.0 / 65536], [-32768]

        ref_bits(edit_model(path, tmp_path / "softmax_s8_s16.tflite", to_int16))


@pytest.mark.parametrize("mode,span", [("int8", 2.0), ("int8", 40.0), ("int16", 3.0), ("int16", 90.0)])
def test_softmax_input_scales(tmp_path, mode, span):
    """Softmax straight on the model input: the input scale drives TFLM's multipliers and diff_min."""
    L = _keras().layers
    path = build(tmp_path, lambda x: L.Softmax()(x), (5, 16), mode, "softmax_in", rep=rep_uniform((5, 16), -span, span))
    ref_bits(path, n=16)


# ---------------------------------------------------------------- LOGISTIC / TANH
@pytest.mark.parametrize("mode", MODES)
def test_logistic_tanh_after_dense(tmp_path, mode):
    L = _keras().layers

    def fn(x):
        h = L.Dense(24)(x)
        return [L.Activation("sigmoid")(h), L.Activation("tanh")(h)]

    path = build(tmp_path, fn, (10,), mode, "sigtanh")
    ref_bits(path, n=16)


@pytest.mark.parametrize("lo,hi", [(-0.3, 0.3), (-3.0, 3.0), (-20.0, 20.0), (0.0, 6.0), (-12.0, 1.0)])
def test_logistic_tanh_int8_exhaustive(tmp_path, lo, hi):
    """Every int8 input value, for several input scales and zero points."""
    L = _keras().layers
    fn = lambda x: [L.Activation("sigmoid")(x), L.Activation("tanh")(x)]
    path = build(tmp_path, fn, (256,), "int8", "sigtanh8", rep=rep_uniform((256,), lo, hi))
    ref_bits(path, inputs=[np.arange(-128, 128, dtype=np.int8).reshape(1, 256)])


# 32767 * 2^-12 and 32767 * 2^-11 make power-of-two int16 scales: TFLM's shift-only paths.
@pytest.mark.parametrize("limit", [32767 / 4096, 32767 / 2048, 3.0, 100.0])
def test_logistic_tanh_int16_exhaustive(tmp_path, limit):
    """Every int16 input value, power-of-two and general input scales."""
    L = _keras().layers
    fn = lambda x: [L.Activation("sigmoid")(x), L.Activation("tanh")(x)]
    # 128 samples of 512 values (the reference interpreter's arena is sized from the model file)
    rep = rep_uniform((512,), -limit, limit, extremes=(limit, -limit))
    path = build(tmp_path, fn, (512,), "int16", "sigtanh16", rep=rep)
    x = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16).reshape(128, 512)
    ref_bits(path, inputs=[x])


# ---------------------------------------------------------------- CONCATENATION
def _concats(x):
    L = _keras().layers
    a = L.MaxPooling2D(2, padding="same")(x)  # pools keep the input quantization,
    b = L.AveragePooling2D(2, padding="same")(x)  # so no requantize is inserted (int16 too)
    return [
        L.Concatenate(axis=-1)([a, b]),
        L.Concatenate(axis=1)([a, b, a]),
        L.Concatenate(axis=2)([x, x]),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_concatenation(tmp_path, mode):
    path = build(tmp_path, _concats, (5, 6, 3), mode, "concat", rep=rep_uniform((5, 6, 3), -0.5, 1.0))
    ref_bits(path)


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_concatenation_dense_branches(tmp_path, mode):
    L = _keras().layers
    fn = lambda x: L.Concatenate()([L.Dense(5)(x), L.Dense(3)(x), L.Dense(4)(x)])
    ref_bits(build(tmp_path, fn, (8,), mode, "concat_dense"))


# ---------------------------------------------------------------- PAD / PADV2
@pytest.mark.parametrize("mode", MODES)
def test_zero_padding(tmp_path, mode):
    L = _keras().layers
    fn = lambda x: [L.ZeroPadding2D(((1, 2), (0, 3)))(x), L.ZeroPadding1D((2, 1))(L.Reshape((12, 3))(x))]
    # all-positive calibration data: the int8 zero point (the pad value) is -128
    path = build(tmp_path, fn, (4, 3, 3), mode, "pad", rep=rep_uniform((4, 3, 3), 0.0, 1.0))
    ref_bits(path)


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_padv2_constant(tmp_path, mode):
    k = _keras()
    fn = lambda x: k.ops.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0)), constant_values=0.5)
    ref_bits(build(tmp_path, fn, (3, 4, 2), mode, "padv2"))


def test_unsupported_is_clear(tmp_path):
    """int16 PADV2 with a float pad value: TFLM rejects it, so do we, with one clear line."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.errors import MotError

    k = _keras()
    fn = lambda x: k.ops.pad(x, ((0, 0), (1, 0), (2, 1), (0, 0)), constant_values=0.5)
    path = build(tmp_path, fn, (3, 4, 2), "int16", "padv2")
    with pytest.raises(MotError, match=r"PADV2 \(int16\) at index \d+"):
        generate(path)
