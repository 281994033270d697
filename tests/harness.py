"""Test harness: build Keras 3 models, convert them with the TF converter, and
compare mcu_mot's host simulation with the TFLite Micro reference interpreter."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

# device tests need the cross compiler and the emulator (the README's set-up installs both)
needs_qemu_tools = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed",
)


def representative(shape, lo, hi, seed=0):
    """A converter representative dataset: 16 uniform samples in [lo, hi)."""
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(16):
            yield [rng.uniform(lo, hi, (1,) + tuple(shape)).astype(np.float32)]

    return rep


def convert(model, mode: str = "int8", rep=None, seed: int = 0, io_float: bool = False) -> bytes:
    """Keras model -> .tflite bytes. mode: int8 | int16 | float."""
    import tensorflow as tf

    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]
    rng = np.random.default_rng(seed)
    if rep is None:

        def rep():
            for _ in range(16):
                yield [rng.uniform(-1, 1, (1,) + s).astype(np.float32) for s in shapes]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if mode == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if not io_float:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
        elif mode == "int16":
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            if not io_float:
                conv.inference_input_type = tf.int16
                conv.inference_output_type = tf.int16
        else:
            raise ValueError(mode)
    return conv.convert()


def save(tflite_bytes: bytes, directory, name: str = "model") -> Path:
    path = Path(directory) / f"{name}.tflite"
    path.write_bytes(tflite_bytes)
    return path


def random_inputs(path, n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Random inputs covering each input's full integer range."""
    from mcu_mot.ir import read_tflite

    g = read_tflite(path)
    rng = np.random.default_rng(seed)
    out = []
    for t in g.inputs:
        shape = (n,) + tuple(t.shape[1:])
        if t.dtype == "float32":
            out.append(rng.uniform(-1.5, 1.5, shape).astype(np.float32))
        else:
            info = np.iinfo(t.dtype)
            out.append(rng.integers(info.min, info.max + 1, shape, dtype=np.int64).astype(t.dtype))
    return out


def tflm_run(path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run each sample through the TFLite Micro interpreter (pip tflite-micro)."""
    from mcu_mot.flows.reference import tflm_run as run

    return run(path, inputs)


def assert_bit_exact(path, inputs=None, n: int = 4, seed: int = 0, isa: str = "plain"):
    """simulate(path) == TFLM(path), bit for bit (float outputs: exact too).

    isa "dsp": the Cortex-M4 kernel paths and layouts, DSP instructions emulated on the host."""
    from mcu_mot.device.simulator import simulate

    inputs = inputs if inputs is not None else random_inputs(path, n, seed)
    ours = simulate(path, inputs, isa=isa)
    ref = tflm_run(path, inputs)
    _assert_same(ours, ref)
    return ours


def device_run(path, board, inputs, build_dir, profile: bool = False):
    """Build `path` for an emulated board, run `inputs` on QEMU over the serial link.

    Returns (outputs, profile or None, build report)."""
    from mcu_mot.device import profile as PR
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.qemu import QemuInstance
    from mcu_mot.fwbuild import build

    report = build(path, board, build_dir)
    with QemuInstance(board, report["elf"]) as q, DeviceClient(q.url, timeout=5.0, retries=3) as dev:
        dev.check_model(report["model_sha256"])
        ours = dev.run(*inputs)
        prof = PR.profile(dev, runs=1, inputs=[x[:1] for x in inputs], board=board) if profile else None
    return ours, prof, report


def assert_device_bit_exact(path, board, build_dir, inputs=None, n: int = 3, seed: int = 0):
    """The firmware for `board` (its DSP/MVE kernel paths) on QEMU == TFLM, bit for bit."""
    inputs = inputs if inputs is not None else random_inputs(path, n, seed)
    ours, _, report = device_run(path, board, inputs, build_dir)
    _assert_same(ours, tflm_run(path, inputs))
    return report


def _assert_same(ours, ref):
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        b = b.reshape(a.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        if not np.array_equal(a, b):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            raise AssertionError(
                f"output {k} differs at {int((diff > 0).sum())} of {a.size} places, "
                f"max |diff| {diff.max()}\nours={a.ravel()[:16]}\nref ={b.ravel()[:16]}"
            )


def keras_model(layers_fn, input_shape, seed: int = 0):
    """Build a Keras functional model from `layers_fn(x) -> y` with seeded random weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(input_shape)
    model = keras.Model(inp, layers_fn(inp))
    rng = np.random.default_rng(seed)
    # non-trivial biases and BN statistics so zero-point corrections matter
    for w in model.weights:
        if "bias" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32))
    return model


def first_divergence(path, sample: list):
    """(layer, ours, ref) of the first layer whose output differs from TFLM's, or None."""
    from tflite_micro.python.tflite_micro import runtime

    from mcu_mot.device.simulator import load

    model = load(path)
    interp = runtime.Interpreter.from_file(str(path), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    for k, x in enumerate(sample):
        interp.set_input(x.reshape(interp.get_input_details(k)["shape"]), k)
    interp.invoke()
    for layer, ours in model.layer_outputs(*sample):
        ref = np.asarray(interp.GetTensor(layer["tensor"], 0)["tensor_data"]).reshape(ours.shape)
        if not np.array_equal(ours, ref):
            return layer, ours, ref
    return None


def litert_run(path, x):
    """The TF Lite interpreter with its reference kernels (ai-edge-litert BUILTIN_REF), sample by
    sample: the reference for ops TFLite Micro cannot run (or runs wrongly)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]
    outs = []
    for k in range(x.shape[0]):
        interp.set_tensor(i["index"], x[k : k + 1])
        interp.invoke()
        outs.append(interp.get_tensor(o["index"])[0])
    return np.stack(outs)


def assert_one_line_error(rc, err, *words, code=None):
    """A refusal as users must see it: a non-zero exit (`code` when given) and exactly one line on
    stderr naming the problem, no traceback and no internal error."""
    assert rc != 0 if code is None else rc == code, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def two_output_model(directory, name: str, seed: int) -> Path:
    """int8; input 16x16x3 (768 B: several SET_INPUT chunks); outputs a 16x16x4 map (1024 B: several
    reads) and a 6-value head: the link and protocol tests' model."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    fmap = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    head = L.Dense(6)(L.GlobalAveragePooling2D()(L.DepthwiseConv2D(3, strides=2)(fmap)))
    return save(convert(keras.Model(inp, [fmap, head]), "int8"), directory, name)
