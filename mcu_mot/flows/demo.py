"""The demo: train a small CNN on scikit-learn's digits (shipped with the package,
no download), quantize it to int8, compile it to C, check the C bit for bit
against the TFLite Micro interpreter on the host, then build firmware for an
emulated board, run the test set on it over its serial port and profile it."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse

import numpy as np
from rich.console import Console
from rich.progress import Progress

from mcu_mot.device import profile as prof
from mcu_mot.device.profile import print_profile
from mcu_mot.device.simulator import simulate
from mcu_mot.device.target import QemuTarget
from mcu_mot.flows.deploy import compile_model
from mcu_mot.fwbuild import build
from mcu_mot.fwbuild.size import print_size_report, size_report
from mcu_mot.optimize.ptq import quantize
from mcu_mot.optimize.tfquiet import import_tensorflow, set_verbose


def digits_dataset():
    from sklearn.datasets import load_digits  # noqa: PLC0415  (scikit-learn only for its data set)

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    split = int(0.8 * len(x))
    return (x[idx[:split]], y[idx[:split]]), (x[idx[split:]], y[idx[split:]])


def small_cnn():
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from keras import layers as L  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    # explicit names: the same in every process, whatever models were built before
    inp = keras.Input((8, 8, 1), name="input_layer")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2d")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="depthwise_conv2d")(x)
    x = L.Conv2D(24, 1, activation="relu", name="conv2d_1")(x)
    x = L.MaxPooling2D(2, name="max_pooling2d")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(10, name="dense")(x)
    return keras.Model(inp, L.Softmax(name="softmax")(x), name="digits_cnn")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="mcu-mot demo")
    ap.add_argument("-b", "--board", default="qemu-mps2-an386", help="emulated board to run on")
    ap.add_argument("-o", "--output", help="keep the work files here (default: a temporary folder)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's own output")
    args = ap.parse_args(argv)
    console = Console()
    set_verbose(args.verbose)
    import_tensorflow()
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    work = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="mcu-mot-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = digits_dataset()
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    console.print("[bold]1. training[/] a small CNN on scikit-learn digits (8x8)")
    model.fit(xtr, ytr, epochs=8, batch_size=32, verbose=2)
    float_acc = float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))

    console.print("[bold]2. quantizing[/] to int8 (post-training, per-channel)")
    tfl = work / "digits_int8.tflite"
    tfl.write_bytes(quantize(model, "int8", calib=xtr[:200], progress=False))

    console.print("[bold]3. compiling[/] to C")
    t0 = time.perf_counter()
    report = compile_model(tfl, work / "out")
    console.print(
        f"   {len(report['layers'])} layers, {report['macs']:,} MACs, arena {report['arena_bytes']:,} B, "
        f"weights {report['weights_bytes']:,} B in {time.perf_counter() - t0:.2f} s -> {work / 'out'}"
    )

    console.print("[bold]4. running[/] the generated C on the host and the TFLite Micro interpreter")
    s, z = report["inputs"][0]["scale"], report["inputs"][0]["zero_point"]
    xq = np.clip(np.round(xte / s) + z, -128, 127).astype(np.int8)
    (ours,) = simulate(tfl, xq)
    from tflite_micro.python.tflite_micro import runtime  # noqa: PLC0415  (the reference interpreter only where a check runs)

    interp = runtime.Interpreter.from_file(str(tfl))
    ref = []
    for i in range(len(xq)):
        interp.set_input(xq[i : i + 1], 0)
        interp.invoke()
        ref.append(interp.get_output(0)[0])
    ref = np.stack(ref)
    exact = bool(np.array_equal(ours, ref))
    acc = float(np.mean(ours.argmax(-1) == yte))
    console.print(f"   float accuracy {float_acc:.3f}, int8 accuracy (generated C) {acc:.3f} on {len(yte)} digits")
    console.print(
        f"   bit-exact with TFLite Micro on all {len(xq)} inputs: " + ("[green]yes[/]" if exact else "[red]NO[/]")
    )
    on_device = run_on_board(console, tfl, xq, yte, ours, args.board, work)
    return 0 if exact and on_device else 1


def run_on_board(console, tfl, xq, yte, host_out, board: str, work: Path) -> bool:
    """Build firmware, start the emulator, run every test input over the UART, profile."""

    console.print(f"[bold]5. building[/] firmware for {board} (arm-none-eabi-gcc, SCons)")
    report = build(tfl, board, work / board)
    print_size_report(size_report(report["elf"], board), console)
    console.print(f"[bold]6. running[/] {len(xq)} inputs on {board} (QEMU, serial link over TCP)")
    with QemuTarget(work / board, board=board).connect() as dev:
        with Progress(transient=True) as bar:
            task = bar.add_task("inferences", total=len(xq))
            (dev_out,), profiles = dev.run(xq, profile=True, progress=lambda i, n: bar.update(task, completed=i))
        result = prof.build_profile(
            dev.info(), dev.layers(), [p[0] for p in profiles], [p[1] for p in profiles], board=board
        )
    same = bool(np.array_equal(dev_out, host_out))
    acc = float(np.mean(dev_out.argmax(-1) == yte))
    console.print(
        f"   on-device accuracy {acc:.3f}; device outputs equal the host's (and TFLM's): "
        + ("[green]yes[/]" if same else "[red]NO[/]")
    )
    prof.write_json(result, work / "profile.json")
    html = prof.write_html(result, work / "profile.html")
    print_profile(result)
    macs = sum(layer["macs"] for layer in result["layers"])
    console.print(
        f"   {result['total']:,} {result['unit']} per inference, {macs / result['total']:.3f} MACs per "
        f"{result['unit'][:-1]}; profile: {work / 'profile.json'}, chart: {html}"
    )
    return same


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
