"""`mcu-mot bench`: real figures from a real emulated board (instructions per inference and
per layer, MACs/instruction, flash split, bit-exact check), and one-line errors on bad input."""

import json
import os
import subprocess
import sys

import pytest
from harness import convert, keras_model, needs_qemu_tools, save

needs_tools = needs_qemu_tools


def mm(*args, env=None):
    e = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=e, timeout=600
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    import keras

    L = keras.layers
    m = keras_model(
        lambda x: L.Dense(4, name="bench_fc")(
            L.Flatten(name="bench_flat")(L.Conv2D(8, 3, activation="relu", name="bench_conv")(x))
        ),
        (8, 6, 3),
    )
    return save(convert(m, "int8"), tmp_path_factory.mktemp("bench"), "bench_small")


@needs_tools
@pytest.mark.qemu
def test_bench_measures_a_model_on_qemu(small, tmp_path):
    rc, out, err = mm("bench", small, "-b", "qemu-mps2-an386", "--backend", "portable", "--json", tmp_path / "b.json")
    assert rc == 0, err
    assert "bench_small" in out and "MACs/instr" in out
    (r,) = json.loads((tmp_path / "b.json").read_text())["results"]
    assert r["board"] == "qemu-mps2-an386" and r["backend"] == "portable" and r["isa"] == "dsp"
    assert r["unit"] == "instructions" and r["bit_exact"] is True and r["reference"] == "tflite-micro"
    assert r["macs"] == 6 * 4 * 8 * 27 + 6 * 4 * 8 * 4
    assert [layer["op"] for layer in r["layers"]] == ["CONV_2D", "FULLY_CONNECTED"]
    assert abs(sum(layer["instructions"] for layer in r["layers"]) - r["instructions"]) <= 0.02 * r["instructions"]
    assert r["macs_per_instruction"] == pytest.approx(r["macs"] / r["instructions"])
    assert r["weights_flash"] > 0 and r["code_flash"] > 0
    assert r["flash_bytes"] >= r["weights_flash"] + r["code_flash"] - 64


@pytest.mark.parametrize(
    "args,needle",
    [
        (["no_such_model"], "unknown benchmark model 'no_such_model'"),
        (["missing.tflite"], "model file not found"),
        (["ds_cnn", "--modes", "int4"], "unknown mode 'int4'"),
        (["ds_cnn", "-b", "stm32f746g-disco", "--modes", "int8"], "is not one"),
    ],
)
def test_bench_bad_input_is_one_line(args, needle, tmp_path):
    rc, out, err = mm("bench", *args, env={"MCU_MOT_CACHE": str(tmp_path)})
    assert rc != 0
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_bench_cmsis_nn_without_a_checkout_is_one_line(small):
    env = {k: v for k, v in os.environ.items() if k != "CMSIS_NN_PATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_mot", "bench", str(small), "--backend", "cmsis-nn"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0 and "CMSIS_NN_PATH" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
