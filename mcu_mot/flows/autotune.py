"""Backend auto: choose portable or CMSIS-NN per layer from MEASURED costs.

With CMSIS_NN_PATH set, the model is built twice for an emulated board with the
target's core (Board.reference_board: the board itself when it is emulated, else the
emulated board its file flags as the reference for that core), once all-portable and
once all-cmsis-nn; one inference of each runs on QEMU with per-layer profiling
(instructions, -icount), and every layer takes
the backend that cost fewer instructions (a tie keeps portable). The
measurement is cached in <cache>/costs/<model sha[:16]>-<board>-<fingerprint>.json
(fingerprint: mcu_mot's code generator and kernels, and the CMSIS-NN checkout),
so the next build of the same model costs nothing extra. The cache and the two build
folders (<cache>/build/autotune/<that name>/<backend>) are per-user and 0700
(mcu_mot.safedirs); a damaged or foreign cost file is measured again.

Without CMSIS_NN_PATH, or for a core with no emulated reference (and for the
host), auto is all-portable and the report says why (report["backend_choice"]).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mcu_mot.boards import load_board
from mcu_mot.codegen.cmsis_nn import cmsis_nn_path
from mcu_mot.codegen.compile import codegen_fingerprint, generate, model_digest
from mcu_mot.device.profile import build_profile, random_inputs_for_report
from mcu_mot.device.target import QemuTarget
from mcu_mot.errors import MotError
from mcu_mot.fwbuild import build
from mcu_mot.safedirs import cache_root, cache_subdir, ensure_build_dir, read_own_file, safe_name, write_cache_file

BACKENDS = ("portable", "cmsis-nn")


def reference_board(board) -> str | None:
    """The emulated board costs are measured on for `board` (None: no emulated core like it):
    the board model's Board.reference_board."""
    if board in (None, "host"):
        return None
    return load_board(board).reference_board


def fingerprint(cmsis_root: Path) -> str:
    """What the costs depend on besides the model and the board."""
    h = hashlib.sha256(codegen_fingerprint().encode())
    h.update(str(cmsis_root).encode())
    for name in ("Include/arm_nnfunctions.h", "Include/arm_nnsupportfunctions.h"):
        p = cmsis_root / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cost_cache_path(model_path, board: str, cmsis_root: Path) -> Path:
    sha = model_digest(Path(model_path).read_bytes())[:16]
    return cache_subdir("costs") / f"{sha}-{safe_name(board)}-{fingerprint(cmsis_root)}.json"


def _read_costs(path: Path) -> dict | None:
    """The cached measurement at `path` when it is whole and for this key (its file name), else None."""
    raw = read_own_file(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("key") != path.stem:
            return None
        costs = {int(k): v for k, v in data["costs"].items()}
        counts = [n for c in costs.values() for n in c.values()] + list(data["totals"].values())
        if (
            not costs
            or not all(isinstance(c.get("portable"), (int, float)) for c in costs.values())
            or not all(isinstance(n, (int, float)) for n in counts)
            or not all(isinstance(i, int) for i in data["covered"])
            or not isinstance(data["unit"], str)
        ):
            return None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # a damaged cache file is measured again
    data["costs"] = costs
    return data


def profile_layers(model_path, board: str, backend: str, build_dir, progress=None) -> dict:
    """Build `model_path` with one backend, run one inference on QEMU, and return
    {layer index: (instructions, backend that layer used)} and the total."""
    report = build(model_path, board, build_dir, backend=backend, progress=progress)
    inputs = random_inputs_for_report(report, 1)
    with QemuTarget(build_dir, board=board).connect(timeout=10.0, retries=3) as dev:
        dev.check_model(report["model_sha256"])
        _, profiles = dev.run(*inputs, profile=True)
        prof = build_profile(dev.info(), dev.layers(), [p[0] for p in profiles], [p[1] for p in profiles], board=board)
    kernels = [layer for layer in report["layers"] if layer["kernel"]]
    if len(kernels) != len(prof["layers"]):
        raise MotError(
            f"profile of {Path(model_path).name} on {board} has {len(prof['layers'])} layers, the build {len(kernels)}"
        )
    return {
        "total": prof["total"],
        "unit": prof["unit"],
        "layers": {layer["index"]: (row["count"], layer["backend"]) for layer, row in zip(kernels, prof["layers"])},
    }


def measure_costs(model_path, board: str, cmsis_root: Path, progress=None, refresh: bool = False) -> dict:
    """Per-layer instructions of the all-portable and the all-cmsis-nn builds on `board`
    (an emulated board), from the cache when it has them.

    Returns {"board", "unit", "totals": {backend: n}, "costs": {index: {backend: n}},
    "covered": [indices CMSIS-NN lowered], "cached": bool}."""
    path = cost_cache_path(model_path, board, cmsis_root)
    data = None if refresh else _read_costs(path)
    if data is not None:
        data["cached"] = True
        return data
    say = progress or (lambda *a: None)
    runs = {}
    for i, backend in enumerate(BACKENDS):
        say(i, len(BACKENDS), f"measuring {backend} on {board}")
        build_dir = ensure_build_dir(cache_root() / "build" / "autotune" / path.stem / backend)
        runs[backend] = profile_layers(model_path, board, backend, build_dir)
    say(len(BACKENDS), len(BACKENDS), "measured")
    indices = sorted(runs["portable"]["layers"])
    costs = {i: {b: runs[b]["layers"][i][0] for b in BACKENDS if i in runs[b]["layers"]} for i in indices}
    covered = [i for i in indices if runs["cmsis-nn"]["layers"].get(i, (0, "portable"))[1] == "cmsis-nn"]
    data = {
        "key": path.stem,
        "model": Path(model_path).name,
        "board": board,
        "unit": runs["portable"]["unit"],
        "totals": {b: runs[b]["total"] for b in BACKENDS},
        "costs": costs,
        "covered": covered,
    }
    write_cache_file(path, (json.dumps(data, indent=1) + "\n").encode())
    data["cached"] = False
    return data


def choose(measured: dict) -> dict:
    """{layer index: backend}: CMSIS-NN where it lowered the layer and cost fewer instructions."""
    covered = set(measured["covered"])
    out = {}
    for i, c in measured["costs"].items():
        cm = c.get("cmsis-nn")
        out[i] = "cmsis-nn" if i in covered and cm is not None and cm < c["portable"] else "portable"
    return out


def generate_auto(model_path, board: str = "host", progress=None):
    """codegen.generate for backend auto: measured per-layer choices when CMSIS_NN_PATH is set
    and the board's core has an emulated reference, else all-portable with the reason."""
    root = cmsis_nn_path(required=False)
    if root is None:
        return generate(model_path, "auto", board)
    ref = reference_board(board)
    if ref is None:
        why = (
            "the host has no core to measure on"
            if board in (None, "host")
            else f"no emulated reference board for the core of {board}"
        )
        return generate(model_path, "auto", board, choice={"reason": f"{why}: every layer uses the portable kernels"})
    try:  # nothing to measure when CMSIS-NN would lower no layer (float models, unsupported ops)
        trial = generate(model_path, "cmsis-nn", ref).report
        covered = any(layer["backend"] == "cmsis-nn" for layer in trial["layers"] if layer["kernel"])
    except MotError:
        covered = False
    if not covered:
        return generate(
            model_path,
            "auto",
            board,
            choice={"reason": "CMSIS-NN covers no layer of this model: every layer uses the portable kernels"},
        )
    measured = measure_costs(model_path, ref, root, progress=progress)
    choices = choose(measured)
    estimate = sum(c[choices[i]] for i, c in measured["costs"].items())
    summary = {
        "measured_on": ref,
        "unit": measured["unit"],
        "cached": measured["cached"],
        "totals": measured["totals"],
        "estimate": estimate,
        "rule": "per layer, the backend with fewer measured instructions (tie: portable)",
    }
    return generate(model_path, "auto", board, choices=choices, costs=measured["costs"], choice=summary)
