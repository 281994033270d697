"""Post-training quantization: Keras model -> .tflite bytes.

Modes:
- "int8": full-integer, per-channel int8 weights, int8 activations, int8 model
  input/output (io="int", the default) or float input/output (io="float");
- "int16x8": 16-bit activations, 8-bit weights, 64-bit bias (int16 or float io);
- "dynamic": dynamic range, int8 weights with float activations, no calibration
  data; the converter leaves small layers (< 1024 weights) in float.

Selective quantization (`exclude=REGEX`) keeps the Keras layers whose whole
name matches in float32, with QUANTIZE/DEQUANTIZE at the borders (the MLIR
quantizer's node deny-list for int8, a splice of the float conversion for
int16x8 and dynamic). Mixed precision (`int16=REGEX`, int8 mode) runs the
matching layers in int16x8 and the rest in int8: the int16x8 conversion's
ops are spliced into the int8 model with requantizing QUANTIZE ops at the
borders (mixed.py). Both need a Functional or Sequential model (selective.py).

Calibration: a float32 array (N, *input_shape) (a list of arrays for several
inputs); the converter pulls the samples one by one, with a progress bar.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write, load_arrays
from mcu_mot.optimize import mixed, selective
from mcu_mot.optimize.keras_io import load_keras
from mcu_mot.optimize.tfquiet import converter_output

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = ("int8", "int16x8", "dynamic")
IO = ("int", "float")


# ------------------------------------------------------------------ inputs
def input_shapes(model) -> list:
    """Per-sample input shapes of a Keras model (None for free dimensions)."""
    return [tuple(None if d is None else int(d) for d in t.shape[1:]) for t in model.inputs]


def read_calibration(path, model):
    """Calibration batch from .npy (one input) or .npz (one array per input, in input order
    or keyed by input name), checked against the model: float32 (N, *input_shape)."""
    data = load_arrays(path, "calibration data")
    if isinstance(data, dict):
        names = [t.name for t in model.inputs] if hasattr(model, "inputs") else []
        arrays = [data[n] for n in names] if names and all(n in data for n in names) else list(data.values())
        return check_calibration(arrays if len(arrays) > 1 else arrays[0], model, str(path))
    return check_calibration(data, model, str(path))


def check_calibration(calib, model, what: str = "calibration data"):
    """Validate and convert calibration data to float32; returns an array or a list of arrays."""
    shapes = input_shapes(model)
    arrays = list(calib) if isinstance(calib, (list, tuple)) else [calib]
    if len(arrays) != len(shapes):
        raise MotError(f"{what}: the model has {len(shapes)} input(s), got {len(arrays)} array(s)")
    out = []
    for k, (a, shape) in enumerate(zip(arrays, shapes)):
        a = np.asarray(a)
        label = f"{what}" + (f" (input {k})" if len(shapes) > 1 else "")
        if a.dtype.kind not in "fiu":
            raise MotError(f"{label}: expected numbers, got dtype {a.dtype}")
        want = "(N, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"
        if a.ndim != len(shape) + 1 or any(d is not None and d != s for d, s in zip(shape, a.shape[1:])):
            raise MotError(f"{label}: shape {tuple(a.shape)} does not match the model input {want}")
        if a.shape[0] == 0:
            raise MotError(f"{label}: no samples")
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise MotError(f"{label}: contains NaN or infinite values")
        out.append(a)
    if len({a.shape[0] for a in out}) > 1:
        raise MotError(f"{what}: the inputs have different numbers of samples")
    return out if len(out) > 1 else out[0]


# ------------------------------------------------------------------ progress
class _Progress:
    """progress=None: a rich bar on stderr; False: silent; callable(stage, done, total): yours."""

    def __init__(self, spec):
        self.spec = spec
        self.bar = None

    def __enter__(self):
        if self.spec is None:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def stage(self, label: str, total: int) -> Callable[[int], None]:
        if self.bar is not None:
            task = self.bar.add_task(label, total=total)
            return lambda done: self.bar.update(task, completed=done)
        if callable(self.spec):
            return lambda done: self.spec(label, done, total)
        return lambda done: None


def _dataset(calib, tick):
    arrays = calib if isinstance(calib, list) else [calib]
    n = arrays[0].shape[0]

    def gen():
        for i in range(n):
            yield [a[i : i + 1] for a in arrays]
            tick(i + 1)

    return gen


# ------------------------------------------------------------------ converter
def _converter(model):
    import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    return tf.lite.TFLiteConverter.from_keras_model(model)


def _run(conv, what: str) -> bytes:
    out = converter_output()
    try:
        with out:
            return conv.convert()
    except MotError:
        raise
    except Exception as exc:
        lines = [ln.strip() for ln in (str(exc) + "\n" + out.text).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        raise MotError(f"TF converter failed ({what}): {type(exc).__name__}: {detail[:300]}") from None


def _convert(
    model, mode: str, calib=None, io: str = "int", progress: Optional[_Progress] = None, label: str = ""
) -> bytes:
    """One run of the stock converter: float | int8 | int16x8 | dynamic."""
    import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    conv = _converter(model)
    if mode == "float":
        return _run(conv, "float")
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "dynamic":
        return _run(conv, "dynamic range")
    n = (calib[0] if isinstance(calib, list) else calib).shape[0]
    conv.representative_dataset = _dataset(calib, progress.stage(label or f"calibrating ({mode})", n))
    if mode == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io == "int":
            conv.inference_input_type = conv.inference_output_type = tf.int8
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if io == "int":
            conv.inference_input_type = conv.inference_output_type = tf.int16
    return _run(conv, mode)


def _int8_denylisted(model, calib, io: str, tok, layers: list, progress: _Progress) -> bytes:
    """int8 PTQ keeping the ops of `layers` in float32: the converter calibrates, the MLIR
    quantizer quantizes with those ops (named by their output tensors) deny-listed."""
    import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from tensorflow.lite.python import convert as tf_convert  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    n = (calib[0] if isinstance(calib, list) else calib).shape[0]
    conv.representative_dataset = _dataset(calib, progress.stage("calibrating (int8)", n))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv._experimental_calibrate_only = True
    calibrated = _run(conv, "int8 calibration")
    cal_t = mixed.read_model(calibrated)
    sel = selective.check_coverage(selective.op_layers(cal_t, tok), layers, "--exclude")
    sg = cal_t.subgraphs[0]
    deny = [sg.tensors[int(sg.operators[i].outputs[0])].name.decode() for i in sorted(sel)]
    io_type = tf.int8 if io == "int" else tf.float32
    try:
        with converter_output():
            return bytes(
                tf_convert.mlir_quantize(
                    calibrated, input_data_type=io_type, output_data_type=io_type, denylisted_nodes=list(deny)
                )
            )
    except Exception as exc:
        raise MotError(
            f"TF quantizer failed (int8 with float layers): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
        ) from None


# ------------------------------------------------------------------ API
def quantize(
    model_or_path,
    mode: str = "int8",
    calib=None,
    io: Optional[str] = None,
    exclude: Optional[str] = None,
    int16: Optional[str] = None,
    progress: Union[None, bool, Callable] = None,
) -> bytes:
    """Quantize a Keras model (or a .keras path); returns the .tflite bytes.

    mode: "int8" | "int16x8" | "dynamic"; calib: float32 (N, *input_shape) (list for
    several inputs), required for int8/int16x8; io: "int" (default for int8/int16x8)
    or "float" (model input/output stay float; the only choice for dynamic);
    exclude: regex of Keras layer names kept in float32; int16: regex of layers run in
    int16x8 inside an int8 model; progress: None (rich bar), False, or
    callable(stage, done, total).
    """
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    model = model_or_path if isinstance(model_or_path, keras.Model) else load_keras(model_or_path)
    if mode not in MODES:
        raise MotError(f"unknown quantization mode '{mode}' (choose from {', '.join(MODES)})")
    if io is None:
        io = "float" if mode == "dynamic" else "int"
    if io not in IO:
        raise MotError(f"io must be 'int' or 'float', got '{io}'")
    if mode == "dynamic" and io != "float":
        raise MotError("dynamic-range quantization keeps float inputs and outputs (io='float')")
    if int16 is not None and mode != "int8":
        raise MotError(f"--int16 picks int16x8 layers inside an int8 model; it does not apply to --quant {mode}")
    if mode != "dynamic":
        if calib is None:
            raise MotError(f"{mode} quantization needs calibration data (--calib DATA.npy)")
        calib = check_calibration(calib, model)

    excl = selective.match_layers(model, exclude, "--exclude") if exclude is not None else []
    wide = selective.match_layers(model, int16, "--int16") if int16 is not None else []
    both = sorted(set(excl) & set(wide))
    if both:
        raise MotError(f"layers matched by both --exclude and --int16: {', '.join(both)}")
    tok = selective.tokenize(model) if (excl or wide) else None
    target = tok.model if tok is not None else model

    with _Progress(progress) as prog:
        if not excl and not wide:
            return _convert(target, mode, calib, io, prog)

        float_donor = None
        if mode == "int8" and excl:
            base = _int8_denylisted(target, calib, io, tok, excl, prog)
        else:
            base = _convert(target, mode, calib, io, prog)
            if excl:
                float_donor = _convert(target, "float")
        model_t = None
        if float_donor is not None:
            sel = selective.check_coverage(selective.op_layers(mixed.read_model(base), tok), excl, "--exclude")
            model_t = mixed.splice(base, float_donor, sel, "float32")
            base = mixed.write_model(model_t)
        if wide:
            donor = _convert(target, "int16x8", calib, "int", prog, label="calibrating (int16x8 layers)")
            base_t = mixed.read_model(base)
            sel = selective.check_coverage(selective.op_layers(base_t, tok), wide, "--int16")
            model_t = mixed.splice(base, donor, sel, "int16x8")
        if model_t is None:
            model_t = mixed.read_model(base)
        selective.restore_names(model_t, tok)
        return mixed.write_model(model_t)


def save_tflite(data: bytes, path) -> Path:
    """Write .tflite bytes atomically (temporary file in the same folder, then rename)."""
    return atomic_write(path, data)


# ------------------------------------------------------------------ costs


def quantize_input(x: np.ndarray, spec: dict) -> np.ndarray:
    """Float samples in the model input's dtype, rounded as TFLM rounds."""
    dtype = np.dtype(spec["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32)
    s, z = spec["scale"], spec["zero_point"]
    v = x.astype(np.float64) / s
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + z  # round half away from zero, as TFLM
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)
