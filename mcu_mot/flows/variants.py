"""What each quantized variant of a model costs on the device: flash, arena and accuracy of the
generated C (host simulation, bit-exact with the device). Combines optimize's output with
codegen and the simulator, so it lives in the top layer."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Union

import numpy as np

from mcu_mot.codegen.compile import generate
from mcu_mot.device.simulator import load
from mcu_mot.errors import MotError
from mcu_mot.optimize.ptq import _Progress, quantize_input


def compare_variants(variants, x: np.ndarray, y: np.ndarray, progress: Union[None, bool, Callable] = None) -> list:
    """What each .tflite variant costs: weights (flash) bytes, arena bytes and accuracy.

    variants: list of paths, or of (name, path-or-bytes) pairs. x: float32 samples
    (N, *input_shape), quantized to each model's input type; y: integer labels (N,).
    Accuracy is top-1 on the host simulation of the generated C (what the device
    computes, bit for bit). Returns one dict per variant: name, weights_bytes,
    arena_bytes, macs, accuracy, input_dtype.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y).ravel()
    if len(x) != len(y):
        raise MotError(f"{len(x)} samples but {len(y)} labels")
    rows = []
    with _Progress(progress) as prog, tempfile.TemporaryDirectory(prefix="mm-variants-") as tmp:
        for k, v in enumerate(variants):
            name, src = v if isinstance(v, (tuple, list)) else (Path(v).stem, v)
            if isinstance(src, (bytes, bytearray)):
                path = Path(tmp) / f"variant{k}.tflite"
                path.write_bytes(bytes(src))
            else:
                path = Path(src)
            report = generate(path, "portable", "host").report
            model = load(path)
            spec = model.inputs[0]
            xq = quantize_input(x, spec)
            tick = prog.stage(f"evaluating {name}", len(xq))
            correct = 0
            for start in range(0, len(xq), 64):
                (out,) = model.run(xq[start : start + 64])[:1]
                correct += int(np.sum(out.reshape(len(out), -1).argmax(-1) == y[start : start + 64]))
                tick(min(start + 64, len(xq)))
            rows.append(
                {
                    "name": name,
                    "weights_bytes": int(report["weights_bytes"]),
                    "arena_bytes": int(report["arena_bytes"]),
                    "macs": int(report["macs"]),
                    "accuracy": correct / len(xq),
                    "input_dtype": spec["dtype"],
                }
            )
    return rows
