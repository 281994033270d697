"""`mcu-mot bench`: figures for models x boards x dtypes x backends, side by side.

Built-in models (made with Keras at random weights, then converted; needs
TensorFlow once, then cached): the MLPerf Tiny architectures and a small
conv+FC speech model. A .tflite path is measured as it is.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mcu_mot.boards import load_board
from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write
from mcu_mot.flows.bench import models
from mcu_mot.flows.bench.models import MODELS
from mcu_mot.flows.bench.runner import heaviest_layers, measure
from mcu_mot.optimize.tfquiet import converter_output, import_tensorflow
from mcu_mot.safedirs import cache_subdir, load_entry, store_entry

DEFAULT_BOARDS = ("qemu-mps2-an386", "qemu-mps3-an547")
DEFAULT_MODES = ("int8", "int16")


def model_cache() -> Path:
    """cache_dir()/bench-models: per-user, 0700 (mcu_mot.safedirs)."""
    return cache_subdir("bench-models")


def _cached_model(name: str, mode: str) -> Path:
    """The built-in model `name` converted for `mode`, from the cache when its entry is whole
    (meta + sha256, see safedirs.store_entry), else made again (needs TensorFlow)."""
    folder, key = model_cache(), f"{name}_{mode}"
    found = load_entry(folder, key, ".tflite")
    if found is not None:
        return found[0]
    import_tensorflow()
    with tempfile.TemporaryDirectory(prefix=".make-", dir=folder) as tmp, converter_output():
        made = models.build_tflite(name, mode, tmp)
        data = Path(made).read_bytes()
    return store_entry(folder, key, ".tflite", data, {"model": name, "mode": mode})


def available_backends() -> list[str]:
    """portable always; cmsis-nn and auto (per layer, the cheaper of the two) when the user
    points CMSIS_NN_PATH at a checkout."""
    return ["portable"] + (["cmsis-nn", "auto"] if os.environ.get("CMSIS_NN_PATH") else [])


def resolve_models(names, modes) -> list[tuple[str, str, Path]]:
    """(label, mode, path) for each model name x mode; .tflite paths keep their own dtype."""
    out = []
    for name in names:
        if name.endswith(".tflite"):
            p = Path(name)
            if not p.is_file():
                raise MotError(f"model file not found: {p}")
            out.append((p.stem, "-", p))
            continue
        if name not in MODELS:
            raise MotError(f"unknown benchmark model '{name}' (built in: {', '.join(MODELS)}; or give a .tflite path)")
        for mode in modes:
            if mode not in DEFAULT_MODES:
                raise MotError(f"unknown mode '{mode}' (int8 or int16)")
            out.append((name, mode, _cached_model(name, mode)))
    return out


def run_bench(models, boards, backends, modes=DEFAULT_MODES, progress=None, check: bool = True) -> list[dict]:
    for board in boards:  # before any model is made: a typo costs no TensorFlow start-up
        if not load_board(board).emulated:
            raise MotError(f"bench runs on emulated boards (instructions counted by QEMU); {board} is not one")
    results = []
    jobs = [
        (label, mode, path, board, backend)
        for label, mode, path in resolve_models(models, modes)
        for board in boards
        for backend in backends
    ]
    for i, (label, mode, path, board, backend) in enumerate(jobs):
        if progress:
            progress(i, len(jobs), f"{label} {mode} {board} {backend}")
        r = measure(path, board, backend, check=check)
        r.update(model=label, mode=mode)
        results.append(r)
    if progress:
        progress(len(jobs), len(jobs), "done")
    return results


def print_table(results, layers: int = 3) -> None:
    t = Table(title="mcu-mot bench (instructions under QEMU -icount)")
    for col in (
        "model",
        "dtype",
        "board",
        "backend",
        "instructions",
        "MACs",
        "MACs/instr",
        "arena",
        "RAM",
        "flash weights",
        "flash code",
        "bit-exact",
    ):
        t.add_column(col, justify="right" if col not in ("model", "dtype", "board", "backend") else "left")
    for r in results:
        t.add_row(
            r["model"],
            r["mode"],
            r["board"],
            r["backend"],
            f"{r['instructions']:,.0f}",
            f"{r['macs']:,}",
            f"{r['macs_per_instruction']:.3f}",
            f"{r['arena_bytes']:,}",
            f"{r['ram_bytes']:,}",
            f"{r['weights_flash']:,}",
            f"{r['code_flash']:,}",
            {True: "yes", False: "NO", None: "-"}[r["bit_exact"]],
        )
    console = Console(width=200)
    console.print(t)
    if layers:
        h = Table(title=f"heaviest {layers} layers")
        for col in (
            "model",
            "dtype",
            "board",
            "backend",
            "layer",
            "op",
            "kernel",
            "shape",
            "MACs",
            "instructions",
            "MACs/instr",
        ):
            h.add_column(col)
        for r in results:
            for row in heaviest_layers(r, layers):
                h.add_row(
                    r["model"],
                    r["mode"],
                    r["board"],
                    r["backend"],
                    str(row["index"]),
                    row["op"],
                    row["kernel"],
                    "x".join(map(str, row["shape"])),
                    f"{row['macs']:,}",
                    f"{row['instructions']:,.0f}",
                    f"{row['macs_per_instruction']:.3f}" if row["macs_per_instruction"] else "-",
                )
        console.print(h)


def write_json(results, path) -> None:
    atomic_write(Path(path), (json.dumps({"results": results}, indent=1) + "\n").encode())
