"""The command line on good and bad input: one clear line, non-zero exit, no
traceback, no half-written output; the deploy path never imports TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import assert_one_line_error, convert, keras_model, save


def mm(*args, env=None):
    e = dict(os.environ, **(env or {}))
    e.pop("MCU_MOT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=e)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("cli")
    m = keras_model(lambda x: keras.layers.Dense(4)(keras.layers.Dense(6, activation="relu")(x)), (10,))
    good = save(convert(m, "int8"), d, "good")
    fl = save(convert(m, "float"), d, "float")
    import tensorflow as tf

    inp = keras.Input((8,))
    sine = keras.layers.Lambda(lambda t: tf.math.sin(t), name="my_sine")(keras.layers.Dense(8)(inp))
    sin = keras.Model(inp, keras.layers.Dense(3)(sine))
    bad_op = save(convert(sin, "float"), d, "sine")
    return {"good": good, "float": fl, "sine": bad_op, "dir": d}


def test_compile_writes_sources_and_report(models, tmp_path):
    out = tmp_path / "out"
    rc, so, se = mm("compile", models["good"], "-o", out)
    assert rc == 0, se
    report = json.loads((out / "report.json").read_text())
    for key in ("model", "backend", "board", "arena_bytes", "weights_bytes", "layers"):
        assert key in report
    assert report["arena_bytes"] > 0 and report["weights_bytes"] >= 4 * 6 + 6 * 10
    assert {"index", "name", "op", "macs", "arena_offset", "bytes"} <= set(report["layers"][0])
    assert report["macs"] == 10 * 6 + 6 * 4
    assert (out / "model.c").exists() and (out / "model.h").exists()
    assert (out / "kernels" / "mm_fully_connected.c").exists()
    # the output directory is a self-contained C library: it compiles on its own
    rc = subprocess.run(
        [
            "cc",
            "-c",
            "-std=c99",
            "-Wall",
            "-Werror",
            f"-I{out / 'kernels'}",
            str(out / "model.c"),
            "-o",
            str(tmp_path / "model.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert rc.returncode == 0, rc.stderr


def test_simulate_roundtrip_and_cache(models, tmp_path):
    x = np.random.default_rng(0).integers(-128, 128, (5, 10)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    rc, so, se = mm("simulate", models["good"], "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert rc == 0, se
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (5, 4) and y.dtype == np.int8
    cache = Path(os.environ["MCU_MOT_CACHE"]) / "host"
    libs = sorted(cache.glob("*.so"))
    stamp = [p.stat().st_mtime_ns for p in libs]
    rc, _, se = mm("simulate", models["good"], "--input", tmp_path / "x.npy", "--output", tmp_path / "y2.npy")
    assert rc == 0, se
    assert sorted(cache.glob("*.so")) == libs and [p.stat().st_mtime_ns for p in libs] == stamp
    assert np.array_equal(np.load(tmp_path / "y2.npy"), y)


def test_missing_model(tmp_path):
    rc, _, se = mm("compile", tmp_path / "nope.tflite", "-o", tmp_path / "out")
    assert_one_line_error(rc, se, "not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "fake_header"])
def test_malformed_model(models, tmp_path, kind):
    data = models["good"].read_bytes()
    blob = {
        "random": os.urandom(2000),
        "truncated": data[: len(data) // 3],
        "empty": b"",
        "fake_header": b"\x1c\x00\x00\x00TFL3" + os.urandom(500),
    }[kind]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(blob)
    rc, _, se = mm("compile", bad, "-o", tmp_path / "out")
    assert_one_line_error(rc, se, "bad.tflite")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


def test_unsupported_op_names_op_and_layer(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous build")
    rc, _, se = mm("compile", models["sine"], "-o", out)
    assert_one_line_error(rc, se, "SIN", "my_sine", "index")
    assert (out / "keep.txt").read_text() == "previous build"  # old output untouched


def test_cmsis_nn_backend_without_path(models, tmp_path):
    env = {"CMSIS_NN_PATH": ""}
    rc, _, se = mm("compile", models["good"], "-o", tmp_path / "o", "--backend", "cmsis-nn", env=env)
    assert_one_line_error(rc, se, "CMSIS_NN_PATH")


def test_float_model_on_int8_backend(models, tmp_path):
    rc, _, se = mm(
        "compile", models["float"], "-o", tmp_path / "o", "--backend", "cmsis-nn", env={"CMSIS_NN_PATH": str(tmp_path)}
    )
    assert_one_line_error(rc, se, "float32", "int8")


@pytest.mark.parametrize("bad", ["shape", "dtype", "missing", "garbage"])
def test_bad_simulate_input(models, tmp_path, bad):
    x = tmp_path / "x.npy"
    if bad == "shape":
        np.save(x, np.zeros((2, 11), np.int8))
    elif bad == "dtype":
        np.save(x, np.zeros((2, 10), np.float32))
    elif bad == "garbage":
        x.write_bytes(b"not numpy")
    y = tmp_path / "y.npy"
    rc, _, se = mm("simulate", models["good"], "--input", x, "--output", y)
    assert_one_line_error(rc, se, {"shape": "shape", "dtype": "int8", "missing": "not found", "garbage": "x.npy"}[bad])
    assert not y.exists()


def test_deploy_path_does_not_import_tensorflow(models, tmp_path):
    code = (
        "import sys; from mcu_mot.cli import main; "
        f"rc = main(['compile', r'{models['good']}', '-o', r'{tmp_path / 'o'}']); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


@pytest.mark.parametrize("bad", ["missing_model", "garbage_model", "missing_calib"])
def test_optimize_bad_input_is_one_line(tmp_path, bad):
    """TensorFlow's start-up chatter must not bury the one error line."""
    model = tmp_path / "m.keras"
    if bad == "garbage_model":
        model.write_bytes(os.urandom(300))
    calib = tmp_path / "c.npy"
    if bad != "missing_calib":
        np.save(calib, np.zeros((2, 8, 8, 1), np.float32))
    if bad == "missing_calib":
        model.write_bytes(b"PK")
    rc, _, se = mm("optimize", model, "--quant", "int8", "--calib", calib, "-o", tmp_path / "o.tflite")
    assert_one_line_error(
        rc,
        se,
        {"missing_model": "not found", "garbage_model": "m.keras", "missing_calib": "calibration data not found"}[bad],
    )
    assert not (tmp_path / "o.tflite").exists()
