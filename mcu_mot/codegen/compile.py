"""compile: .tflite -> Graph -> passes -> lowering -> memory plan -> C sources + report.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mcu_mot.boards import load_board
from mcu_mot.codegen import cmsis_nn
from mcu_mot.codegen import ops as _ops  # noqa: F401  (importing the lowerings registers them)
from mcu_mot.codegen.cmsis_nn.sources import sources_for
from mcu_mot.codegen.emit import render, weights_bytes
from mcu_mot.codegen.inplace import overlap_lead
from mcu_mot.codegen.lowering import Alias, Call, LoweringContext, lower_op
from mcu_mot.errors import MotError
from mcu_mot.ir import read_tflite
from mcu_mot.ir.passes import run_passes
from mcu_mot.plan import plan_memory
from mcu_mot.resources import KERNELS, PACKAGE, TEMPLATES
from mcu_mot.version import __version__

KERNEL_DIR = KERNELS
BACKENDS = ("portable", "cmsis-nn", "auto")
ISAS = ("plain", "dsp", "mve")  # index = MM_ISA_* level in firmware/kernels/mm_isa.h


def board_isa(board) -> str:
    """The kernel ISA level a board's core supports (the board model's Board.isa; 'host': plain C)."""
    if board in ("host", None):
        return "plain"
    return load_board(board).isa


@dataclass
class CompiledModel:
    files: dict  # file name -> text (model.c, model.h)
    kernel_sources: list  # Paths of the kernel .c files the model calls
    kernel_headers: list  # Paths of the kernel headers
    report: dict
    model_hash: str
    # third-party code the calls need (cmsis-nn backend): .c files and include directories
    extra_sources: list = field(default_factory=list)
    include_dirs: list = field(default_factory=list)
    extra_root: Path | None = None  # the checkout extra_sources/include_dirs live in


def model_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate(
    model_path,
    backend: str = "portable",
    board: str = "host",
    isa: str | None = None,
    choices: dict | None = None,
    costs: dict | None = None,
    choice: dict | None = None,
) -> CompiledModel:
    """Everything `compile` produces, in memory.

    isa: kernel paths and weight layouts to generate for (plain, dsp, mve);
    default: what `board`'s core has. The host simulator can run plain and dsp
    (the DSP instructions emulated in C).

    backend: portable (our kernels), cmsis-nn (every layer CMSIS-NN covers goes to
    CMSIS-NN, the rest stays portable; needs CMSIS_NN_PATH) or auto (per layer from
    `choices`: {layer index: "portable" | "cmsis-nn"}; without choices all portable).
    The measuring behind auto lives in mcu_mot.flows.autotune; `costs` ({layer index:
    {backend: instructions}}) and `choice` (a summary) only go into the report."""
    model_path = Path(model_path)
    if backend not in BACKENDS:
        raise MotError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    isa = isa or board_isa(board)
    if isa not in ISAS:
        raise MotError(f"unknown isa '{isa}' (choose from {', '.join(ISAS)})")
    graph = read_tflite(model_path)
    digest = model_digest(model_path.read_bytes())
    run_passes(graph)
    cmsis_root = _check_backend(graph, backend)
    choices = {int(k): v for k, v in (choices or {}).items()}
    costs = {int(k): v for k, v in (costs or {}).items()}
    if backend == "auto" and cmsis_root is None and "cmsis-nn" in choices.values():
        raise MotError("backend auto: layer choices name cmsis-nn but CMSIS_NN_PATH is not set")
    ctx = LoweringContext(backend, isa)
    steps, used, notes = [], {}, {}
    for op in graph.ops:
        want = (
            "cmsis-nn"
            if backend == "cmsis-nn"
            else choices.get(op.index, "portable")
            if backend == "auto"
            else "portable"
        )
        if want not in ("portable", "cmsis-nn"):
            raise MotError(f"layer {op.index}: unknown backend choice '{want}'")
        low = None
        if want == "cmsis-nn":
            low, notes[op.index] = _lower_cmsis(op, ctx)
        if low is None:
            low = lower_op(op, ctx)
            used[op.index] = "portable"
        else:
            used[op.index] = "cmsis-nn"
        steps.append((op, low))
    for op, low in steps:
        if isinstance(low, Call):
            low.inplace = low.inplace or overlap_lead(op, low)
    ctx.prune([low for _, low in steps])
    plan = plan_memory(graph.inputs, graph.outputs, [_plan_step(op, low) for op, low in steps])
    _bind_scratch_contexts(steps, plan, ctx)
    files = render(
        graph,
        steps,
        plan,
        ctx,
        name=graph.name,
        source=model_path.name,
        model_hash=digest[:8],
        backend=backend,
        isa=ISAS.index(isa),
    )
    calls = [low for _, low in steps if isinstance(low, Call)]
    headers = ["mm_math.h", "mm_isa.h"] + sorted({c.header for c in calls if not cmsis_nn.is_cmsis_call(c)})
    sources = [KERNEL_DIR / h.replace(".h", ".c") for h in headers if (KERNEL_DIR / h.replace(".h", ".c")).exists()]
    cmsis_funcs = sorted({c.kernel for c in calls if cmsis_nn.is_cmsis_call(c)})
    extra_sources, include_dirs = [], []
    if cmsis_funcs:
        extra_sources = sources_for(cmsis_root, cmsis_funcs)
        include_dirs = [cmsis_root / "Include"]
    kernel_layers = [op.index for op, low in steps if isinstance(low, Call)]
    report = {
        "model": model_path.name,
        "model_sha256": digest,
        "mcu_mot_version": __version__,
        "backend": backend,
        "board": board,
        "isa": isa,
        "arena_bytes": plan.arena_bytes,
        "weights_bytes": weights_bytes(ctx),
        "macs": sum(low.macs for _, low in steps if isinstance(low, Call)),
        "inputs": [_io(t, plan) for t in graph.inputs],
        "outputs": [_io(t, plan) for t in graph.outputs],
        "layers": [_layer(op, low, plan, used, notes, costs) for op, low in steps],
    }
    if cmsis_funcs or backend == "cmsis-nn":
        report["cmsis_nn"] = {
            "path": str(cmsis_root),
            "functions": cmsis_funcs,
            "sources": [str(p.relative_to(cmsis_root)) for p in extra_sources],
        }
    if backend == "auto":
        summary = dict(choice or {})
        if cmsis_root is None:
            summary.setdefault("reason", "CMSIS_NN_PATH is not set: every layer uses the portable kernels")
        elif not choices:
            summary.setdefault("reason", "no measured layer choices: every layer uses the portable kernels")
        summary["layers"] = {b: sum(1 for i in kernel_layers if used[i] == b) for b in ("portable", "cmsis-nn")}
        report["backend_choice"] = summary
    # a kernel's one-source-for-every-type body (mm_<kernel>.inc) goes with its header
    incs = [s.with_suffix(".inc") for s in sources if s.with_suffix(".inc").is_file()]
    return CompiledModel(
        files,
        sources,
        [KERNEL_DIR / h for h in headers] + incs,
        report,
        digest,
        extra_sources=extra_sources,
        include_dirs=include_dirs,
        extra_root=cmsis_root,
    )


def _layer(op, low, plan, used, notes, costs) -> dict:
    is_call = isinstance(low, Call)
    d = {
        "index": op.index,
        "name": op.name,
        "op": op.opcode,
        "tensor": op.outputs[0].index,
        "shape": list(op.outputs[0].shape),
        "dtype": op.outputs[0].dtype,
        "kernel": low.kernel if is_call else None,
        "backend": used[op.index] if is_call else None,
        "macs": low.macs if is_call else 0,
        "arena_offset": plan.offset(op.outputs[0]),
        "bytes": op.outputs[0].nbytes,
        "scratch_bytes": low.scratch_bytes if is_call else 0,
    }
    if is_call and notes.get(op.index):
        d["backend_note"] = notes[op.index]
    if is_call and op.index in costs:
        d["costs"] = costs[op.index]
    return d


def _lower_cmsis(op, ctx):
    """(Call, None) from the cmsis-nn lowerings, or (None, why) with ctx untouched."""
    saved = {k: (v.copy() if isinstance(v, (list, dict, set)) else v) for k, v in vars(ctx).items()}
    try:
        return cmsis_nn.lower(op, ctx), None
    except cmsis_nn.NotCovered as exc:
        ctx.__dict__.clear()
        ctx.__dict__.update(saved)
        return None, str(exc)


def _bind_scratch_contexts(steps, plan, ctx) -> None:
    """CMSIS-NN calls take their scratch through a cmsis_nn_context: now that the plan
    has placed the scratch, emit that context as static const data."""
    for i, (op, low) in enumerate(steps):
        if not isinstance(low, Call):
            continue
        for k, a in enumerate(low.args):
            if isinstance(a, cmsis_nn.ScratchContext):
                low.args[k] = ctx.struct(
                    f"{op.name}_ctx",
                    "cmsis_nn_context",
                    dict(buf=f"(void *)(mm_arena + {plan.scratch_offset[i]}u)", size=a.size),
                )


def _io(t, plan):
    d = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "arena_offset": plan.offset(t)}
    if t.quant is not None:
        d["scale"], d["zero_point"] = t.quant.single()
    return d


def _plan_step(op, low):
    if isinstance(low, Alias):
        return ([], [], 0, None, (low.source, low.view))
    inplace = None
    if low.inplace is not None:
        i, o = low.inplace[:2]
        inplace = (op.inputs[i], op.outputs[o]) + tuple(low.inplace[2:])
    return (low.reads, low.writes, low.scratch_bytes, inplace, None)


def _check_backend(graph, backend: str):
    """The CMSIS-NN checkout the backend uses (None for portable, and for auto without
    CMSIS_NN_PATH). cmsis-nn without CMSIS_NN_PATH, or a path that is not a checkout, is
    a one-line MotError."""
    if backend == "portable":
        return None
    if backend == "cmsis-nn" and os.environ.get("CMSIS_NN_PATH", "").strip():
        compute = [op for op in graph.ops if op.opcode not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE")]
        if compute and all(op.outputs[0].dtype == "float32" for op in compute):
            op = compute[0]
            raise MotError(
                f"backend cmsis-nn needs an int8/int16 model: every layer is float32 (first: "
                f"{op.opcode} at index {op.index}, '{op.name}'); quantize it or use --backend portable"
            )
    return cmsis_nn.cmsis_nn_path(required=(backend == "cmsis-nn"))


def compile_model(model_path, out_dir, backend: str = "portable", board: str = "host") -> dict:
    """Write OUT/model.c, model.h, kernels/ and report.json atomically; return the report.

    backend portable or cmsis-nn; the measured choice (auto) lives in mcu_mot.flows.deploy."""
    if backend == "auto":
        raise MotError("backend auto is measured on a board: call mcu_mot.flows.deploy.compile_model")
    compiled = generate(model_path, backend, board)
    write_output_dir(Path(out_dir), compiled)
    return compiled.report


def write_output_dir(out: Path, compiled: CompiledModel) -> None:
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for fname, text in compiled.files.items():
            (tmp / fname).write_text(text)
        kdir = tmp / "kernels"
        kdir.mkdir()
        for p in compiled.kernel_headers + compiled.kernel_sources:
            shutil.copy2(p, kdir / p.name)
        if compiled.extra_sources:  # the CMSIS-NN files the model needs, with their layout
            root = compiled.extra_root
            for p in list(compiled.extra_sources) + sorted((root / "Include").rglob("*.h")):
                dest = tmp / "cmsis-nn" / p.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest)
        (tmp / "report.json").write_text(json.dumps(compiled.report, indent=2) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def codegen_fingerprint() -> str:
    """Digest of everything that shapes the generated code (package, templates, kernels)."""
    h = hashlib.sha256()
    for folder, pattern in ((PACKAGE, "*.py"), (TEMPLATES, "*"), (KERNELS, "*")):
        for p in sorted(folder.rglob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(p.name.encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]
