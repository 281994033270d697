"""Backend cmsis-nn: CMSIS-NN calls bit-exact with TFLite Micro (host plain-C path, and the
DSP / MVE paths on QEMU an386 / an547), scratch sizes equal to what CMSIS-NN's own
*_get_buffer_size functions return, and only the sources the calls need compiled.

Needs a CMSIS-NN checkout: CMSIS_NN_PATH=/path/to/CMSIS-NN pytest tests/test_cmsis_nn.py
QEMU part: -m qemu."""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import harness
import numpy as np
import pytest

CMSIS = os.environ.get("CMSIS_NN_PATH", "")
pytestmark = pytest.mark.skipif(
    not CMSIS or not (Path(CMSIS) / "Include" / "arm_nnfunctions.h").is_file(),
    reason="CMSIS_NN_PATH is not set to a CMSIS-NN checkout",
)

needs_tools = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)


# ------------------------------------------------------------------ models
def _model_a(x):
    """conv 3x3 same + relu, depthwise 3x3, grouped conv, 1x1 conv, avg pool, FC, softmax."""
    import keras

    L = keras.layers
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="a_conv3")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="a_dw3")(x)
    x = L.Conv2D(12, 3, groups=3, padding="same", name="a_group")(x)
    x = L.Conv2D(16, 1, name="a_conv1")(x)
    x = L.AveragePooling2D(2, name="a_avg")(x)
    x = L.Flatten(name="a_flat")(x)
    x = L.Dense(10, name="a_fc")(x)
    return L.Softmax(name="a_softmax")(x)


def _model_b(x):
    """strided valid conv with odd channels, depthwise 5x5 s2 with multiplier 2,
    max pool, a residual ADD and a MUL. (No dilated Keras conv: the converter turns it into
    SPACE_TO_BATCH_ND + CONV_2D + BATCH_TO_SPACE_ND, whose TFLM output varies from run to run.)"""
    import keras

    L = keras.layers
    x = L.Conv2D(7, 3, strides=2, padding="valid", name="b_conv_s2")(x)
    y = L.DepthwiseConv2D(5, strides=1, padding="same", depth_multiplier=2, name="b_dw5")(x)
    z = L.Conv2D(14, 1, strides=1, name="b_conv1")(x)
    s = L.Add(name="b_add")([y, z])
    m = L.Multiply(name="b_mul")([s, z])
    m = L.Conv2D(9, 3, padding="same", activation="relu6", name="b_conv3")(m)
    return L.MaxPooling2D(3, strides=2, padding="same", name="b_max")(m)


def _model_c(x):
    """one input channel into a depthwise with multiplier 8 (MVE converts it to a conv), and a
    1xN conv on a height-1 image."""
    import keras

    L = keras.layers
    x = L.DepthwiseConv2D(3, depth_multiplier=8, padding="same", name="c_dw_one")(x)
    x = L.Conv2D(8, (1, 4), strides=(1, 2), padding="same", name="c_1xn")(x)
    return L.Conv2D(5, (1, 3), padding="valid", name="c_1xn_valid")(x)


MODELS = {"a": (_model_a, (12, 10, 3)), "b": (_model_b, (17, 13, 5)), "c": (_model_c, (1, 40, 1))}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmsis-models")
    out = {}
    for (name, (fn, shape)), mode in itertools.product(MODELS.items(), ("int8", "int16")):
        out[name, mode] = harness.save(
            harness.convert(harness.keras_model(fn, shape, seed=3), mode), d, f"{name}_{mode}"
        )
    return out


def _cmsis_layers(report):
    return {layer["op"]: layer["backend"] for layer in report["layers"] if layer["kernel"]}


# ------------------------------------------------------------------ host
@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_host_bit_exact(models, name, mode):
    from mcu_mot.codegen.compile import generate
    from mcu_mot.device.simulator import simulate

    path = models[name, mode]
    report = generate(path, "cmsis-nn", "host").report
    used = [(layer["op"], layer["backend"], layer.get("backend_note")) for layer in report["layers"] if layer["kernel"]]
    for op, backend, note in used:
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL"):
            assert backend == "cmsis-nn" or (mode == "int16" and note == "grouped int16 convolution"), (op, note)
    if mode == "int8":
        assert all(b == "cmsis-nn" for _, b, _ in used), used
    inputs = harness.random_inputs(path, 4, seed=1)
    harness._assert_same(simulate(path, inputs, backend="cmsis-nn"), harness.tflm_run(path, inputs))


def test_only_the_needed_sources_are_compiled(models):
    from mcu_mot.codegen.compile import generate

    c = generate(models["a", "int8"], "cmsis-nn", "qemu-mps2-an386")
    names = {p.name for p in c.extra_sources}
    assert {
        "arm_convolve_wrapper_s8.c",
        "arm_depthwise_conv_wrapper_s8.c",
        "arm_avgpool_s8.c",
        "arm_fully_connected_wrapper_s8.c",
        "arm_softmax_s8.c",
    } <= names
    assert not any((n.endswith("_s16.c") and "s8_s16" not in n) or "f32" in n or "lstm" in n for n in names), names
    assert len(names) < 40
    assert c.report["cmsis_nn"]["functions"] == sorted(c.report["cmsis_nn"]["functions"])


def test_compile_output_carries_the_cmsis_sources(models, tmp_path):
    from mcu_mot.codegen.compile import compile_model

    rep = compile_model(models["b", "int8"], tmp_path / "out", backend="cmsis-nn", board="qemu-mps3-an547")
    out = tmp_path / "out"
    for rel in rep["cmsis_nn"]["sources"]:
        assert (out / "cmsis-nn" / rel).is_file()
    assert (out / "cmsis-nn" / "Include" / "arm_nnfunctions.h").is_file()
    assert "arm_convolve_wrapper_s8(" in (out / "model.c").read_text()
    assert rep["backend"] == "cmsis-nn" and {layer["backend"] for layer in rep["layers"] if layer["kernel"]} == {
        "cmsis-nn"
    }


def test_float_and_uncovered_layers_stay_portable(tmp_path):
    """int16 per-channel FC and int16 softmax are not in CMSIS-NN with TFLM's semantics."""
    import keras

    from mcu_mot.codegen.compile import generate
    from mcu_mot.device.simulator import simulate

    def fn(x):
        x = keras.layers.Dense(6, name="u_fc")(x)
        return keras.layers.Softmax(name="u_sm")(x)

    path = harness.save(harness.convert(harness.keras_model(fn, (20,), seed=2), "int16"), tmp_path, "u16")
    rep = generate(path, "cmsis-nn", "host").report
    layers = [layer for layer in rep["layers"] if layer["kernel"]]
    assert all(layer["backend"] == "portable" and layer["backend_note"] for layer in layers)
    assert "cmsis_nn" in rep and rep["cmsis_nn"]["sources"] == []
    inputs = harness.random_inputs(path, 3)
    harness._assert_same(simulate(path, inputs, backend="cmsis-nn"), harness.tflm_run(path, inputs))


# ------------------------------------------------------------------ scratch sizes
class Dims(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int32), ("h", ctypes.c_int32), ("w", ctypes.c_int32), ("c", ctypes.c_int32)]


class Tile(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int32), ("h", ctypes.c_int32)]


class Act(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int32), ("max", ctypes.c_int32)]


class ConvParams(ctypes.Structure):
    _fields_ = [
        ("input_offset", ctypes.c_int32),
        ("output_offset", ctypes.c_int32),
        ("stride", Tile),
        ("padding", Tile),
        ("dilation", Tile),
        ("activation", Act),
    ]


class DwParams(ctypes.Structure):
    _fields_ = [
        ("input_offset", ctypes.c_int32),
        ("output_offset", ctypes.c_int32),
        ("ch_mult", ctypes.c_int32),
        ("stride", Tile),
        ("padding", Tile),
        ("dilation", Tile),
        ("activation", Act),
    ]


@pytest.fixture(scope="module")
def sizes_lib(tmp_path_factory):
    """CMSIS-NN's own buffer-size functions, compiled for the host (their _dsp/_mve variants
    are meant for exactly that)."""
    root = Path(CMSIS)
    files = [
        root / "Source" / d / f
        for d, f in (
            ("ConvolutionFunctions", "arm_convolve_get_buffer_sizes_s8.c"),
            ("ConvolutionFunctions", "arm_convolve_get_buffer_sizes_s16.c"),
            ("ConvolutionFunctions", "arm_depthwise_conv_get_buffer_sizes_s8.c"),
            ("ConvolutionFunctions", "arm_depthwise_conv_get_buffer_sizes_s16.c"),
            ("FullyConnectedFunctions", "arm_fully_connected_get_buffer_sizes_s8.c"),
            ("PoolingFunctions", "arm_avgpool_get_buffer_sizes_s8.c"),
            ("PoolingFunctions", "arm_avgpool_get_buffer_sizes_s16.c"),
        )
    ]
    lib = tmp_path_factory.mktemp("sizes") / "sizes.so"
    subprocess.run(
        [
            os.environ.get("CC", "cc"),
            "-O1",
            "-shared",
            "-fPIC",
            f"-I{root / 'Include'}",
            *map(str, files),
            "-o",
            str(lib),
        ],
        check=True,
    )
    return ctypes.CDLL(str(lib))


def _conv_cases():
    rng = np.random.default_rng(5)
    cases = [
        ((1, 1, 40, 8), (1, 1, 4, 8), (1, 2), (0, 1), (1, 1)),  # 1xN
        ((1, 1, 40, 3), (1, 1, 3, 3), (1, 1), (0, 0), (1, 1)),  # 1xN, stride*c not %4
        ((1, 8, 8, 16), (1, 1, 1, 16), (1, 1), (0, 0), (1, 1)),  # 1x1 fast
        ((1, 8, 8, 16), (1, 1, 1, 16), (2, 2), (0, 0), (1, 1)),
    ]  # 1x1 strided
    for _ in range(60):
        c = int(rng.integers(1, 70))
        k_h, k_w = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        h = 1 if rng.random() < 0.3 else int(rng.integers(k_h, 20))
        k_h = min(k_h, h)
        w = int(rng.integers(k_w, 30))
        s = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
        p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        d = (1, 1) if rng.random() < 0.8 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        cases.append(((1, h, w, c), (1, k_h, k_w, c), s, p, d))
    return cases


def _out_dims(inp, filt, stride, pad, dil, out_c):
    oh = (inp[1] + 2 * pad[0] - (dil[0] * (filt[1] - 1) + 1)) // stride[0] + 1
    ow = (inp[2] + 2 * pad[1] - (dil[1] * (filt[2] - 1) + 1)) // stride[1] + 1
    return (inp[0], max(oh, 1), max(ow, 1), out_c)


def test_scratch_sizes_match_cmsis_nn(sizes_lib):
    from mcu_mot.codegen.cmsis_nn import buffers

    lib = sizes_lib
    for fn in (
        "arm_convolve_wrapper_s8_get_buffer_size",
        "arm_convolve_wrapper_s16_get_buffer_size",
        "arm_depthwise_conv_wrapper_s8_get_buffer_size",
        "arm_depthwise_conv_wrapper_s16_get_buffer_size",
    ):
        for sfx in ("", "_dsp", "_mve"):
            getattr(lib, fn + sfx).restype = ctypes.c_int32
    for sfx in ("", "_dsp", "_mve"):
        getattr(lib, "arm_avgpool_s8_get_buffer_size" + sfx).restype = ctypes.c_int32
        getattr(lib, "arm_fully_connected_s8_get_buffer_size" + sfx).restype = ctypes.c_int32
    checked = 0
    for inp, filt, stride, pad, dil in _conv_cases():
        out = _out_dims(inp, filt, stride, pad, dil, 11)
        geo = dict(stride=stride, padding=pad, dilation=dil)
        cp = ConvParams(-3, 2, Tile(stride[1], stride[0]), Tile(pad[1], pad[0]), Tile(dil[1], dil[0]), Act(-128, 127))
        args = (ctypes.byref(cp), ctypes.byref(Dims(*inp)), ctypes.byref(Dims(*filt)), ctypes.byref(Dims(*out)))
        # host build = neither DSP nor MVE: the plain function is our "plain"
        for isa, sfx in (("plain", ""), ("dsp", "_dsp"), ("mve", "_mve")):
            assert buffers.convolve_wrapper_s8(isa, geo, inp, filt, out) == getattr(
                lib, "arm_convolve_wrapper_s8_get_buffer_size" + sfx
            )(*args), (isa, inp, filt, geo)
            if isa != "plain":
                assert buffers.convolve_wrapper_s16(isa, geo, inp, filt, out) == getattr(
                    lib, "arm_convolve_wrapper_s16_get_buffer_size" + sfx
                )(*args), (isa, inp, filt, geo)
        for dm in (1, 2):
            c_out = inp[3] * dm
            dfilt = (1, filt[1], filt[2], c_out)
            dout = _out_dims(inp, dfilt, stride, pad, dil, c_out)
            dw = dict(geo, ch_mult=dm)
            dp = DwParams(
                -3, 2, dm, Tile(stride[1], stride[0]), Tile(pad[1], pad[0]), Tile(dil[1], dil[0]), Act(-128, 127)
            )
            dargs = (ctypes.byref(dp), ctypes.byref(Dims(*inp)), ctypes.byref(Dims(*dfilt)), ctypes.byref(Dims(*dout)))
            for isa, sfx in (("plain", ""), ("dsp", "_dsp"), ("mve", "_mve")):
                assert buffers.depthwise_wrapper_s8(isa, dw, inp, dfilt, dout) == getattr(
                    lib, "arm_depthwise_conv_wrapper_s8_get_buffer_size" + sfx
                )(*dargs), (isa, inp, dfilt, dw)
                if isa != "plain":
                    assert buffers.depthwise_wrapper_s16(isa, dw, inp, dfilt, dout) == getattr(
                        lib, "arm_depthwise_conv_wrapper_s16_get_buffer_size" + sfx
                    )(*dargs)
            checked += 1
    for c in (1, 7, 64):
        for isa, sfx in (("plain", ""), ("dsp", "_dsp"), ("mve", "_mve")):
            assert buffers.avgpool(isa, 5, c) == getattr(lib, "arm_avgpool_s8_get_buffer_size" + sfx)(5, c)
            assert buffers.fully_connected_s8(isa, c) == getattr(lib, "arm_fully_connected_s8_get_buffer_size" + sfx)(
                ctypes.byref(Dims(30, 1, 1, c))
            )
    assert checked > 100


# ------------------------------------------------------------------ QEMU
@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_device_bit_exact(models, name, mode, board, tmp_path):
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.fwbuild import build

    path = models[name, mode]
    inputs = harness.random_inputs(path, 3, seed=4)
    report = build(path, board, tmp_path / "fw", backend="cmsis-nn")
    assert report["backend"] == "cmsis-nn"
    assert any(layer["backend"] == "cmsis-nn" for layer in report["layers"] if layer["kernel"])
    with QemuInstance(board, report["elf"]) as q, DeviceClient(q.url, timeout=10.0, retries=3) as dev:
        dev.check_model(report["model_sha256"])
        ours = dev.run(*inputs)
    harness._assert_same(ours, harness.tflm_run(path, inputs))
