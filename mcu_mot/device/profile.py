"""Per-layer profiling over the wire: N inferences, counts per layer in the device's unit
(instructions on QEMU, cycles on hardware), JSON + an HTML page with a PNG bar chart.

The firmware's hooks telescope (each layer gets the ticks since the previous layer ended), so
the layer counts of one inference add up to its total up to the call's own return; the JSON
says so in `layers_sum` and `overhead`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcu_mot.device.client import DeviceClient, sample_shape
from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write as _atomic_write
from mcu_mot.ir.names import keras_layer_names
from mcu_mot.safetext import one_line


def random_arrays(specs, n: int, seed: int = 0) -> list[np.ndarray]:
    """n samples per input over each input's full range; specs: (shape, dtype) per input."""
    rng = np.random.default_rng(seed)
    out = []
    for shape, dtype in specs:
        shape = (n,) + tuple(sample_shape(shape))
        dt = np.dtype(dtype)
        if dt.kind == "f":
            out.append(rng.uniform(-1.0, 1.0, shape).astype(dt))
        else:
            ii = np.iinfo(dt)
            out.append(rng.integers(ii.min, int(ii.max) + 1, shape, dtype=np.int64).astype(dt))
    return out


def random_inputs(info, n: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs over each input's full range, from the device's INFO (no model file needed)."""
    return random_arrays([(spec.shape, spec.dtype) for spec in info.inputs], n, seed)


def random_inputs_for_report(report: dict, n: int, seed: int = 0) -> list[np.ndarray]:
    """The same from a compile/build report.json."""
    return random_arrays([(t["shape"], t["dtype"]) for t in report["inputs"]], n, seed)


def calibration_text(info) -> str:
    if info.unit == "instructions":
        return (
            f"QEMU -icount shift=0 (one instruction per virtual ns); the tick is calibrated at boot "
            f"to {info.unit_per_tick:g} instructions"
        )
    return f"cycle counter, {info.unit_per_tick:g} cycles per tick at {info.clock_hz / 1e6:g} MHz"


def profile(
    client: DeviceClient, *, runs: int = 10, inputs=None, board: str | None = None, seed: int = 0, progress=None
) -> dict:
    """Run `runs` inferences (inputs cycled from `inputs`, random if None); return the profile dict."""
    if runs < 1:
        raise MotError("profile needs at least one run")
    info = client.info()
    layers = client.layers()
    if inputs is None:
        inputs = random_inputs(info, min(runs, 8), seed)
    elif isinstance(inputs, np.ndarray):
        inputs = [inputs]
    inputs = [np.asarray(a) for a in inputs]
    if len(inputs) != len(info.inputs):
        raise MotError(f"the model has {len(info.inputs)} input(s), got {len(inputs)}")
    n = inputs[0].shape[0]
    if n == 0:
        raise MotError("the input batch is empty")
    totals, per_layer = [], []
    for r in range(runs):
        for k, a in enumerate(inputs):
            client.set_input(k, a[r % n])
        total, _ = client.invoke()
        ticks = client.get_profile()
        totals.append(total)
        per_layer.append(ticks)
        if progress is not None:
            progress(r + 1, runs)
    return build_profile(info, layers, totals, per_layer, board=board)


def build_profile(
    info, layers: list[dict], totals: list[int], per_layer: list[list[int]], *, board: str | None = None
) -> dict:
    """The profile dict from raw ticks (one total and one per-layer list per run)."""
    k = info.unit_per_tick
    t = np.asarray(totals, dtype=np.float64) * k
    lt = np.asarray(per_layer, dtype=np.float64).reshape(len(totals), len(layers)) * k
    mean_layers = lt.mean(axis=0) if len(layers) else np.zeros(0)
    total = float(t.mean())
    layer_sum = float(mean_layers.sum())
    macs = int(sum(layer["macs"] for layer in layers))
    rows = []
    for i, layer in enumerate(layers):
        c = float(mean_layers[i])
        rows.append(
            {
                "index": i,
                "name": layer["name"],
                "op": layer["op"],
                "count": int(round(c)),
                "macs": int(layer["macs"]),
                "count_min": int(round(lt[:, i].min())),
                "count_max": int(round(lt[:, i].max())),
                "share": round(c / total, 6) if total else 0.0,
                "macs_per_unit": round(layer["macs"] / c, 4) if c else None,
            }
        )
    return {
        "board": board or "unknown",
        "model": info.name,
        "model_hash": info.hash_hex,
        "unit": info.unit,
        "total": int(round(total)),
        "runs": len(totals),
        "total_min": int(round(float(t.min()))),
        "total_max": int(round(float(t.max()))),
        "layers_sum": int(round(layer_sum)),
        "overhead": int(round(total - layer_sum)),
        "macs": macs,
        "macs_per_unit": round(macs / total, 4) if total else None,
        "calibration": {
            "unit_per_tick": k,
            "clock_hz": info.clock_hz,
            "method": calibration_text(info),
            "resolution": f"{k:g} {info.unit} per tick",
        },
        "layers": rows,
    }


# ---- output files (atomic) ------------------------------------------------------------------


def write_json(prof: dict, path) -> None:
    _atomic_write(path, (json.dumps(prof, indent=2) + "\n").encode())


def chart_png(prof: dict) -> bytes:
    """A horizontal bar per layer (count, in the profile's unit)."""
    import matplotlib  # noqa: PLC0415  (matplotlib only when a chart is drawn)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib only when a chart is drawn)

    rows = prof["layers"]
    labels = [one_line(f"{r['index']} {r['op']} {_short(r['name'])}") for r in rows]
    counts = [r["count"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * max(1, len(rows))))
    try:
        y = np.arange(len(rows))
        ax.barh(y, counts, color="#3b78b0")
        ax.set_yticks(y, labels, fontsize=7, parse_math=False)  # names are data, not mathtext
        ax.invert_yaxis()
        ax.set_xlabel(f"{prof['unit']} per inference (mean of {prof['runs']} runs)", parse_math=False)
        ax.set_title(
            f"{prof['model']} on {prof['board']}: {prof['total']:,} {prof['unit']}", fontsize=10, parse_math=False
        )
        for yi, c in zip(y, counts):
            share = c / prof["total"] if prof["total"] else 0
            ax.text(c, yi, f" {share:.1%}", va="center", fontsize=6)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        return buf.getvalue()
    finally:
        plt.close(fig)


def _short(name: str, n: int = 40) -> str:
    name = name.split(";")[0]
    return name if len(name) <= n else "…" + name[-(n - 1) :]


def write_html(prof: dict, path) -> Path:
    """Write the HTML page (chart embedded) and the chart beside it as PATH.png; returns the PNG path."""
    path = Path(path)
    png = chart_png(prof)
    png_path = path.with_suffix(".png")
    _atomic_write(png_path, png)

    def e(s) -> str:  # names are data: markup escaped, control characters shown as \xNN
        return html.escape(one_line(s))

    rows = "\n".join(
        f"<tr><td>{r['index']}</td><td>{e(r['op'])}</td><td title='{e(r['name'])}'>{e(_short(r['name'], 60))}</td>"
        f"<td class=n>{r['count']:,}</td><td class=n>{r['share']:.1%}</td><td class=n>{r['macs']:,}</td>"
        f"<td class=n>{'' if r['macs_per_unit'] is None else format(r['macs_per_unit'], '.3f')}</td></tr>"
        for r in prof["layers"]
    )
    unit = e(prof["unit"])
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(prof["model"])} on {e(prof["board"])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} .n{{text-align:right}}</style></head><body>
<h1>{e(prof["model"])} on {e(prof["board"])}</h1>
<p><b>{prof["total"]:,} {unit}</b> per inference (mean of {prof["runs"]} runs, min {prof["total_min"]:,},
max {prof["total_max"]:,}); layers add up to {prof["layers_sum"]:,} (overhead {prof["overhead"]:,});
{prof["macs"]:,} MACs{"" if not prof["macs_per_unit"] else f", {prof['macs_per_unit']:.3f} MACs per {unit[:-1]}"}.</p>
<p>Timer: {e(prof["calibration"]["method"])}.</p>
<img alt="{unit} per layer" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<table><tr><th>#</th><th>op</th><th>name</th><th>{unit}</th><th>share</th><th>MACs</th><th>MACs/{unit[:-1]}</th></tr>
{rows}
</table></body></html>
"""
    _atomic_write(path, page.encode())
    return png_path


def print_profile(result) -> None:
    """The per-layer table of a profile result on the terminal."""
    unit = result["unit"]
    table = Table(
        title=f"{escape(one_line(result.get('board') or 'device'))}: {result['total']:,} {unit} per inference "
        f"({result['runs']} runs)"
    )
    for col in ("#", "layer", "op", unit, "%", "MACs", f"MACs/{unit[:-1] if unit.endswith('s') else unit}"):
        table.add_column(
            col,
            justify="right" if col not in ("layer", "op") else "left",
            overflow="fold",
            min_width=12 if col == "layer" else None,
        )  # wrapped, never cut
    names = keras_layer_names([one_line(layer["name"]) for layer in result["layers"]])
    for layer, name in zip(result["layers"], names):
        share = 100.0 * layer["count"] / result["total"] if result["total"] else 0.0
        rate = f"{layer['macs'] / layer['count']:.2f}" if layer["count"] and layer["macs"] else ""
        # names come from the device (or a model): text, never rich markup or terminal controls
        table.add_row(
            str(layer["index"]),
            escape(name),
            escape(one_line(layer["op"])),
            f"{layer['count']:,}",
            f"{share:.1f}",
            f"{layer['macs']:,}",
            rate,
        )
    Console(width=160).print(table)
