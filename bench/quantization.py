"""Quantization variants on scikit-learn digits, measured on an emulated board:
float / PTQ int8 / PTQ int16x8 / selective (one layer float) / mixed int16 / QAT.
Accuracy is the device's (the whole test set over the serial link), with flash,
arena and instructions per inference from the same build.

    .venv/bin/python bench/quantization.py [-b qemu-mps2-an386] [--json q.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np


def quantize_input(x, spec):
    if spec.dtype == np.float32 or str(spec.dtype) == "float32":
        return x.astype(np.float32)
    q = np.round(x / spec.scale) + spec.zero_point
    info = np.iinfo(spec.dtype)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def on_device(tfl: Path, board: str, x, y, work: Path) -> dict:
    from mcu_mot.device.target import QemuTarget
    from mcu_mot.fwbuild import build

    report = build(tfl, board, work / tfl.stem)
    with QemuTarget(work / tfl.stem, board=board).connect() as dev:
        spec = dev.info().inputs[0]
        (out,), profiles = dev.run(quantize_input(x, spec), profile=True)
        unit = dev.info().unit_per_tick
    acc = float(np.mean(out.reshape(len(y), -1).argmax(-1) == y))
    return {
        "accuracy": acc,
        "flash_bytes": report["flash_bytes"],
        "weights_bytes": report["flash"]["weights"],
        "arena_bytes": report["arena_bytes"],
        "instructions": int(np.mean([p[0] for p in profiles]) * unit),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-b", "--board", default="qemu-mps2-an386")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import keras

    from mcu_mot.flows.demo import digits_dataset, small_cnn
    from mcu_mot.optimize.ptq import quantize
    from mcu_mot.optimize.qat import convert_qat, train_qat

    work = Path(tempfile.mkdtemp(prefix="mm-quant-bench-"))
    (xtr, ytr), (xte, yte) = digits_dataset()
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xtr, ytr, epochs=args.epochs, batch_size=32, verbose=0)
    calib = xtr[:200]
    import tensorflow as tf

    variants = {
        "float32 (our float kernels)": tf.lite.TFLiteConverter.from_keras_model(model).convert(),
        "PTQ int8": quantize(model, "int8", calib, progress=False),
        "PTQ int16x8": quantize(model, "int16x8", calib, progress=False),
        "selective (dense float)": quantize(model, "int8", calib, exclude="dense", progress=False),
        "mixed (conv2d_1 int16)": quantize(model, "int8", calib, int16="conv2d_1", progress=False),
        "dynamic range": quantize(model, "dynamic", progress=False),
    }
    qat_model = train_qat(model, (xtr, ytr), epochs=2, progress=False)
    variants["QAT int8"] = convert_qat(qat_model)
    rows = [
        {"variant": "float (Keras, host)", "accuracy": float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))}
    ]
    for name, data in variants.items():
        tfl = work / (name.split()[0].replace("(", "") + f"_{len(rows)}.tflite")
        tfl.write_bytes(data)
        rows.append({"variant": name, **on_device(tfl, args.board, xte, yte, work)})
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"digits ({len(yte)} test images) on {args.board}: accuracy measured on the device")
    for col in ("variant", "accuracy", "flash B", "weights B", "arena B", "instructions"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in rows:
        t.add_row(
            r["variant"],
            f"{r['accuracy']:.4f}",
            *(f"{r[k]:,}" if k in r else "" for k in ("flash_bytes", "weights_bytes", "arena_bytes", "instructions")),
        )
    Console(width=140).print(t)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
