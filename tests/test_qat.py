"""Quantization-aware training for Keras 3 (mcu_mot.optimize.qat) on scikit-learn's digits:
the converted int8 model agrees with the fake-quant Keras model, runs bit-exactly on our
compiler vs TFLite Micro, ends within 1 point of float, and beats PTQ where PTQ loses."""

import os

import numpy as np
import pytest
from harness import assert_bit_exact, convert, save

from mcu_mot.errors import MotError


@pytest.fixture(scope="module")
def digits():
    from mcu_mot.flows.demo import digits_dataset

    return digits_dataset()


def quantize_input(tfl: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_content=tfl).get_input_details()[0]
    s, z = d["quantization"]
    return np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)


def dequantize_output(tfl: bytes, y: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_content=tfl).get_output_details()[0]
    s, z = d["quantization"]
    return (y.astype(np.float32) - z) * s


def simulate_float(tfl: bytes, path, x: np.ndarray) -> np.ndarray:
    """Our generated C on the host: float samples in, dequantized outputs out."""
    from mcu_mot.device.simulator import simulate

    (y,) = simulate(path, quantize_input(tfl, x))
    return dequantize_output(tfl, y)


def bn_relu6_cnn():
    """Small digits CNN with BatchNormalization + ReLU6 (folded and fused by QAT)."""
    import keras
    from keras import layers as L

    inp = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(6.0, name="relu1")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.Activation("relu6", name="relu2")(x)
    x = L.Conv2D(24, 1, activation="relu", name="pw")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, activation="softmax", name="fc")(x)
    return keras.Model(inp, x, name="digits_bn")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """float model (trained), QAT model (fine-tuned 3 epochs), converted .tflite."""
    import keras

    from mcu_mot.optimize.qat import convert_qat, train_qat

    (xtr, ytr), (xte, yte) = digits
    keras.utils.set_random_seed(0)
    model = bn_relu6_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=12, batch_size=32, verbose=0)
    qmodel = train_qat(model, (xtr, ytr), epochs=3, progress=False)
    tfl = convert_qat(qmodel)
    path = save(tfl, tmp_path_factory.mktemp("qat"), "digits_qat")
    return model, qmodel, tfl, path


def test_structure_bn_folded_relu_fused(trained):
    from mcu_mot.optimize.qat import FakeQuant, QuantLayer

    _, qmodel, _, _ = trained
    kinds = {layer.name: type(layer).__name__ for layer in qmodel.layers}
    assert "bn1" not in kinds and "bn2" not in kinds and "relu1" not in kinds and "relu2" not in kinds
    q = {layer.name: layer for layer in qmodel.layers if isinstance(layer, QuantLayer)}
    assert set(q) == {"conv1", "dw", "pw", "fc"}
    assert q["conv1"].bn is not None and q["conv1"].activation == "relu6"
    assert q["dw"].bn is not None and q["dw"].activation == "relu6"
    assert q["pw"].activation == "relu" and q["fc"].post_activation == "softmax"
    assert isinstance(qmodel.layers[1], FakeQuant)  # the input's fake-quant
    # every layer knows its input's quantizer (bias in int32 at s_in * s_w)
    assert q["conv1"]._input_quant.layer is qmodel.layers[1]
    assert q["dw"]._input_quant.layer is q["conv1"]
    assert q["fc"]._input_quant.layer is q["pw"]  # through MaxPooling2D and Flatten


def test_converted_matches_fake_quant(trained, digits):
    """The compiled int8 model (host simulation) predicts what the fake-quant model predicts."""
    _, qmodel, tfl, path = trained
    _, (xte, yte) = digits
    ref = qmodel.predict(xte, verbose=0)
    got = simulate_float(tfl, path, xte)
    agree = np.mean(got.argmax(-1) == ref.argmax(-1))
    assert agree >= 0.99, agree
    # softmax outputs are int8 steps of 1/256. TFLM's requantization rounds twice (a doubling
    # high multiply, then a rounding shift), so a value within ~1/2**shift of a half step lands
    # one step off the exactly-rounded fake-quant value now and then; a logit one step off
    # moves the probabilities by up to ~p(1-p) * logit scale.
    diff = np.abs(got - ref)
    print(f"agreement {agree:.4f}, max |diff| {diff.max() * 256:.2f}/256, mean {diff.mean() * 256:.3f}/256")
    assert diff.max() <= 4 / 256 and diff.mean() <= 0.25 / 256, (diff.max() * 256, diff.mean() * 256)


def test_learned_parameters_in_tflite(trained):
    """Activation scales/zero points are the learned (nudged) ranges; weights are the fake-quant's integers."""
    from ai_edge_litert.interpreter import Interpreter

    from mcu_mot.optimize.qat import QuantLayer, quantizers, weight_scales

    _, qmodel, tfl, _ = trained
    details = Interpreter(model_content=tfl).get_tensor_details()
    acts = [
        (float(d["quantization_parameters"]["scales"][0]), int(d["quantization_parameters"]["zero_points"][0]))
        for d in details
        if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) == 1
    ]
    for q in quantizers(qmodel):
        s, z = q.quant_params()
        assert any(np.isclose(s, s2, rtol=1e-6, atol=0) and z == z2 for s2, z2 in acts), (q.name, s, z, acts)
    it = Interpreter(model_content=tfl, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    per_channel = [d for d in details if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1]
    for layer in (lay for lay in qmodel.layers if isinstance(lay, QuantLayer)):
        kq, _ = layer.quantized_weights()
        kq = np.asarray(kq)
        flat = (
            kq.reshape(-1, kq.shape[-2] * kq.shape[-1]) if layer.kind == "depthwise" else kq.reshape(-1, kq.shape[-1])
        )
        scales = weight_scales(flat)
        ints = np.round(flat / scales).astype(np.int64)  # (taps, out channels)
        assert np.abs(ints).max() == 127
        match = [
            d
            for d in per_channel
            if len(d["quantization_parameters"]["scales"]) == len(scales)
            and np.allclose(d["quantization_parameters"]["scales"], scales, rtol=1e-5)
        ]
        assert len(match) == 1, layer.name
        w = it.get_tensor(match[0]["index"]).astype(np.int64)
        axis = match[0]["quantization_parameters"]["quantized_dimension"]
        w = np.moveaxis(w, axis, -1).reshape(-1, w.shape[axis])
        if layer.kind == "conv":  # TFLite OHWI vs Keras HWIO: compare as sorted multisets per channel
            assert np.array_equal(np.sort(w, 0), np.sort(ints, 0)), layer.name
        else:
            assert np.array_equal(w, ints), layer.name


def test_bit_exact_with_tflm(trained, digits):
    _, _, tfl, path = trained
    _, (xte, _) = digits
    assert_bit_exact(path, [quantize_input(tfl, xte[:24])])
    assert_bit_exact(path, n=8)


def test_qat_accuracy_within_one_point_of_float(trained, digits):
    model, _, tfl, path = trained
    _, (xte, yte) = digits
    float_acc = np.mean(model.predict(xte, verbose=0).argmax(-1) == yte)
    qat_acc = np.mean(simulate_float(tfl, path, xte).argmax(-1) == yte)
    assert float_acc > 0.9
    assert qat_acc >= float_acc - 0.01, (float_acc, qat_acc)


def test_qat_beats_ptq_on_outlier_channel(digits, tmp_path):
    """One channel of a ReLU conv is scaled up to 256x the largest channel's range (and scaled
    back down in the next layer, so the float model is unchanged): with per-tensor activation
    scales the other channels keep a level or two and PTQ loses >10 points; QAT trains the rest
    of the model on the quantized features and wins most of it back."""
    import keras
    from keras import layers as L

    from mcu_mot.optimize.qat import convert_qat, train_qat

    (xtr, ytr), (xte, yte) = digits
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = L.Flatten()(L.MaxPooling2D(2)(x))
    model = keras.Model(inp, L.Dense(10, activation="softmax", name="fc")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(xtr, ytr, epochs=8, batch_size=32, verbose=0)
    c2, fc = model.get_layer("c2"), model.get_layer("fc")
    top = keras.Model(inp, c2.output).predict(xtr[:200], verbose=0).reshape(-1, 32).max(0)
    ch = int(np.argmax(top))
    k = 256.0
    w, b = c2.get_weights()
    w[..., ch] *= k
    b[ch] *= k
    c2.set_weights([w, b])
    w, b = fc.get_weights()
    w = w.reshape(16, 32, 10)
    w[:, ch, :] /= k
    fc.set_weights([w.reshape(-1, 10), b])
    float_acc = np.mean(model.predict(xte, verbose=0).argmax(-1) == yte)

    ptq = convert(model, rep=lambda: ([xtr[i : i + 1]] for i in range(100)))
    ptq_path = save(ptq, tmp_path, "ptq")
    ptq_acc = np.mean(simulate_float(ptq, ptq_path, xte).argmax(-1) == yte)

    qat = convert_qat(train_qat(model, (xtr, ytr), epochs=3, learning_rate=1e-3, progress=False))
    qat_path = save(qat, tmp_path, "qat")
    qat_acc = np.mean(simulate_float(qat, qat_path, xte).argmax(-1) == yte)
    print(f"outlier model: float {float_acc:.4f}, PTQ int8 {ptq_acc:.4f}, QAT int8 {qat_acc:.4f}")
    assert ptq_acc < float_acc - 0.10, (float_acc, ptq_acc)
    assert qat_acc > ptq_acc + 0.10, (ptq_acc, qat_acc)
    assert qat_acc >= float_acc - 0.06, (float_acc, qat_acc)
    assert_bit_exact(qat_path, [quantize_input(qat, xte[:8])])


def residual_model():
    """Add + ReLU fused, Dense + BatchNormalization folded, GlobalAveragePooling, logits out."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.Conv2D(8, 3, padding="same")(x)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(16, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    return keras.Model(inp, L.Dense(10)(x))


def sequential_model():
    """Sequential, depth multiplier 2, a conv with a non-fusable activation (own fake-quant after it)."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(8, 3, strides=2, activation="relu6"),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2D(8, 1, activation="hard_silu"),
            L.Flatten(),
            L.Dense(10, activation="softmax"),
        ]
    )


def demo_cnn():
    import keras

    from mcu_mot.flows.demo import small_cnn

    keras.utils.set_random_seed(3)
    return small_cnn()


@pytest.mark.parametrize("make", [residual_model, sequential_model, demo_cnn], ids=["residual", "sequential", "demo"])
def test_other_structures(make, digits, tmp_path):
    """Calibrated + one QAT epoch: conversion agrees with the fake-quant model and is bit-exact."""
    import keras

    from mcu_mot.optimize.qat import QuantLayer, convert_qat, quantize_model, train_qat

    (xtr, ytr), (xte, _) = digits
    model = make()
    for w in model.weights:  # non-trivial BN statistics and biases
        if "moving_mean" in w.path or "bias" in w.path or "beta" in w.path:
            w.assign(np.random.default_rng(0).normal(0, 0.2, w.shape).astype(np.float32))
    qmodel = quantize_model(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in qmodel.layers)
    assert all(layer._input_quant.layer is not None for layer in qmodel.layers if isinstance(layer, QuantLayer))
    if make is demo_cnn:  # users who train themselves: plain fit, ranges start from the first batch
        qmodel.compile("adam", "sparse_categorical_crossentropy")
        qmodel.fit(xtr[:512], ytr[:512], epochs=1, batch_size=32, verbose=0)
    else:
        qmodel = train_qat(qmodel, (xtr[:512], ytr[:512]), epochs=1, progress=False)
    tfl = convert_qat(qmodel)
    path = save(tfl, tmp_path, "m")
    ref = qmodel.predict(xte, verbose=0)
    got = simulate_float(tfl, path, xte)
    assert np.mean(got.argmax(-1) == ref.argmax(-1)) >= 0.99
    step = float(dequantize_output(tfl, np.array([1], np.int8))[0] - dequantize_output(tfl, np.array([0], np.int8))[0])
    assert np.abs(got - ref).max() <= 3 * step
    assert_bit_exact(path, [quantize_input(tfl, xte[:8])])
    if make is sequential_model:  # float input/output: QUANTIZE / DEQUANTIZE at the borders
        tfl_f = convert_qat(qmodel, io_float=True)
        got_f = assert_bit_exact(save(tfl_f, tmp_path, "io_float"), [xte[:16]])[0]
        assert np.array_equal(got_f.argmax(-1), got[:16].argmax(-1))


def test_fake_quant_model_before_training_matches_ptq_grid(digits):
    """Freshly quantized + calibrated, the fake-quant model is close to float (same as PTQ would be)."""
    from mcu_mot.optimize.qat import calibrate, quantize_model

    (xtr, _), (xte, _) = digits
    model = residual_model()
    qmodel = quantize_model(model)
    calibrate(qmodel, xtr[:256], progress=False)
    a, b = model.predict(xte[:64], verbose=0), qmodel.predict(xte[:64], verbose=0)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
    assert not np.array_equal(a, b)


def test_save_load_and_qat_api(trained, digits, tmp_path):
    """The QAT model survives .keras save/load; qat() goes from a .keras file and an .npz to a .tflite."""
    from mcu_mot.optimize import load_keras
    from mcu_mot.optimize.qat import QuantLayer, convert_qat, qat

    model, qmodel, tfl, _ = trained
    (xtr, ytr), (xte, _) = digits
    qmodel.save(tmp_path / "q.keras")
    loaded = load_keras(tmp_path / "q.keras")
    assert np.array_equal(loaded.predict(xte[:32], verbose=0), qmodel.predict(xte[:32], verbose=0))
    fc = loaded.get_layer("fc")
    assert isinstance(fc, QuantLayer) and fc._input_quant.layer is loaded.get_layer("pw")
    assert convert_qat(loaded) == tfl

    model.save(tmp_path / "float.keras")
    np.savez(tmp_path / "data.npz", x=xtr[:256], y=ytr[:256])
    out = tmp_path / "out" / "m.tflite"
    data = qat(tmp_path / "float.keras", tmp_path / "data.npz", epochs=1, out_path=out, progress=False)
    assert out.read_bytes() == data and data[4:8] == b"TFL3"
    assert [p.name for p in out.parent.iterdir()] == ["m.tflite"]  # no temp file left behind
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # an ordinary file, not mkstemp's 0600


def test_user_errors(digits, tmp_path):
    import keras
    from keras import layers as L

    from mcu_mot.optimize.qat import qat, quantize_model, train_qat

    (xtr, ytr), _ = digits
    model = bn_relu6_cnn()
    np.savez(tmp_path / "good.npz", x=xtr[:8], y=ytr[:8])
    with pytest.raises(MotError, match="Keras model not found"):
        qat(tmp_path / "missing.keras", tmp_path / "good.npz", 1)
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    with pytest.raises(MotError, match="data file not found"):
        qat(tmp_path / "bad.keras", tmp_path / "missing.npz", 1)
    with pytest.raises(MotError, match="not a readable Keras model"):
        qat(tmp_path / "bad.keras", tmp_path / "good.npz", 1)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(MotError, match="not a readable .npy/.npz file"):
        train_qat(model, tmp_path / "bad.npz", 1)
    np.savez(tmp_path / "d.npz", images=xtr[:8], labels=ytr[:8])
    with pytest.raises(MotError, match="'x' and 'y'"):
        train_qat(model, tmp_path / "d.npz", 1)
    with pytest.raises(MotError, match="shape"):
        train_qat(model, (xtr[:8, :4], ytr[:8]), 1)
    with pytest.raises(MotError, match="samples"):
        train_qat(model, (xtr[:8], ytr[:7]), 1)
    inp = keras.Input((8, 4))
    with pytest.raises(MotError, match="'lstm'.*not supported"):
        quantize_model(keras.Model(inp, L.LSTM(4, name="lstm")(inp)))
