"""mcu-mot command line (west / idf.py style): one subcommand per pipeline step.

Every failure a user can cause ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mcu_mot.errors import MotError
from mcu_mot.optimize.tfquiet import set_verbose
from mcu_mot.version import __version__


def _cmd_compile(args) -> None:
    from mcu_mot.flows.deploy import compile_model

    t0 = time.perf_counter()
    report = compile_model(args.model, args.output, backend=args.backend, board=args.board)
    dt = time.perf_counter() - t0
    layers = sum(1 for layer in report["layers"] if layer["kernel"])
    print(
        f"compiled {report['model']}: {layers} kernel calls, {report['macs']:,} MACs, "
        f"arena {report['arena_bytes']:,} B, weights {report['weights_bytes']:,} B "
        f"-> {args.output} ({dt:.2f} s)"
    )


def _cmd_simulate(args) -> None:
    from mcu_mot.device.simulator import simulate

    results = simulate(args.model, args.input, args.output)
    n = results[0].shape[0] if results else 0
    print(f"simulated {n} input(s) on host -> {args.output}")


def _progress(description: str):
    """A rich progress bar whose update(done, total, text) fits the build/run callbacks."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[what]}"),
        TimeElapsedColumn(),
        transient=True,
    )
    task = prog.add_task(description, total=1, what="")

    def update(done, total, text=""):
        prog.update(task, completed=done, total=total, what=text)

    return prog, update


def _cmd_boards(args) -> None:
    from rich.console import Console
    from rich.table import Table

    from mcu_mot.boards import list_boards

    table = Table(title="Boards (boards/*.toml)")
    for col in ("name", "cpu", "features", "flash", "ram", "MHz", "flash via", "description"):
        table.add_column(col)
    for b in list_boards():
        r = b.summary()
        mhz = f"{r['clock_mhz']:g}" if r["clock_mhz"] != "" else ""
        table.add_row(
            r["name"], r["cpu"], r["features"], r["flash"], r["ram"], mhz, r["flash_method"], r["description"]
        )
    Console(width=160).print(table)


def _cmd_build(args) -> None:
    from mcu_mot.flows.deploy import build_firmware as build
    from mcu_mot.fwbuild import print_size_report

    out = args.output or f"build/{args.board}"
    prog, update = _progress(f"building for {args.board}")
    with prog:
        report = build(args.model, args.board, out, backend=args.backend, jobs=args.jobs, progress=update)
    ran = len(report.get("actions", []))
    print(
        f"built {out}/firmware.elf for {report['board']} ({'up to date' if ran == 0 else f'{ran} steps'}): "
        f"flash {report['flash_bytes']:,} B, RAM {report['ram_bytes']:,} B"
    )
    from mcu_mot.fwbuild.size import size_report

    print_size_report(size_report(report["elf"], report["board"]))


def _cmd_size(args) -> None:
    import json
    from pathlib import Path

    from mcu_mot.fwbuild import print_size_report, size_report

    elf = Path(args.elf)
    if elf.is_dir():
        elf = elf / "firmware.elf"
    if not elf.is_file():
        raise MotError(f"ELF file not found: {elf}")
    rep = size_report(elf, args.board)
    print_size_report(rep)
    if args.json:
        from mcu_mot.fileio import atomic_write

        atomic_write(args.json, (json.dumps(rep, indent=2) + "\n").encode())


def _cmd_flash(args) -> None:
    from mcu_mot.device.session import stop_emulator
    from mcu_mot.device.target import flash_target

    if args.stop:
        print("stopped the emulator" if stop_emulator(args.build_dir) else "no emulator was running")
        return
    target = flash_target(args.build_dir, port=args.port)
    target.launch()
    if target.kind == "qemu":
        state = target.state
        print(
            f"{target.name}: QEMU running (pid {state['pid']}), UART at {state['port']}; "
            f"stop it with: mcu-mot flash {args.build_dir} --stop"
        )
        return
    print(f"flashed {target.elf} to {target.name} ({target.flashed_with})")
    if args.port:
        with target.connect() as dev:
            dev.check_model(target.model_sha256[:8])
            print(f"{target.name} answers on {dev.port}: it runs {target.report.get('model', 'the model')}")


def _cmd_monitor(args) -> None:
    from mcu_mot.device.target import target_for
    from mcu_mot.safetext import one_line

    with target_for(args.build_dir, port=args.port).connect() as dev:
        info = dev.info()
        print(f"connected to {dev.port}")
        for key, value in info.summary().items() if hasattr(info, "summary") else vars(info).items():
            print(f"  {key}: {one_line(value, 300)}")  # the device's words are data, not terminal codes


def _load_batch(path):
    from mcu_mot.device.simulator import read_inputs

    return read_inputs(path, 1)


def _cmd_profile(args) -> None:
    from mcu_mot.device import profile as prof
    from mcu_mot.device.target import target_for

    target = target_for(args.build_dir, port=args.port).prepare()
    board = target.board.name if target.board is not None else None
    inputs = _load_batch(args.input) if args.input else None
    prog, update = _progress("profiling")
    with target.connect() as dev, prog:
        result = prof.profile(dev, runs=args.runs, inputs=inputs, board=board, progress=lambda i, n: update(i, n))
    prof.print_profile(result)
    if args.json:
        prof.write_json(result, args.json)
    if args.html:
        prof.write_html(result, args.html)


def _cmd_run(args) -> None:
    from pathlib import Path

    from mcu_mot.device import profile as prof
    from mcu_mot.device.simulator import read_inputs, write_outputs
    from mcu_mot.device.target import target_for
    from mcu_mot.flows.deploy import build_firmware as build

    arrays = read_inputs(args.input, 1)
    if args.build_dir:
        out = args.build_dir
    else:  # per-user and 0700 in the cache, never a fixed name in the shared /tmp
        from mcu_mot.safedirs import default_build_dir

        out = str(default_build_dir("run", args.model, args.board))
    prog, update = _progress(f"building for {args.board}")
    with prog:
        report = build(args.model, args.board, out, backend=args.backend, progress=update)
    prog, update = _progress(f"running on {args.board}")
    with target_for(out, port=args.port, flash=True).connect() as dev, prog:  # real boards: flashed first
        dev.check_model(report["model_sha256"][:8])
        results, profiles = dev.run(*arrays, progress=update, profile=True)
        result = prof.build_profile(
            dev.info(), dev.layers(), [p[0] for p in profiles], [p[1] for p in profiles], board=args.board
        )
    write_outputs(Path(args.output), results)
    print(
        f"ran {results[0].shape[0]} input(s) on {args.board}: {result['total']:,} {result['unit']} per inference "
        f"-> {args.output}"
    )
    if args.profile:
        prof.write_json(result, args.profile)
        print(f"profile -> {args.profile}")


def _cmd_bench(args) -> None:
    from mcu_mot.flows.bench import bench

    names = args.models or list(bench.MODELS)
    boards = args.board or list(bench.DEFAULT_BOARDS)
    backends = _split(args.backend) if args.backend != "all" else bench.available_backends()
    for be in backends:
        if be == "cmsis-nn" and "cmsis-nn" not in bench.available_backends():
            raise MotError("backend cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout")
    prog, update = _progress("bench")
    with prog:
        results = bench.run_bench(names, boards, backends, _split(args.modes), progress=update, check=not args.no_check)
    bench.print_table(results, args.layers)
    if args.json:
        bench.write_json(results, args.json)
        print(f"figures -> {args.json}")


def _split(text: str) -> list[str]:
    return [x for x in text.replace(" ", ",").split(",") if x]


def _load_npy(path, what: str):
    from mcu_mot.fileio import load_arrays

    return load_arrays(path, f"{what} file")


def _require_files(*pairs) -> None:
    """Check input files before TensorFlow is loaded: a typo costs no start-up time."""
    from pathlib import Path

    for path, what in pairs:
        if path and not Path(path).is_file():
            raise MotError(f"{what} not found: {path}")


def _cmd_optimize(args) -> None:
    _require_files((args.model, "Keras model"), (args.calib, "calibration data"), (args.qat, "QAT data"))
    from mcu_mot.optimize.tfquiet import import_tensorflow

    import_tensorflow()
    if args.qat:
        if args.exclude or args.int16 or args.quant not in (None, "int8"):
            raise MotError("--qat produces an int8 model; it does not combine with --exclude/--int16/--quant")
        from mcu_mot.optimize.qat import qat

        data = qat(args.model, args.qat, epochs=args.epochs, out_path=args.output, io_float=args.io == "float")
    else:
        from mcu_mot.optimize.ptq import load_keras, quantize, read_calibration, save_tflite

        mode = args.quant or "int8"
        model = load_keras(args.model)
        calib = read_calibration(args.calib, model) if args.calib else None
        if calib is None and mode != "dynamic":
            raise MotError(f"--quant {mode} needs calibration data: --calib DATA.npy (or use --quant dynamic)")
        data = quantize(model, mode, calib, io=args.io, exclude=args.exclude, int16=args.int16)
        save_tflite(data, args.output)
    print(f"wrote {args.output} ({len(data):,} bytes)")


def _cmd_debug(args) -> None:
    _require_files(
        (args.model, "Keras model"),
        (args.tflite, "model file"),
        (args.calib, "calibration data"),
        (args.labels, "labels"),
    )
    from mcu_mot.optimize.tfquiet import import_tensorflow

    import_tensorflow()
    from mcu_mot.flows.debug import debug, print_table, write_json
    from mcu_mot.optimize.report_html import write_html

    calib = _load_npy(args.calib, "calibration")
    labels = _load_npy(args.labels, "labels") if args.labels else None
    prog, update = _progress("debugging" + (f" on {args.board}" if args.board else " on host"))
    with prog:
        result = debug(
            args.model,
            args.tflite,
            calib,
            labels=labels,
            board=args.board,
            port=args.port,
            max_samples=args.max_samples,
            progress=update,
        )
    print_table(result, top=args.top)
    if args.json:
        write_json(result, args.json)
    if args.html:
        write_html(result, args.html)


BACKEND_HELP = (
    "kernel backend: auto (default; per layer the faster of portable and CMSIS-NN, measured on QEMU, "
    "when CMSIS_NN_PATH is set, else portable) | portable | cmsis-nn (needs CMSIS_NN_PATH)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mcu-mot", description="Deploy TensorFlow/Keras models to 32-bit microcontrollers."
    )
    p.add_argument("--version", action="version", version=f"mcu-mot {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("compile", help="compile a .tflite model to C (model.c/.h, kernels, report.json)")
    c.add_argument("model", help="quantized .tflite model")
    c.add_argument("-o", "--output", required=True, help="output directory (written atomically)")
    c.add_argument("--backend", default="auto", help=BACKEND_HELP)
    c.add_argument("-b", "--board", default="host", help="target board (default: host)")
    c.set_defaults(func=_cmd_compile)

    s = sub.add_parser("simulate", help="run the generated C on the host, batch in, batch out")
    s.add_argument("model", help=".tflite model")
    s.add_argument(
        "--input", required=True, help="x.npy of shape (N, *input_shape) in the input dtype (.npz for several inputs)"
    )
    s.add_argument("--output", required=True, help="y.npy to write (.npz when the model has several outputs)")
    s.set_defaults(func=_cmd_simulate)

    b = sub.add_parser("boards", help="list the boards in boards/")
    b.set_defaults(func=_cmd_boards)

    b = sub.add_parser("build", help="build a firmware image (ELF) for a board, with a size report")
    b.add_argument("model")
    b.add_argument("-b", "--board", required=True)
    b.add_argument("-o", "--output", help="build directory (default build/BOARD)")
    b.add_argument("--backend", default="auto", help=BACKEND_HELP)
    b.add_argument("-j", "--jobs", type=int, default=2)
    b.set_defaults(func=_cmd_build)

    z = sub.add_parser("size", help="flash and RAM of a firmware ELF, split into weights/kernels/runtime/arena/stack")
    z.add_argument("elf", help="firmware.elf or its build directory")
    z.add_argument("-b", "--board", help="board, to check the memory regions")
    z.add_argument("--json")
    z.set_defaults(func=_cmd_size)

    f = sub.add_parser("flash", help="flash a build (emulated boards: start QEMU in the background)")
    f.add_argument("build_dir")
    f.add_argument(
        "--port",
        help="real boards: after flashing (the board file's flash tool), check that the device "
        "answers on this port with the build's model (emulated boards: QEMU's own port)",
    )
    f.add_argument("--stop", action="store_true", help="stop the emulator started for this build")
    f.set_defaults(func=_cmd_flash)

    m = sub.add_parser("monitor", help="connect to a device and show what it runs")
    m.add_argument("build_dir", nargs="?")
    m.add_argument("--port")
    m.set_defaults(func=_cmd_monitor)

    pr = sub.add_parser("profile", help="per-layer instructions/cycles over N runs")
    pr.add_argument("build_dir", nargs="?")
    pr.add_argument("--port")
    pr.add_argument("--input", help="x.npy batch (default: random inputs)")
    pr.add_argument("--runs", type=int, default=10)
    pr.add_argument("--json")
    pr.add_argument("--html")
    pr.set_defaults(func=_cmd_profile)

    o = sub.add_parser("optimize", help="quantize a Keras model: PTQ int8/int16x8/dynamic, selective, mixed, QAT")
    o.add_argument("model", help="the float .keras model")
    o.add_argument("--quant", choices=["int8", "int16x8", "dynamic"], help="default int8")
    o.add_argument("--calib", help="float calibration samples (N, *input_shape) .npy")
    o.add_argument("--io", choices=["int", "float"], help="model input/output type (default int; dynamic: float)")
    o.add_argument("--exclude", help="regex of Keras layer names kept in float32")
    o.add_argument("--int16", help="regex of Keras layer names run in int16x8 inside an int8 model")
    o.add_argument("--qat", metavar="DATA.npz", help="quantization-aware training on DATA.npz (arrays x, y)")
    o.add_argument("--epochs", type=int, default=3)
    o.add_argument("-o", "--output", required=True)
    o.set_defaults(func=_cmd_optimize)

    d = sub.add_parser("debug", help="per-layer quantization error of a .tflite against its float Keras model")
    d.add_argument("model", help="the float .keras model")
    d.add_argument("tflite", help="its quantized .tflite")
    d.add_argument("--calib", required=True, help="float samples (N, *input_shape) .npy")
    d.add_argument(
        "--labels", help="labels .npy: adds float vs quantized accuracy and what excluding layers gives back"
    )
    d.add_argument("-b", "--board", help="read every layer's output from this (emulated) board instead of the host")
    d.add_argument("--port", help="with -b: a device that already runs this model's firmware")
    d.add_argument("--max-samples", type=int, help="use this many samples for the per-layer statistics")
    d.add_argument("--top", type=int, help="show only the worst N layers")
    d.add_argument("--json")
    d.add_argument("--html")
    d.set_defaults(func=_cmd_debug)

    r = sub.add_parser("run", help="build + flash + invoke each input + read back")
    r.add_argument("model")
    r.add_argument("-b", "--board", required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--profile", help="write the profile JSON here")
    r.add_argument("--port", help="talk to this port instead of starting QEMU (a real board is flashed first)")
    r.add_argument("--build-dir")
    r.add_argument("--backend", default="auto", help=BACKEND_HELP)
    r.set_defaults(func=_cmd_run)

    be = sub.add_parser("bench", help="instructions, MACs/instruction, RAM and flash per model, board and backend")
    be.add_argument(
        "models",
        nargs="*",
        help="ds_cnn, resnet8, mobilenet_v1_025, conv_fc_speech or .tflite paths (default: the four built-in models)",
    )
    be.add_argument("-b", "--board", action="append", help="emulated board (repeatable; default: an386 and an547)")
    be.add_argument("--backend", default="all", help="comma-separated backends, or all (default: every available)")
    be.add_argument("--modes", default="int8,int16", help="dtypes of the built-in models (default: int8,int16)")
    be.add_argument("--layers", type=int, default=3, help="show the N heaviest layers of each run (default: 3)")
    be.add_argument("--json", help="write every figure, per layer too, to this JSON file")
    be.add_argument("--no-check", action="store_true", help="skip the bit-exact check against the reference")
    be.set_defaults(func=_cmd_bench)
    p.add_argument("-v", "--verbose", action="store_true", help="show TensorFlow's and the converter's own output")
    for command in sub.choices.values():  # also after the command: `mcu-mot optimize ... -v`
        command.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show TensorFlow's and the converter's own output",
        )
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    try:
        args.func(args)
    except MotError as exc:
        print(f"mcu-mot: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mcu-mot: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, traceback on request
        if os.environ.get("MCU_MOT_DEBUG"):
            raise
        print(
            f"mcu-mot: internal error: {type(exc).__name__}: {exc} (set MCU_MOT_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
