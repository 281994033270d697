"""Arena benchmark: mcu_mot's static plan vs TFLite Micro's planner, same models.

TFLM figures come from its RecordingMicroAllocator (print_allocations): the
'head' is its planned activation + scratch arena (comparable to ours), the
'total' adds its interpreter's persistent structures, which we do not have.

    .venv/bin/python bench/arena.py [--json arena.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np


def tflm_arena(path: Path) -> dict:
    """Run TFLM once and parse its allocation record from stderr (captured at the fd level)."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path), arena_size=8 * 1024 * 1024)
    d = interp.get_input_details(0)
    interp.set_input(np.zeros(d["shape"], d["dtype"]), 0)
    interp.invoke()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    grab = lambda key: int(re.search(rf"Arena allocation {key} (\d+) bytes", text).group(1))  # noqa: E731
    return {"head": grab("head"), "tail": grab("tail"), "total": grab("total")}


def main(argv=None) -> int:
    from mcu_mot.codegen.compile import generate
    from mcu_mot.flows.bench.bench import _cached_model
    from mcu_mot.flows.bench.models import MODELS, build_tflite
    from mcu_mot.safedirs import private_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--modes", nargs="*", default=["int8", "int16"])
    ap.add_argument("--json")
    ap.add_argument(
        "--cache", help="folder for the converted models (default: the per-user cache, as mcu-mot bench uses)"
    )
    args = ap.parse_args(argv)
    rows = []
    for name in args.models:
        for mode in args.modes:
            path = build_tflite(name, mode, private_dir(args.cache)) if args.cache else _cached_model(name, mode)
            ours = generate(path).report["arena_bytes"]
            ref = tflm_arena(path)
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "ours": ours,
                    "tflm_head": ref["head"],
                    "tflm_total": ref["total"],
                    "ratio": round(ours / ref["head"], 3),
                }
            )
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Activation arena: mcu_mot vs TFLite Micro (bytes)")
    for col in ("model", "mode", "mcu_mot arena", "TFLM planned (head)", "TFLM total", "ours/TFLM"):
        table.add_column(col, justify="right" if col not in ("model", "mode") else "left")
    for r in rows:
        table.add_row(
            r["model"], r["mode"], f"{r['ours']:,}", f"{r['tflm_head']:,}", f"{r['tflm_total']:,}", f"{r['ratio']:.2f}x"
        )
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
