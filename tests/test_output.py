"""What a user's terminal shows: TensorFlow and its converter stay quiet unless -v, and tables
show the Keras layer names the tensor names carry, whole."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from harness import keras_model
from rich.console import Console

NOISE = ("TensorSpec", "fully_quantize", "Saved artifact", "UserWarning", "cudart_stub", "absl::InitializeLog")


def test_keras_layer_names_from_a_retraced_model():
    from mcu_mot.ir.names import keras_layer_names

    names = [
        "digits_cnn_1/conv2d_1/Relu;digits_cnn_1/conv2d_1/BiasAdd;digits_cnn_1/conv2d_1/convolution;"
        "digits_cnn_1/conv2d_1/Squeeze1",
        "digits_cnn_1/depthwise_conv2d_1/Relu;digits_cnn_1/depthwise_conv2d_1/Squeeze1",
        "digits_cnn_1/conv2d_1_2/Relu;digits_cnn_1/conv2d_1_2/Squeeze1",
        "digits_cnn_1/max_pooling2d_1/MaxPool2d",
        "digits_cnn_1/dense_1/MatMul;digits_cnn_1/dense_1/BiasAdd",
        "StatefulPartitionedCall_1:0",
    ]
    assert keras_layer_names(names) == [
        "conv2d",
        "depthwise_conv2d",
        "conv2d_1",
        "max_pooling2d",
        "dense",
        "StatefulPartitionedCall_1:0",
    ]


def test_keras_layer_names_kept_when_not_retraced():
    from mcu_mot.ir.names import keras_layer_names

    assert keras_layer_names(["model/fc_1/MatMul", "model/fc_2/MatMul", "x"]) == ["fc_1", "fc_2", "x"]
    assert keras_layer_names(["net_1/fc_1/MatMul", "net_1/head/MatMul"]) == ["fc_1", "head"]


def test_profile_table_shows_long_names_whole():
    from mcu_mot.device.profile import print_profile

    long = "a_very_long_layer_scope_name_that_is_longer_than_the_column_" * 3
    result = {
        "unit": "instructions",
        "total": 100,
        "runs": 1,
        "board": "b",
        "layers": [{"index": 0, "name": f"m/{long}/MatMul", "op": "FULLY_CONNECTED", "count": 100, "macs": 10}],
    }
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False)
    import mcu_mot.device.profile as prof

    saved = prof.Console
    prof.Console = lambda width=None: console
    try:
        print_profile(result)
    finally:
        prof.Console = saved
    text = buf.getvalue()
    assert "…" not in text
    cells = [line.split("│")[2].strip() for line in text.splitlines() if line.count("│") > 3]
    assert "".join(cells) == long  # the layer column holds the whole name, wrapped over lines


@pytest.mark.parametrize("verbose", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_optimize_is_quiet_unless_verbose(tmp_path, verbose):
    import keras

    model = keras_model(lambda x: keras.layers.Dense(4)(keras.layers.Dense(6, activation="relu")(x)), (10,))
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(16, 10)).astype(np.float32))
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    cmd = [
        sys.executable,
        "-m",
        "mcu_mot",
        "optimize",
        str(path),
        "--quant",
        "int8",
        "--calib",
        str(tmp_path / "c.npy"),
        "-o",
        str(tmp_path / "o.tflite"),
    ] + (["-v"] if verbose else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    seen = [n for n in NOISE if n in out]
    if verbose:
        assert "TensorSpec" in out or "fully_quantize" in out, out[-2000:]
    else:
        assert seen == [], out[-2000:]
    assert (tmp_path / "o.tflite").stat().st_size > 0
