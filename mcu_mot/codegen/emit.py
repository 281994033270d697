"""Render model.c / model.h from the Jinja2 templates.

No string from the model file (or its file name) reaches the C text as it is: names go
through `safetext.c_text` (string literals) / `c_comment` (comments), identifiers come from
`LoweringContext` (indices and sanitized hints), and every value a template renders is
checked by `safetext.check_c_fragment` on the way out (a MotError if one could alter the
code around it)."""

from __future__ import annotations

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mcu_mot.codegen.lowering import SCRATCH, Call
from mcu_mot.errors import MotError
from mcu_mot.ir.graph import Tensor
from mcu_mot.resources import TEMPLATES
from mcu_mot.safetext import c_comment, c_text, check_c_fragment
from mcu_mot.version import __version__

DTYPE_CODES = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "uint8": 4, "int64": 5}


def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        finalize=_checked,
    )


def _checked(value):
    """Every `{{ value }}` of a C template: numbers as they are, text only if it cannot
    open or close a comment, a string, a directive or a line splice."""
    if isinstance(value, (bool, int, float)):
        return value
    try:
        return check_c_fragment(str(value))
    except ValueError as exc:
        raise MotError(f"internal error: refusing to generate C: {exc}") from None


def format_array(values: np.ndarray, dtype: str) -> str:
    """C initializer body; floats as exact hex literals."""
    if dtype == "float32":
        items = [_hexf(v) for v in values.tolist()]
    elif dtype == "int64":
        items = [("INT64_MIN" if v == -(1 << 63) else f"{v}LL") for v in values.tolist()]
    elif dtype == "int32":
        items = [("INT32_MIN" if v == -(1 << 31) else str(v)) for v in values.tolist()]
    else:
        items = [str(v) for v in values.tolist()]
    lines = [", ".join(items[i : i + 24]) for i in range(0, len(items), 24)]
    return "    " + ",\n    ".join(lines) if lines else "    0"


def _hexf(v: float) -> str:
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return float(np.float32(v)).hex() + "f"


def pointer(tensor: Tensor, plan) -> str:
    return f"(({tensor.ctype} *)(mm_arena + {plan.offset(tensor)}u))"


def render(graph, steps, plan, ctx, *, name, source, model_hash, backend, isa: int = 0) -> dict[str, str]:
    layers, headers = [], []
    for i, (op, lowered) in enumerate(steps):
        if not isinstance(lowered, Call):
            continue
        args = []
        for a in lowered.args:
            if a is SCRATCH:
                args.append(f"(mm_arena + {plan.scratch_offset[i]}u)")
            elif isinstance(a, Tensor):
                args.append(pointer(a, plan))
            else:
                args.append(str(a))
        out = op.outputs[0]
        layers.append(
            dict(
                index=op.index,
                name=c_text(op.name),
                op=c_text(op.opcode, 48),
                comment=c_comment(op.name),
                macs=lowered.macs,
                out_offset=plan.offset(out),
                out_bytes=out.nbytes,
                code=[f"{lowered.kernel}({', '.join(args)});"],
            )
        )
        if lowered.header not in headers:
            headers.append(lowered.header)

    def io(t):
        scale, zp = t.quant.single() if t.quant is not None else (0.0, 0)
        dims = list(t.shape) or [1]
        return dict(
            name=c_text(t.name),
            dtype_code=DTYPE_CODES[t.dtype],
            rank=len(dims),
            dims=", ".join(str(d) for d in dims),
            bytes=t.nbytes,
            scale=_hexf(scale),
            zero_point=zp,
            offset=plan.offset(t),
        )

    arrays = [
        dict(
            name=a["name"], ctype=a["ctype"], count=max(1, a["values"].size), body=format_array(a["values"], a["dtype"])
        )
        for a in ctx.arrays
    ]
    common = dict(
        name=c_text(name),
        title=c_comment(name),
        version=c_text(__version__),
        source=c_comment(source),
        hash=model_hash,
        arena_bytes=plan.arena_bytes,
        inputs=[io(t) for t in graph.inputs],
        outputs=[io(t) for t in graph.outputs],
        layers=layers,
        backend=backend,
        isa=isa,
        weights_bytes=weights_bytes(ctx),
    )
    env = _env()
    return {
        "model.h": env.get_template("model.h.j2").render(**common),
        "model.c": env.get_template("model.c.j2").render(headers=headers, arrays=arrays, structs=ctx.structs, **common),
    }


def weights_bytes(ctx) -> int:
    return int(sum(a["values"].nbytes for a in ctx.arrays))
