"""Measure one model on one emulated board with one backend: instructions per
inference and per layer, MACs per instruction, arena / RAM / flash, and whether
the device's outputs are bit-exact with the host reference.

The device run is real: firmware built with SCons, QEMU started, inputs sent
over the serial link, per-layer counts read back from the firmware's timer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcu_mot.boards import load_board
from mcu_mot.device.profile import build_profile, random_inputs_for_report
from mcu_mot.device.simulator import simulate
from mcu_mot.device.target import QemuTarget
from mcu_mot.errors import MotError
from mcu_mot.flows.deploy import build_firmware as build
from mcu_mot.flows.reference import have_tflm, tflm_run
from mcu_mot.safedirs import default_build_dir


def reference_outputs(model_path, inputs) -> tuple[list[np.ndarray], str]:
    """Outputs of the reference: TFLite Micro when installed, else the host simulator
    (itself tested bit-exact against TFLite Micro)."""
    if have_tflm():
        return tflm_run(model_path, inputs), "tflite-micro"
    return simulate(model_path, inputs), "host simulator"


def measure(
    model_path,
    board: str,
    backend: str = "portable",
    build_dir=None,
    *,
    n_inputs: int = 2,
    seed: int = 0,
    check: bool = True,
    progress=None,
) -> dict:
    """Build, run on the board (QEMU), profile one inference; return the figures.

    build_dir: default a per-user folder in the cache (cache_dir()/build/bench/..., 0700)."""
    model_path = Path(model_path)
    b = load_board(board)
    if not b.emulated:
        raise MotError(f"bench runs on emulated boards (instruction counts); {board} is not one")
    if build_dir is None:
        build_dir = default_build_dir("bench", model_path, board, backend)
    build_dir = Path(build_dir)
    report = build(model_path, board, build_dir, backend=backend, progress=progress)
    inputs = random_inputs_for_report(report, n_inputs, seed)
    with QemuTarget(build_dir, board=b).connect(timeout=10.0, retries=3) as dev:
        dev.check_model(report["model_sha256"])
        results, profiles = dev.run(*inputs, profile=True)
        prof = build_profile(dev.info(), dev.layers(), [p[0] for p in profiles], [p[1] for p in profiles], board=board)
    exact, ref_name = None, None
    if check:
        ref, ref_name = reference_outputs(model_path, inputs)
        exact = all(np.array_equal(a, r.reshape(a.shape)) for a, r in zip(results, ref))
    flash = report["flash"]
    code = sum(v for k, v in flash.items() if k != "weights")
    total = prof["total"]
    macs = report["macs"]
    kernels = [layer for layer in report["layers"] if layer["kernel"]]
    layers = []
    for row, layer in zip(prof["layers"], kernels):
        layers.append(
            {
                "index": layer["index"],
                "name": layer["name"],
                "op": layer["op"],
                "kernel": layer["kernel"],
                "backend": layer.get("backend", report.get("backend")),
                "shape": layer["shape"],
                "macs": layer["macs"],
                "instructions": row["count"],
                "macs_per_instruction": (layer["macs"] / row["count"]) if row["count"] else None,
            }
        )
    return {
        "model": model_path.stem,
        "board": board,
        "backend": backend,
        "isa": report.get("isa"),
        "unit": prof["unit"],
        "instructions": total,
        "macs": macs,
        "macs_per_instruction": macs / total if total else None,
        "arena_bytes": report["arena_bytes"],
        "ram_bytes": report["ram_bytes"],
        "flash_bytes": report["flash_bytes"],
        "weights_flash": flash.get("weights", 0),
        "code_flash": code,
        "flash": flash,
        "bit_exact": exact,
        "reference": ref_name,
        "layers": layers,
    }


def heaviest_layers(result: dict, k: int = 3) -> list[dict]:
    return sorted(result["layers"], key=lambda r: -(r["instructions"] or 0))[:k]
