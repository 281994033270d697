"""The per-layer quantization debugger (mcu_mot.flows.debug): a planted outlier channel is found as
the worst layer, JSON/HTML outputs, the model metric with labels, layer matching, errors, and the
device path on QEMU giving the host's numbers."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from harness import convert, keras_model, save

from mcu_mot.errors import MotError
from mcu_mot.flows.debug import debug, print_table, write_json
from mcu_mot.flows.demo import digits_dataset
from mcu_mot.optimize.report_html import write_html

N_CALIB = 120


@pytest.fixture(scope="module")
def digits():
    return digits_dataset()


def _cnn():
    import keras
    from keras import layers as L

    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="outlier")(x)
    x = L.Conv2D(16, 1, activation="relu", name="conv_c")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(10, name="dense")(x)
    return keras.Model(inp, L.Softmax(name="probs")(x), name="digits_debug")


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory):
    """(clean model, its int8 .tflite, planted model, its int8 .tflite): the planted one has one output
    channel of layer 'outlier' scaled by 1000 and the next layer's weights for it divided by 1000, so the
    float model computes the same function while that activation's range grows a thousandfold."""
    import keras

    (xtr, ytr), (xte, yte) = digits
    keras.utils.set_random_seed(0)
    clean = _cnn()
    clean.compile("adam", "sparse_categorical_crossentropy")
    clean.fit(xtr, ytr, epochs=5, batch_size=32, verbose=0)
    planted = keras.models.clone_model(clean)
    planted.set_weights(clean.get_weights())
    act = keras.Model(clean.inputs, clean.get_layer("outlier").output).predict(xtr[:200], verbose=0)
    j = int(act.reshape(-1, act.shape[-1]).max(0).argmax())  # the busiest channel
    k, b = planted.get_layer("outlier").get_weights()
    k[..., j] *= 1000.0
    b[j] *= 1000.0
    planted.get_layer("outlier").set_weights([k, b])
    k2, b2 = planted.get_layer("conv_c").get_weights()
    k2[:, :, j, :] /= 1000.0
    planted.get_layer("conv_c").set_weights([k2, b2])
    np.testing.assert_allclose(planted.predict(xte, verbose=0), clean.predict(xte, verbose=0), atol=1e-4)

    def rep():
        for i in range(100):
            yield [xtr[i : i + 1]]

    d = tmp_path_factory.mktemp("debug")
    return (
        clean,
        save(convert(clean, "int8", rep=rep), d, "clean"),
        planted,
        save(convert(planted, "int8", rep=rep), d, "planted"),
    )


@pytest.fixture(scope="module")
def planted_result(models, digits):
    _, _, planted, path = models
    (_, _), (xte, yte) = digits
    return debug(planted, path, xte[:N_CALIB], labels=yte[:N_CALIB], worst_k=1)


@pytest.fixture(scope="module")
def clean_result(models, digits):
    clean, path, _, _ = models
    return debug(clean, path, digits[1][0][:N_CALIB])


def _row(result, name):
    return next(r for r in result["layers"] if r["name"] == name)


def test_planted_outlier_is_ranked_worst(planted_result, clean_result):
    worst, second = planted_result["layers"][:2]
    assert worst["name"] == "outlier" and worst["op"] == "CONV_2D"
    assert worst["score"] > 1.5 * second["score"], [(r["name"], r["score"]) for r in planted_result["layers"]]
    # its scale covers the planted channel's range: a thousand times the clean model's
    clean = _row(clean_result, "outlier")
    assert worst["scale"] > 100 * clean["scale"] and worst["float_max"] > 100 * clean["float_max"]
    assert clean["score"] < 0.1 * worst["score"]
    # the outlier layer's end-to-end SNR still looks fine (the big channel dominates the signal), while
    # every layer after it has lost the signal: the ranking must not be by plain SNR
    assert worst["snr_db"] > 30
    assert _row(planted_result, "conv_c")["snr_db"] < 10
    assert clean_result["layers"][0]["score"] < 0.2


def test_json_keys_and_sort_order(planted_result, clean_result, tmp_path):
    for res in (planted_result, clean_result):
        p = write_json(res, tmp_path / "dbg.json")
        data = json.loads(p.read_text())
        layers = data["layers"]
        assert len(layers) == 7  # the input + 6 kernel calls (Flatten is an alias, no kernel)
        for r in layers:
            for key in (
                "name",
                "op",
                "rmse",
                "max_abs_err",
                "snr_db",
                "scale",
                "zero_point",
                "float_min",
                "float_max",
                "score",
                "local_rmse",
                "local_snr_db",
                "channel_nrmse",
                "keras_layers",
                "tensor",
                "index",
            ):
                assert key in r, key
        scores = [r["score"] for r in layers]
        assert scores == sorted(scores, reverse=True)
        assert {r["name"] for r in layers if r["op"] != "INPUT"} == {
            "conv_a",
            "outlier",
            "conv_c",
            "pool",
            "dense",
            "probs",
        }
        assert data["sorted_by"] == "score" and data["samples"] == N_CALIB and data["mode"] == "int8"
        assert data["where"] == "host" and data["unmatched"] == []
    assert "model_metric" not in json.loads((tmp_path / "dbg.json").read_text())  # clean: no labels
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no leftovers
    dense = _row(clean_result, "dense")
    assert dense["keras_layers"] == ["flat", "dense"]  # Flatten is a RESHAPE alias, recomputed with dense


def test_html_report(planted_result, tmp_path):
    import base64
    import re

    p = write_html(planted_result, tmp_path / "report.html")
    page = p.read_text()
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert m and base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    for r in planted_result["layers"]:
        assert r["name"] in page
    assert "accuracy" in page and page.index("outlier") < page.index("conv_c</td>")
    assert [q.name for q in tmp_path.iterdir()] == ["report.html"]


def test_metric_with_labels(planted_result, models, digits):
    from mcu_mot.device.simulator import simulate

    _, _, planted, path = models
    (_, _), (xte, yte) = digits
    x, y = xte[:N_CALIB], yte[:N_CALIB]
    m = planted_result["model_metric"]
    assert m["metric"] == "accuracy" and m["samples"] == N_CALIB
    assert m["float"] == pytest.approx(np.mean(planted.predict(x, verbose=0).argmax(-1) == y))
    from mcu_mot.ir import read_tflite

    s, z = read_tflite(path).inputs[0].quant.single()
    xq = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
    assert m["quantized"] == pytest.approx(np.mean(simulate(path, xq)[0].argmax(-1) == y))
    assert m["float"] > 0.85 and m["quantized"] < m["float"] - 0.3  # the outlier costs the accuracy
    if importlib.util.find_spec("mcu_mot.optimize.ptq") is None:
        assert m["exclusions"] is None and "ptq" in m["exclusions_note"]
    else:
        # the worst layer alone in float, then with the layer reading its output: only the second keeps
        # the outlier tensor out of int8, and gives the accuracy back
        alone, readers = m["exclusions"]
        assert (alone["layer"], alone["variant"], alone["exclude"]) == ("outlier", "layer", "^(outlier)$")
        assert (readers["layer"], readers["variant"], readers["exclude"]) == (
            "outlier",
            "with_readers",
            "^(outlier|conv_c)$",
        )
        assert readers["gain"] > 0.3 and readers["quantized"] > m["float"] - 0.05
        assert readers["gain"] > alone["gain"]
        assert _row(planted_result, "outlier")["readers"] == ["conv_c"]
    print_table(planted_result)


def test_matching_fused_layers_default_names_and_float_io(tmp_path, digits):
    """Default Keras names ('conv2d' is scoped 'conv2d_1', 'conv2d_1' is 'conv2d_1_2'), a Conv+BN+ReLU
    chain the converter fuses into one op, a residual add, float input/output (QUANTIZE/DEQUANTIZE)."""
    from keras import layers as L

    def net(x):
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
        y = L.Conv2D(8, 3, padding="same")(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU()(y)
        z = L.Conv2D(8, 1)(x)
        x = L.Add()([y, z])
        x = L.GlobalAveragePooling2D()(x)
        return L.Dense(10)(x)

    model = keras_model(net, (8, 8, 1))
    xtr = digits[0][0]
    path = save(convert(model, "int8", rep=lambda: ([xtr[i : i + 1]] for i in range(50)), io_float=True), tmp_path)
    res = debug(model, path, digits[1][0][:16])
    names = {layer.name for layer in model.layers}
    by_index = {r["index"]: r for r in res["layers"]}
    ops = [(r["op"], r["name"], r["keras_layers"]) for _, r in sorted(by_index.items())]
    conv = sorted(n for n in names if n.startswith("conv2d"))  # conv2d, conv2d_1, conv2d_2 (numbering may vary)
    bn = next(n for n in names if n.startswith("batch_norm"))
    relu = next(n for n in names if n.startswith("re_lu"))
    inp = model.layers[0].name
    assert ops[0] == ("QUANTIZE", inp, [inp])
    assert ops[1] == ("CONV_2D", conv[0], [conv[0]])
    assert ("CONV_2D", relu, [conv[1], bn, relu]) in ops
    assert ("CONV_2D", conv[2], [conv[2]]) in ops
    assert [o[0] for o in ops][-3:] == ["ADD", "MEAN", "FULLY_CONNECTED"]
    assert res["unmatched"] == [] and res["mode"] == "int8"
    # every layer here is quantized sensibly: end-to-end SNR well above 20 dB
    assert min(r["snr_db"] for r in res["layers"]) > 20


@pytest.mark.skipif(importlib.util.find_spec("mcu_mot.optimize.ptq") is None, reason="needs mcu_mot.optimize.ptq")
def test_selective_and_mixed_models(digits, tmp_path):
    """Float layers (--exclude) and int16 layers in an int8 model (--int16): the QUANTIZE ops at the
    borders are rows of their own (requantization error), not charged to the layer reading them."""
    from keras import layers as L

    from mcu_mot.optimize.ptq import quantize

    def net(x):
        x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
        x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
        x = L.GlobalAveragePooling2D(name="gap")(x)
        return L.Dense(10, name="d")(x)

    model = keras_model(net, (8, 8, 1))
    (xtr, _), (xte, _) = digits
    p = tmp_path / "m.tflite"
    p.write_bytes(quantize(model, "int8", xtr[:64], exclude="c2", progress=False))
    sel = debug(model, p, xte[:16])
    p.write_bytes(quantize(model, "int8", xtr[:64], int16="c2", progress=False))
    mixed = debug(model, p, xte[:16])
    for res in (sel, mixed):
        assert res["unmatched"] == [] and res["mode"].startswith("mixed")
    assert _row(sel, "c2")["dtype"] == "float32" and _row(sel, "c2")["score"] < 1e-4
    assert _row(sel, "c2")["scale"] is None
    req = _row(sel, "c2 (float32->int8)")
    assert req["op"] == "QUANTIZE" and req["requantizes"] == "c2" and req["score"] > 1e-3
    assert _row(mixed, "c2")["dtype"] == "int16"
    assert {r["name"] for r in mixed["layers"] if r["op"] == "QUANTIZE"} == {"c1 (int8->int16)", "c2 (int16->int8)"}
    # int16 requantization of an int8 tensor loses nothing; int16 -> int8 does
    assert _row(mixed, "c1 (int8->int16)")["score"] < 0.1 * _row(mixed, "c2 (int16->int8)")["score"]


def test_bad_inputs_are_one_line_errors(models, digits, tmp_path):
    clean, path, _, _ = models
    x = digits[1][0][:8]
    with pytest.raises(MotError, match=r"shape \(N, 8, 8, 1\)"):
        debug(clean, path, x[..., 0])
    with pytest.raises(MotError, match="must be float"):
        debug(clean, path, (x * 16).astype(np.int8))
    with pytest.raises(MotError, match="labels must have one entry per calibration sample"):
        debug(clean, path, x, labels=np.zeros(3, np.int64))
    with pytest.raises(MotError, match="not found"):
        debug(clean, tmp_path / "missing.tflite", x)
    with pytest.raises(MotError, match="Keras model not found"):
        debug(tmp_path / "missing.keras", path, x)
    with pytest.raises(MotError, match="is not emulated: flash the firmware"):
        debug(clean, path, x, board="stm32f746g-disco")
    with pytest.raises(MotError, match="unknown board"):
        debug(clean, path, x, board="no-such-board")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(MotError, match="not a readable Keras model") as e:
        debug(tmp_path / "bad.keras", path, x)
    assert "\n" not in str(e.value)


def test_keras_file_and_progress(models, digits, tmp_path):
    clean, path, _, _ = models
    clean.save(tmp_path / "clean.keras")
    np.save(tmp_path / "calib.npy", digits[1][0][:40])
    calls = []
    res = debug(
        tmp_path / "clean.keras",
        path,
        tmp_path / "calib.npy",
        batch_size=16,
        max_samples=33,
        progress=lambda d, t, s="": calls.append((d, t)),
    )
    assert res["model"] == "clean" and res["samples"] == 33
    assert (33, 33) in calls and (16, 33) in calls
    assert res["layers"][0]["name"] == _row(res, res["layers"][0]["name"])["name"]


needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)


@pytest.mark.qemu
@needs_qemu
def test_device_numbers_equal_host(models, digits, tmp_path):
    """Every intermediate tensor read from the board (QEMU, serial link, INVOKE + GET_TENSOR per layer)
    gives the same statistics as the host run of the same generated C."""
    _, _, planted, path = models
    (_, _), (xte, yte) = digits
    x, y = xte[:4], yte[:4]
    host = debug(planted, path, x, labels=y, exclusions=False)
    dev = debug(planted, path, x, labels=y, board="qemu-mps2-an386", exclusions=False, build_dir=tmp_path / "b")
    assert dev["where"] == "qemu-mps2-an386" and dev["model_metric"]["where"] == "qemu-mps2-an386"
    assert dev["layers"][0]["name"] == "outlier"
    assert dev["layers"] == host["layers"]
    assert dev["model_metric"]["quantized"] == host["model_metric"]["quantized"]
