"""Backend selection: cmsis-nn without a checkout is a one-line error, auto without one is
all-portable (and says why), auto with one measures both backends on QEMU and picks per layer.

The first part runs everywhere (CI has no CMSIS-NN); the measured part needs CMSIS_NN_PATH,
qemu-system-arm and arm-none-eabi-gcc (-m qemu)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import numpy as np
import pytest

from mcu_mot.errors import MotError

CMSIS = os.environ.get("CMSIS_NN_PATH", "")
have_cmsis = bool(CMSIS) and (Path(CMSIS) / "Include" / "arm_nnfunctions.h").is_file()
needs_cmsis = pytest.mark.skipif(not have_cmsis, reason="CMSIS_NN_PATH is not set to a CMSIS-NN checkout")
needs_tools = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    import keras

    def fn(x):
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="au_conv")(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", name="au_dw")(x)
        x = keras.layers.Flatten(name="au_flat")(x)
        return keras.layers.Dense(4, name="au_fc")(x)

    d = tmp_path_factory.mktemp("auto")
    return harness.save(harness.convert(harness.keras_model(fn, (6, 5, 2), seed=1), "int8"), d, "small")


@pytest.fixture
def fake_checkout(tmp_path):
    """Enough of a checkout for the path check (no code is compiled from it)."""
    root = tmp_path / "cmsis-nn"
    (root / "Include").mkdir(parents=True)
    (root / "Source").mkdir()
    (root / "Include" / "arm_nnfunctions.h").write_text("/* fake */\n")
    return root


def _cli(*args, env_update=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update or {})
    return subprocess.run(
        [sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def _one_line(proc, *needles):
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------ without CMSIS-NN
def test_cmsis_nn_without_path_is_one_line(small, tmp_path, monkeypatch):
    from mcu_mot.codegen.compile import generate

    monkeypatch.delenv("CMSIS_NN_PATH", raising=False)
    with pytest.raises(MotError, match="CMSIS_NN_PATH"):
        generate(small, "cmsis-nn")
    _one_line(
        _cli("compile", small, "-o", tmp_path / "o", "--backend", "cmsis-nn", drop=("CMSIS_NN_PATH",)), "CMSIS_NN_PATH"
    )
    _one_line(
        _cli(
            "build",
            small,
            "-b",
            "qemu-mps2-an386",
            "-o",
            tmp_path / "b",
            "--backend",
            "cmsis-nn",
            drop=("CMSIS_NN_PATH",),
        ),
        "CMSIS_NN_PATH",
    )
    assert not (tmp_path / "o").exists()


def test_path_that_is_not_a_checkout_is_one_line(small, tmp_path):
    _one_line(
        _cli(
            "compile", small, "-o", tmp_path / "o", "--backend", "cmsis-nn", env_update={"CMSIS_NN_PATH": str(tmp_path)}
        ),
        "does not look like a CMSIS-NN checkout",
    )
    _one_line(
        _cli(
            "compile",
            small,
            "-o",
            tmp_path / "o",
            "--backend",
            "auto",
            "-b",
            "qemu-mps2-an386",
            env_update={"CMSIS_NN_PATH": str(tmp_path / "nowhere")},
        ),
        "CMSIS_NN_PATH",
    )


def test_auto_without_path_is_portable_and_says_why(small, tmp_path, monkeypatch):
    from mcu_mot.codegen.compile import compile_model, generate

    monkeypatch.delenv("CMSIS_NN_PATH", raising=False)
    for board in ("host", "qemu-mps2-an386"):
        rep = generate(small, "auto", board).report
        assert rep["backend"] == "auto"
        assert "CMSIS_NN_PATH" in rep["backend_choice"]["reason"]
        assert {layer["backend"] for layer in rep["layers"] if layer["kernel"]} == {"portable"}
        assert rep["backend_choice"]["layers"]["cmsis-nn"] == 0
    # the CLI default is auto: it works without CMSIS-NN, and the C is the portable one
    proc = _cli("compile", small, "-o", tmp_path / "cli", drop=("CMSIS_NN_PATH",))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert rep["backend"] == "auto" and "reason" in rep["backend_choice"]
    assert "arm_" not in (tmp_path / "cli" / "model.c").read_text()
    # Python API default stays portable
    assert compile_model(small, tmp_path / "api")["backend"] == "portable"


@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_cmsis_nn_lowerings_without_the_library(tmp_path, fake_checkout, monkeypatch, mode):
    """The cmsis-nn backend's Python lowerings (codegen/cmsis_nn/ops.py on codegen/analysis.py)
    for every layer kind it covers, at every ISA level: no CMSIS-NN sources are needed to
    generate the calls (the source lookup is stubbed; nothing is compiled)."""
    import keras

    import mcu_mot.codegen.compile as codegen_compile
    from mcu_mot.codegen.compile import generate

    monkeypatch.setenv("CMSIS_NN_PATH", str(fake_checkout))
    monkeypatch.setattr(codegen_compile, "sources_for", lambda root, funcs: [])

    def fn(x):
        x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="cl_conv")(x)
        y = keras.layers.DepthwiseConv2D(3, padding="same", name="cl_dw")(x)
        x = keras.layers.Add(name="cl_add")([x, y])
        x = keras.layers.Multiply(name="cl_mul")([x, y])
        x = keras.layers.MaxPooling2D(2, name="cl_max")(x)
        x = keras.layers.AveragePooling2D(2, padding="same", name="cl_avg")(x)
        x = keras.layers.Flatten(name="cl_flat")(x)
        return keras.layers.Dense(5, activation="softmax", name="cl_fc")(x)

    path = harness.save(harness.convert(harness.keras_model(fn, (8, 8, 3), seed=2), mode), tmp_path, mode)
    sfx = "s8" if mode == "int8" else "s16"
    want = {
        f"arm_convolve_wrapper_{sfx}",
        f"arm_depthwise_conv_wrapper_{sfx}",
        f"arm_elementwise_add_{sfx}",
        f"arm_elementwise_mul_{sfx}",
        f"arm_max_pool_{sfx}",
        f"arm_avgpool_{sfx}",
    }
    want |= {"arm_fully_connected_wrapper_s8", "arm_softmax_s8"} if mode == "int8" else set()
    for isa in ("plain", "dsp", "mve"):
        compiled = generate(path, "cmsis-nn", isa=isa)
        layers = [layer for layer in compiled.report["layers"] if layer["kernel"]]
        got = {layer["kernel"] for layer in layers if layer["backend"] == "cmsis-nn"}
        assert want <= got, (isa, sorted(got))
        assert compiled.report["cmsis_nn"]["functions"] == sorted(got)
        model_c = compiled.files["model.c"]
        for kernel in got:
            assert f"{kernel}(" in model_c
        assert "cmsis_nn_conv_params" in model_c and "cmsis_nn_per_channel_quant_params" in model_c
        # what CMSIS-NN does not cover stays on the portable kernels, with the reason in the report
        assert all(layer.get("backend_note") for layer in layers if layer["backend"] == "portable")


def test_auto_without_reference_board_is_portable(small, fake_checkout, monkeypatch):
    from mcu_mot.flows.autotune import generate_auto, reference_board

    monkeypatch.setenv("CMSIS_NN_PATH", str(fake_checkout))
    assert reference_board("host") is None
    assert reference_board("rpi-pico") is None  # Cortex-M0+: nothing emulated like it
    assert reference_board("nucleo-l4r5zi") == "qemu-mps2-an386"  # Cortex-M4
    assert reference_board("qemu-mps3-an547") == "qemu-mps3-an547"
    for board, why in (("host", "host"), ("rpi-pico", "rpi-pico")):
        rep = generate_auto(small, board).report
        assert why in rep["backend_choice"]["reason"]
        assert {layer["backend"] for layer in rep["layers"] if layer["kernel"]} == {"portable"}


def test_choose_takes_the_cheaper_covered_layer():
    from mcu_mot.flows.autotune import choose

    measured = {
        "covered": [0, 1, 3],
        "costs": {
            0: {"portable": 100, "cmsis-nn": 50},
            1: {"portable": 40, "cmsis-nn": 90},
            2: {"portable": 10, "cmsis-nn": 5},  # not lowered to CMSIS-NN: stays portable
            3: {"portable": 7, "cmsis-nn": 7},
        },
    }  # tie: portable
    assert choose(measured) == {0: "cmsis-nn", 1: "portable", 2: "portable", 3: "portable"}


def test_unknown_backend_and_choice(small):
    from mcu_mot.codegen.compile import generate

    with pytest.raises(MotError, match="unknown backend"):
        generate(small, "tflm")
    with pytest.raises(MotError, match="unknown backend choice"):
        generate(small, "auto", choices={0: "fast"})


# ------------------------------------------------------------------ with CMSIS-NN
@needs_cmsis
def test_choices_are_applied_per_layer(small):
    from mcu_mot.codegen.compile import generate

    kernels = [layer["index"] for layer in generate(small, "portable").report["layers"] if layer["kernel"]]
    choices = {i: ("cmsis-nn" if k % 2 == 0 else "portable") for k, i in enumerate(kernels)}
    rep = generate(
        small, "auto", "qemu-mps2-an386", choices=choices, costs={i: {"portable": 2, "cmsis-nn": 1} for i in kernels}
    ).report
    got = {layer["index"]: layer["backend"] for layer in rep["layers"] if layer["kernel"]}
    assert got == choices
    assert all(layer["costs"] == {"portable": 2, "cmsis-nn": 1} for layer in rep["layers"] if layer["kernel"])
    assert rep["backend_choice"]["layers"] == {
        "portable": len(kernels) // 2,
        "cmsis-nn": len(kernels) - len(kernels) // 2,
    }


@needs_cmsis
@needs_tools
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
def test_auto_measures_picks_and_caches(small, board, tmp_path, monkeypatch):
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.flows.autotune import cost_cache_path, generate_auto
    from mcu_mot.fwbuild import build

    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    report = build(small, board, tmp_path / "fw", backend="auto")
    choice = report["backend_choice"]
    assert choice["measured_on"] == board and choice["cached"] is False
    assert set(choice["totals"]) == {"portable", "cmsis-nn"}
    layers = [layer for layer in report["layers"] if layer["kernel"]]
    for layer in layers:
        c = layer["costs"]
        assert c["portable"] > 0 and c["cmsis-nn"] > 0
        if layer["backend"] == "cmsis-nn":
            assert c["cmsis-nn"] < c["portable"]
    assert any(layer["backend"] == "cmsis-nn" for layer in layers)  # CMSIS-NN wins the conv on these cores
    assert cost_cache_path(small, board, Path(CMSIS).resolve()).is_file()
    assert generate_auto(small, board).report["backend_choice"]["cached"] is True
    inputs = harness.random_inputs(small, 3, seed=2)
    with QemuInstance(board, report["elf"]) as q, DeviceClient(q.url, timeout=10.0, retries=3) as dev:
        ours = dev.run(*inputs)
    harness._assert_same(ours, harness.tflm_run(small, inputs))


@needs_cmsis
@needs_tools
@pytest.mark.qemu
def test_auto_for_a_real_board_measures_on_its_reference(small, tmp_path, monkeypatch):
    from mcu_mot.flows.autotune import generate_auto

    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    rep = generate_auto(small, "nucleo-l4r5zi").report
    assert rep["board"] == "nucleo-l4r5zi" and rep["backend_choice"]["measured_on"] == "qemu-mps2-an386"
    assert np.all([("costs" in layer) for layer in rep["layers"] if layer["kernel"]])


def test_auto_with_nothing_for_cmsis_nn_does_not_measure(tmp_path, fake_checkout, monkeypatch):
    """A float model: CMSIS-NN lowers none of it, so auto is portable without building anything."""
    import keras

    from mcu_mot.flows.autotune import generate_auto

    monkeypatch.setenv("CMSIS_NN_PATH", str(fake_checkout))
    path = harness.save(
        harness.convert(harness.keras_model(lambda x: keras.layers.Dense(3, name="fl_fc")(x), (5,), seed=0), "float"),
        tmp_path,
        "f",
    )
    rep = generate_auto(path, "qemu-mps2-an386").report
    assert "covers no layer" in rep["backend_choice"]["reason"]
    assert {layer["backend"] for layer in rep["layers"] if layer["kernel"]} == {"portable"}
