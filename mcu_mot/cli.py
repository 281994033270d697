"""mcu-mot command line (west / idf.py style): one subcommand per pipeline step.

Every failure a user can cause ends in one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from . import MotError, __version__


def _cmd_compile(args) -> None:
    from .codegen.compile import compile_model
    t0 = time.perf_counter()
    report = compile_model(args.model, args.output, backend=args.backend, board=args.board)
    dt = time.perf_counter() - t0
    layers = sum(1 for layer in report["layers"] if layer["kernel"])
    print(f"compiled {report['model']}: {layers} kernel calls, {report['macs']:,} MACs, "
          f"arena {report['arena_bytes']:,} B, weights {report['weights_bytes']:,} B "
          f"-> {args.output} ({dt:.2f} s)")


def _cmd_simulate(args) -> None:
    from .simulate import simulate
    results = simulate(args.model, args.input, args.output)
    n = results[0].shape[0] if results else 0
    print(f"simulated {n} input(s) on host -> {args.output}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcu-mot", description="Deploy TensorFlow/Keras models to 32-bit microcontrollers.")
    p.add_argument("--version", action="version", version=f"mcu-mot {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("compile", help="compile a .tflite model to C (model.c/.h, kernels, report.json)")
    c.add_argument("model", help="quantized .tflite model")
    c.add_argument("-o", "--output", required=True, help="output directory (written atomically)")
    c.add_argument("--backend", default="portable", help="kernel backend: portable | cmsis-nn | auto")
    c.add_argument("-b", "--board", default="host", help="target board (default: host)")
    c.set_defaults(func=_cmd_compile)

    s = sub.add_parser("simulate", help="run the generated C on the host, batch in, batch out")
    s.add_argument("model", help=".tflite model")
    s.add_argument("--input", required=True, help="x.npy of shape (N, *input_shape) in the input dtype (.npz for several inputs)")
    s.add_argument("--output", required=True, help="y.npy to write (.npz when the model has several outputs)")
    s.set_defaults(func=_cmd_simulate)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"mcu-mot: internal error: {type(exc).__name__}: {exc} (set MCU_MOT_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
