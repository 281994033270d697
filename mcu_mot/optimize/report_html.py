"""HTML report of the quantization debugger: a per-layer error plot (PNG, embedded) and the table."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from mcu_mot.fileio import atomic_write  # noqa: F401  (debug.py writes its JSON with it)
from mcu_mot.safetext import one_line


def _finite(v, default=0.0):
    return default if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def error_plot_png(result: dict, highlight: int = 3) -> bytes:
    """Two panels in graph order: each layer's own error (score, bars; the worst in red) and the
    end-to-end SNR against the float model (line)."""
    import matplotlib  # noqa: PLC0415  (matplotlib only when a chart is drawn)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  (matplotlib only when a chart is drawn)

    rows = sorted(result["layers"], key=lambda r: r["index"])
    worst = {id(r) for r in result["layers"][:highlight]}
    labels = [one_line(f"{r['index']} {r['op']} {r['name']}", 48) for r in rows]
    scores = [_finite(r["score"]) for r in rows]
    snr = [r["snr_db"] if r["snr_db"] is not None and math.isfinite(r["snr_db"]) else float("nan") for r in rows]
    x = list(range(len(rows)))
    width = max(7.0, 0.45 * len(rows) + 2)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(width, 6.5), sharex=True)
    try:
        a1.bar(x, scores, color=["#c0392b" if id(r) in worst else "#3b78b0" for r in rows])
        a1.set_ylabel("own error\n(channel NRMSE)")
        a1.set_title(
            f"{result['tflite']} vs {result['model']}: per-layer quantization error "
            f"({result['samples']} samples, {result.get('where', 'host')})",
            fontsize=10,
            parse_math=False,
        )  # names are data: a "$" must not start mathtext
        for xi, s in zip(x, scores):
            a1.text(xi, s, f"{s:.3g}", ha="center", va="bottom", fontsize=6)
        a2.plot(x, snr, marker="o", color="#2c7a3f")
        a2.set_ylabel("SNR vs float\nmodel (dB)")
        a2.grid(alpha=0.3)
        a2.set_xticks(x, labels, rotation=60, ha="right", fontsize=7, parse_math=False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    finally:
        plt.close(fig)


def _f(v, fmt=".4g") -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt) if isinstance(v, (int, float)) else html.escape(str(v))


def _gain(x: dict) -> str:
    if x.get("gain") is None:
        return "not measured: " + html.escape(x.get("error", ""))
    return f"{x['gain']:+.4f}"


def render_html(result: dict, png: bytes) -> str:
    def e(s) -> str:  # names are data: markup escaped, control characters shown as \xNN
        return html.escape(one_line(s))

    head = (
        "#",
        "layer",
        "op",
        "score",
        "local RMSE",
        "local SNR dB",
        "RMSE",
        "max |err|",
        "SNR dB",
        "NRMSE",
        "scale",
        "zero point",
        "float min",
        "float max",
        "clipped",
        "fused Keras layers",
    )
    body = []
    for rank, r in enumerate(result["layers"]):
        cls = " class=bad" if rank < 3 else ""
        snr = "exact" if r["snr_db"] is None else _f(r["snr_db"], ".1f")
        lsnr = (
            ""
            if "local_rmse" not in r
            else ("exact" if r.get("local_snr_db") is None else _f(r["local_snr_db"], ".1f"))
        )
        clipped = "" if r.get("clipped") is None else f"{r['clipped']:.2%}"
        cells = [
            r["index"],
            e(r["name"]),
            e(r["op"]),
            _f(r["score"]),
            _f(r.get("local_rmse")),
            lsnr,
            _f(r["rmse"]),
            _f(r["max_abs_err"]),
            snr,
            _f(r["nrmse"]),
            _f(r["scale"]),
            _f(r["zero_point"]),
            _f(r["float_min"]),
            _f(r["float_max"]),
            clipped,
            e(", ".join(r.get("keras_layers", []))),
        ]
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    metric = ""
    m = result.get("model_metric")
    if m:
        metric = (
            f"<h2>Model metric</h2><p>{e(m['metric'])} on {m['samples']} samples: float "
            f"<b>{_f(m['float'])}</b>, quantized <b>{_f(m['quantized'])}</b> "
            f"(quantized model run on {e(str(m.get('where', 'host')))}).</p>"
        )
        ex = m.get("exclusions")
        if ex:
            metric += (
                "<table><tr><th>worst layer</th><th>kept in float</th><th>--exclude</th><th>"
                + e(m["metric"])
                + "</th><th>gives back</th></tr>"
                + "".join(
                    f"<tr><td>{e(x['layer'])}</td><td>{e(', '.join(x['keras_layers']))}</td>"
                    f"<td><code>{e(x['exclude'])}</code></td>"
                    f"<td>{_f(x['quantized'])}</td><td>{_gain(x)}</td></tr>"
                    for x in ex
                )
                + "</table>"
            )
        elif m.get("exclusions_note"):
            metric += f"<p>{e(m['exclusions_note'])}</p>"
    unmatched = ""
    if result.get("unmatched"):
        unmatched = (
            "<p>Kernel calls with no Keras layer to compare with: "
            + ", ".join(f"{u['index']} {e(u['op'])} <code>{e(u['name'][:60])}</code>" for u in result["unmatched"])
            + "</p>"
        )
    title = f"Quantization debug: {result['tflite']} vs {result['model']}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} td{{text-align:right}} td:nth-child(2),td:nth-child(3),
td:last-child{{text-align:left}} tr.bad td{{background:#fbe3e0}}</style></head><body>
<h1>{e(title)}</h1>
<p>{e(result.get("mode", ""))} model, {result["samples"]} calibration samples, quantized model run on
<b>{e(str(result.get("where", "host")))}</b> (the generated C). Layers sorted worst first by
<i>score</i>: {e(result.get("score", ""))}. RMSE, max |err| and SNR compare with the float model from the
input on (errors of earlier layers included).</p>
<img alt="per-layer error" src="data:image/png;base64,{base64.b64encode(png).decode()}">
{metric}
<h2>Layers, worst first</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>
{chr(10).join(body)}
</table>
{unmatched}
</body></html>
"""


def write_html(result: dict, path) -> Path:
    """Write the HTML report (plot embedded as base64 PNG) atomically; returns its path."""
    return atomic_write(path, render_html(result, error_plot_png(result)).encode())
