"""compile: .tflite -> Graph -> passes -> lowering -> memory plan -> C sources + report.json."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import ROOT, MotError
from ..ir import read_tflite
from ..ir.passes import run_passes
from ..plan import plan_memory
from .emit import render, weights_bytes
from .inplace import overlap_lead
from .lowering import Alias, Call, LoweringContext, lower_op

KERNEL_DIR = ROOT / "firmware" / "kernels"
BACKENDS = ("portable", "cmsis-nn", "auto")
ISAS = ("plain", "dsp", "mve")   # index = MM_ISA_* level in firmware/kernels/mm_isa.h


def board_isa(board: str) -> str:
    """The kernel ISA level a board's core supports ('host' and unknown names: plain C)."""
    if board in ("host", None):
        return "plain"
    from ..build.boards import load_board
    features = set(load_board(board).features)
    return "mve" if "mve" in features else "dsp" if "dsp" in features else "plain"


@dataclass
class CompiledModel:
    files: dict          # file name -> text (model.c, model.h)
    kernel_sources: list  # Paths of the kernel .c files the model calls
    kernel_headers: list  # Paths of the kernel headers
    report: dict
    model_hash: str


def model_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate(model_path, backend: str = "portable", board: str = "host", isa: str | None = None) -> CompiledModel:
    """Everything `compile` produces, in memory.

    isa: kernel paths and weight layouts to generate for (plain, dsp, mve);
    default: what `board`'s core has. The host simulator can run plain and dsp
    (the DSP instructions emulated in C)."""
    model_path = Path(model_path)
    if backend not in BACKENDS:
        raise MotError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    isa = isa or board_isa(board)
    if isa not in ISAS:
        raise MotError(f"unknown isa '{isa}' (choose from {', '.join(ISAS)})")
    graph = read_tflite(model_path)
    digest = model_digest(model_path.read_bytes())
    run_passes(graph)
    _check_backend(graph, backend)
    ctx = LoweringContext(backend, isa)
    steps = [(op, lower_op(op, ctx)) for op in graph.ops]
    for op, low in steps:
        if isinstance(low, Call):
            low.inplace = low.inplace or overlap_lead(op, low)
    plan = plan_memory(graph.inputs, graph.outputs, [_plan_step(op, low) for op, low in steps])
    files = render(graph, steps, plan, ctx, name=graph.name, source=model_path.name,
                   model_hash=digest[:8], backend="portable", isa=ISAS.index(isa))
    headers = ["mm_math.h", "mm_isa.h"] + sorted({low.header for _, low in steps if isinstance(low, Call)})
    sources = [KERNEL_DIR / h.replace(".h", ".c") for h in headers if (KERNEL_DIR / h.replace(".h", ".c")).exists()]
    report = {
        "model": model_path.name,
        "model_sha256": digest,
        "backend": "portable",
        "backend_requested": backend,
        "board": board,
        "isa": isa,
        "arena_bytes": plan.arena_bytes,
        "weights_bytes": weights_bytes(ctx),
        "macs": sum(low.macs for _, low in steps if isinstance(low, Call)),
        "inputs": [_io(t, plan) for t in graph.inputs],
        "outputs": [_io(t, plan) for t in graph.outputs],
        "layers": [
            {"index": op.index, "name": op.name, "op": op.opcode, "tensor": op.outputs[0].index,
             "shape": list(op.outputs[0].shape), "dtype": op.outputs[0].dtype,
             "kernel": low.kernel if isinstance(low, Call) else None,
             "macs": low.macs if isinstance(low, Call) else 0,
             "arena_offset": plan.offset(op.outputs[0]), "bytes": op.outputs[0].nbytes,
             "scratch_bytes": low.scratch_bytes if isinstance(low, Call) else 0}
            for op, low in steps
        ],
    }
    return CompiledModel(files, sources, [KERNEL_DIR / h for h in headers], report, digest)


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


def _check_backend(graph, backend: str) -> None:
    if backend == "cmsis-nn":
        if not os.environ.get("CMSIS_NN_PATH"):
            raise MotError("backend cmsis-nn needs CMSIS_NN_PATH set to a CMSIS-NN checkout "
                           "(see shared third_party notes); use --backend portable")
        for op in graph.ops:
            out = op.outputs[0]
            if out.dtype == "float32" and op.opcode not in ("DEQUANTIZE",):
                raise MotError(f"backend cmsis-nn needs an int8/int16 model: op {op.opcode} at index "
                               f"{op.index} ('{op.name}') is float32; quantize it or use --backend portable")
        raise MotError("backend cmsis-nn: no op is lowered to CMSIS-NN calls yet; "
                       "use --backend portable (or auto, which picks portable)")


def compile_model(model_path, out_dir, backend: str = "portable", board: str = "host") -> dict:
    """Write OUT/model.c, model.h, kernels/ and report.json atomically; return the report."""
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
