"""Post-training quantization (mcu_mot.optimize): int8 / int16x8 PTQ, float input/output,
selective float layers (--exclude), mixed int8/int16x8 layers (--int16), dynamic range
(hybrid kernels), the cost report, and one-line errors.

The model is the demo's small CNN trained for 3 epochs on scikit-learn's digits.
Integer models are checked bit for bit against the TFLite Micro interpreter; models
with float layers against TFLite Micro (our float kernels are exact with it) and the
TF Lite interpreter within float tolerance; dynamic-range models against the TF Lite
interpreter's builtin reference kernels (TFLite Micro has no hybrid kernels).
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import harness
import numpy as np
import pytest

from mcu_mot.errors import MotError
from mcu_mot.ir import read_tflite

N_CALIB = 100


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    import keras

    from mcu_mot.flows.demo import digits_dataset, small_cnn

    (xtr, ytr), (xte, yte) = digits_dataset()
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=3, batch_size=32, verbose=0)
    float_acc = float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
    work = tmp_path_factory.mktemp("ptq")
    model.save(work / "digits.keras")
    return dict(
        model=model, xtr=xtr, ytr=ytr, xte=xte, yte=yte, float_acc=float_acc, work=work, calib=xtr[:N_CALIB], cache={}
    )


def _variant(digits, name: str, **kw):
    """Quantize once per module; returns the .tflite path."""
    from mcu_mot.optimize import quantize

    if name not in digits["cache"]:
        calib = None if kw.get("mode") == "dynamic" else digits["calib"]
        data = quantize(digits["model"], calib=calib, progress=False, **kw)
        digits["cache"][name] = harness.save(data, digits["work"], name)
    return digits["cache"][name]


def _inputs(path, x):
    from mcu_mot.device.simulator import load
    from mcu_mot.optimize.ptq import quantize_input

    return quantize_input(x, load(path).inputs[0])


def _accuracy(path, x, y) -> float:
    from mcu_mot.device.simulator import simulate

    (out,) = simulate(path, _inputs(path, x))
    return float(np.mean(out.reshape(len(out), -1).argmax(-1) == y))


def _litert(path, x: np.ndarray) -> np.ndarray:
    """TF Lite interpreter with the builtin reference kernels (no XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for s in x:
        it.set_tensor(i["index"], s.reshape(i["shape"]))
        it.invoke()
        out.append(it.get_tensor(o["index"]).copy())
    return np.stack(out).reshape((len(x),) + tuple(o["shape"][1:]))


def _layer_ops(path, layer: str) -> list:
    """Ops of a Keras layer in a quantized model: the layer's name is restored in the
    tensor names ('model_1/<layer>/...'); the last op is named after the signature."""
    g = read_tflite(path)
    return [op for op in g.ops if f"/{layer}/" in op.name and op.opcode not in ("QUANTIZE", "DEQUANTIZE")]


def _weights_dtype(op):
    return op.inputs[1].dtype if len(op.inputs) > 1 and op.inputs[1] is not None else None


# ------------------------------------------------------------------ full-integer PTQ
@pytest.mark.parametrize("mode, act", [("int8", "int8"), ("int16x8", "int16")])
def test_ptq_bit_exact_with_tflm_and_close_to_float(digits, mode, act):
    path = _variant(digits, mode, mode=mode)
    g = read_tflite(path)
    assert g.inputs[0].dtype == act and g.outputs[0].dtype == act
    compute = [op for op in g.ops if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert len(compute) == 4
    for op in compute:
        assert op.outputs[0].dtype == act and op.inputs[1].dtype == "int8"
        assert op.inputs[1].quant.scale.size == op.inputs[1].shape[0 if op.opcode != "DEPTHWISE_CONV_2D" else 3]
    xq = _inputs(path, digits["xte"][:120])
    harness.assert_bit_exact(path, [xq])
    acc = _accuracy(path, digits["xte"], digits["yte"])
    assert acc >= digits["float_acc"] - 0.02, (acc, digits["float_acc"])


def test_float_io_keeps_float_input_and_output(digits):
    path = _variant(digits, "int8_float_io", mode="int8", io="float")
    g = read_tflite(path)
    assert g.inputs[0].dtype == "float32" and g.outputs[0].dtype == "float32"
    assert g.ops[0].opcode == "QUANTIZE" and g.ops[-1].opcode == "DEQUANTIZE"
    harness.assert_bit_exact(path, [digits["xte"][:60]])


def test_progress_reports_every_calibration_sample(digits):
    from mcu_mot.optimize import quantize

    seen = []
    quantize(digits["model"], "int8", calib=digits["xtr"][:20], progress=lambda s, d, t: seen.append((s, d, t)))
    assert seen and seen[-1][1:] == (20, 20)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


def test_load_keras_path_and_read_calibration(digits, tmp_path):
    from mcu_mot.optimize import load_keras, read_calibration

    model = load_keras(digits["work"] / "digits.keras")
    np.save(tmp_path / "calib.npy", digits["xtr"][:8].astype(np.float64))
    calib = read_calibration(tmp_path / "calib.npy", model)
    assert calib.dtype == np.float32 and calib.shape == (8, 8, 8, 1)
    np.savez(tmp_path / "calib.npz", calib)
    assert read_calibration(tmp_path / "calib.npz", model).shape == (8, 8, 8, 1)


# ------------------------------------------------------------------ selective (float layers)
def test_exclude_keeps_matched_layers_float_in_int8(digits):
    path = _variant(digits, "ex_int8", mode="int8", exclude="depthwise_conv2d|dense")
    g = read_tflite(path)
    for layer in ("depthwise_conv2d", "dense"):
        ops = _layer_ops(path, layer)
        assert ops, layer
        for op in ops:
            assert op.outputs[0].dtype == "float32" and _weights_dtype(op) == "float32", (layer, op)
    for layer in ("conv2d", "conv2d_1"):
        for op in _layer_ops(path, layer):
            assert op.outputs[0].dtype == "int8" and _weights_dtype(op) == "int8"
    codes = [op.opcode for op in g.ops]
    assert codes.count("DEQUANTIZE") == 2 and codes.count("QUANTIZE") == 2
    assert g.inputs[0].dtype == "int8"
    xq = _inputs(path, digits["xte"][:80])
    (ours,) = harness.assert_bit_exact(path, [xq])  # float kernels exact with TFLM too
    ref = _litert(path, xq)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1
    assert _accuracy(path, digits["xte"], digits["yte"]) >= digits["float_acc"] - 0.02


def test_exclude_first_and_last_layer_with_float_io(digits):
    path = _variant(digits, "ex_int8_fio", mode="int8", io="float", exclude="conv2d|softmax")
    g = read_tflite(path)
    assert g.ops[0].opcode == "CONV_2D" and g.ops[0].outputs[0].dtype == "float32"
    assert g.ops[-1].opcode == "SOFTMAX" and g.ops[-1].outputs[0].dtype == "float32"
    x = digits["xte"][:80]
    (ours,) = harness.assert_bit_exact(path, [x])
    np.testing.assert_allclose(ours, _litert(path, x), atol=2e-3)


def test_exclude_in_int16x8_splices_float_layers(digits):
    path = _variant(digits, "ex_int16", mode="int16x8", exclude="depthwise_conv2d|dense")
    for op in _layer_ops(path, "depthwise_conv2d") + _layer_ops(path, "dense"):
        assert op.outputs[0].dtype == "float32" and _weights_dtype(op) == "float32"
    for op in _layer_ops(path, "conv2d_1"):
        assert op.outputs[0].dtype == "int16"
    g = read_tflite(path)
    assert g.inputs[0].dtype == "int16" and g.outputs[0].dtype == "int16"
    xq = _inputs(path, digits["xte"][:80])
    (ours,) = harness.assert_bit_exact(path, [xq])
    ref = _litert(path, xq)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 4  # int16 softmax: TFL vs TFLM rounding


# ------------------------------------------------------------------ mixed int8 / int16x8
def test_mixed_int16_layers_bit_exact_with_tflm(digits):
    path = _variant(digits, "mixed", mode="int8", int16="conv2d_1|dense")
    g = read_tflite(path)
    for layer in ("conv2d_1", "dense"):
        ops = [op for op in _layer_ops(path, layer) if op.opcode in ("CONV_2D", "FULLY_CONNECTED")]
        assert ops and all(op.outputs[0].dtype == "int16" and op.inputs[0].dtype == "int16" for op in ops)
        assert all(op.inputs[2].dtype == "int64" for op in ops)  # int16x8 bias
    for layer in ("conv2d", "depthwise_conv2d"):
        assert all(op.outputs[0].dtype == "int8" for op in _layer_ops(path, layer))
    requant = [(op.inputs[0].dtype, op.outputs[0].dtype) for op in g.ops if op.opcode == "QUANTIZE"]
    assert ("int8", "int16") in requant and ("int16", "int8") in requant
    assert g.inputs[0].dtype == "int8" and g.outputs[0].dtype == "int8"
    xq = _inputs(path, digits["xte"])
    harness.assert_bit_exact(path, [xq])
    assert _accuracy(path, digits["xte"], digits["yte"]) >= digits["float_acc"] - 0.02


def test_mixed_with_float_io_and_exclude(digits):
    path = _variant(digits, "mixed_ex", mode="int8", io="float", int16="conv2d", exclude="dense")
    g = read_tflite(path)
    assert g.ops[0].opcode == "QUANTIZE" and g.ops[0].outputs[0].dtype == "int16"  # float -> int16 directly
    assert [op.outputs[0].dtype for op in _layer_ops(path, "dense")] == ["float32"]
    harness.assert_bit_exact(path, [digits["xte"][:80]])


# ------------------------------------------------------------------ dynamic range
def _hybrid_model():
    """Layers big enough for the converter's dynamic-range threshold (1024 weights): a
    per-channel conv, a conv whose channel scales are all equal (per-tensor path), a
    depthwise conv, a strided conv and two dense layers, all with biases."""
    from keras import layers as L

    def net(x):
        x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = L.Conv2D(128, 3, padding="same", activation="relu6", name="big")(x)
        x = L.DepthwiseConv2D(3, activation="relu", name="dw")(x)
        x = L.Conv2D(16, 1, name="pw_equal")(x)
        x = L.Conv2D(24, 3, strides=2, padding="same", name="conv_s2")(x)
        x = L.Dense(64, activation="relu", name="fc1")(L.Flatten()(x))
        return L.Dense(10, name="fc2")(x)

    model = harness.keras_model(net, (8, 8, 1))
    k = model.get_layer("pw_equal").kernel.numpy()
    model.get_layer("pw_equal").kernel.assign(0.2 * k / np.abs(k).max(axis=(0, 1, 2), keepdims=True))
    return model


def test_dynamic_range_hybrid_kernels_match_tflite(tmp_path):
    from mcu_mot.codegen.compile import generate
    from mcu_mot.device.simulator import simulate
    from mcu_mot.optimize import quantize

    path = harness.save(quantize(_hybrid_model(), "dynamic", progress=False), tmp_path, "dyn")
    g = read_tflite(path)
    hybrid = [
        op
        for op in g.ops
        if op.inputs[0] is not None and op.inputs[0].dtype == "float32" and _weights_dtype(op) == "int8"
    ]
    assert sorted({op.opcode for op in hybrid}) == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    kernels = {layer["kernel"] for layer in generate(path).report["layers"]}
    assert {"mm_conv_hybrid", "mm_depthwise_conv_hybrid", "mm_fully_connected_hybrid"} <= kernels
    rng = np.random.default_rng(1)
    x = (rng.uniform(-1, 1.5, (60, 8, 8, 1)) * rng.uniform(0.05, 3, (60, 1, 1, 1))).astype(np.float32)
    x[7] = 0.0  # all-zero input
    (ours,) = simulate(path, x)
    ref = _litert(path, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours, ref)  # in fact exactly


def test_dynamic_range_digits_and_exclude(digits):
    from mcu_mot.device.simulator import simulate

    path = _variant(digits, "dynamic", mode="dynamic")
    fc = [op for op in read_tflite(path).ops if op.opcode == "FULLY_CONNECTED"]
    assert fc and _weights_dtype(fc[0]) == "int8"
    x = digits["xte"][:80]
    (ours,) = simulate(path, x)
    np.testing.assert_allclose(ours, _litert(path, x), rtol=1e-5, atol=1e-7)
    ex = _variant(digits, "dynamic_ex", mode="dynamic", exclude="dense")
    assert [_weights_dtype(op) for op in _layer_ops(ex, "dense")] == ["float32"]
    harness.assert_bit_exact(ex, [x])


# ------------------------------------------------------------------ costs
def test_compare_variants_reports_flash_arena_accuracy(digits):
    from mcu_mot.flows.variants import compare_variants

    variants = [
        ("int8", _variant(digits, "int8", mode="int8")),
        ("int16x8", _variant(digits, "int16x8", mode="int16x8")),
        ("mixed", _variant(digits, "mixed", mode="int8", int16="conv2d_1|dense")),
        ("exclude", _variant(digits, "ex_int8", mode="int8", exclude="depthwise_conv2d|dense")),
    ]
    rows = compare_variants(variants, digits["xte"], digits["yte"], progress=False)
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == ["int8", "int16x8", "mixed", "exclude"]
    assert by["int16x8"]["arena_bytes"] > by["int8"]["arena_bytes"]
    assert by["int16x8"]["weights_bytes"] > by["int8"]["weights_bytes"]  # 64-bit biases
    assert by["exclude"]["weights_bytes"] > by["int8"]["weights_bytes"]  # float weights
    for r in rows:
        assert r["accuracy"] >= digits["float_acc"] - 0.02 and r["macs"] > 0
    assert by["int8"]["accuracy"] == pytest.approx(_accuracy(variants[0][1], digits["xte"], digits["yte"]))


# ------------------------------------------------------------------ errors
def test_bad_inputs_are_one_line_errors(digits, tmp_path):
    from mcu_mot.optimize import load_keras, quantize, read_calibration

    model, calib = digits["model"], digits["calib"]

    def err(fn, match):
        with pytest.raises(MotError, match=match) as e:
            fn()
        assert "\n" not in str(e.value)
        return str(e.value)

    err(lambda: load_keras(tmp_path / "missing.keras"), "not found")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    err(lambda: load_keras(tmp_path / "junk.keras"), "not a readable Keras model")
    (tmp_path / "model.h5").write_bytes(b"x")
    err(lambda: load_keras(tmp_path / "model.h5"), r"\.keras")
    msg = err(
        lambda: quantize(model, "int8", calib=calib, exclude="nothing_like_this", progress=False), "matches no layer"
    )
    assert "depthwise_conv2d" in msg and "dense" in msg
    err(lambda: quantize(model, "int8", calib=calib, int16="conv2d(", progress=False), "regular expression")
    err(lambda: quantize(model, "int8", calib=calib[:, :4], progress=False), r"does not match the model input")
    err(lambda: quantize(model, "int8", progress=False), "needs calibration data")
    err(lambda: quantize(model, "int4", calib=calib, progress=False), "unknown quantization mode")
    err(lambda: quantize(model, "int16x8", calib=calib, int16="dense", progress=False), "--int16")
    err(lambda: quantize(model, "dynamic", io="int", progress=False), "float")
    err(lambda: quantize(model, "int8", calib=calib, exclude="dense", int16="dense", progress=False), "both")
    bad = calib.copy()
    bad[0, 0, 0, 0] = np.nan
    err(lambda: quantize(model, "int8", calib=bad, progress=False), "NaN")
    np.save(tmp_path / "bad.npy", np.zeros((4, 8, 8), np.float32))
    err(lambda: read_calibration(tmp_path / "bad.npy", model), r"shape \(4, 8, 8\) does not match")
    err(lambda: read_calibration(tmp_path / "none.npy", model), "not found")
    (tmp_path / "text.npy").write_text("hello")
    err(lambda: read_calibration(tmp_path / "text.npy", model), "not a readable .npy/.npz file")


# ------------------------------------------------------------------ on a board
@pytest.mark.qemu
@pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)
def test_hybrid_and_mixed_models_on_qemu(digits, tmp_path):
    """The device (Cortex-M4F) computes what the host simulation computes, bit for bit."""
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.device.simulator import simulate
    from mcu_mot.fwbuild import build
    from mcu_mot.optimize import quantize

    rng = np.random.default_rng(2)
    dyn = harness.save(quantize(_hybrid_model(), "dynamic", progress=False), tmp_path, "dyn")
    mixed = _variant(digits, "mixed", mode="int8", int16="conv2d_1|dense")
    for path, x in (
        (dyn, rng.uniform(-1, 1.5, (3, 8, 8, 1)).astype(np.float32)),
        (mixed, _inputs(mixed, digits["xte"][:3])),
    ):
        report = build(path, "qemu-mps2-an386", tmp_path / f"build-{path.stem}")
        with QemuInstance("qemu-mps2-an386", report["elf"]) as q, DeviceClient(q.url, timeout=2.0) as dev:
            (ours,) = dev.run(x)
        (host,) = simulate(path, x)
        np.testing.assert_array_equal(ours, host)
