"""Per-layer quantization debugger: which layer of a quantized .tflite loses the accuracy?

    from mcu_mot.flows.debug import debug, print_table, write_json
    from mcu_mot.optimize.report_html import write_html
    result = debug("model.keras", "model_int8.tflite", calib)          # host (generated C)
    result = debug(model, "model_int8.tflite", calib, labels=y, board="qemu-mps2-an386")   # device
    print_table(result); write_json(result, "debug.json"); write_html(result, "debug.html")

The quantized model is the generated C, never a Python reimplementation: on the host through
`mcu_mot.device.simulator` (one kernel call at a time, each output read from the arena right after it is
written), on a board over the serial link (INVOKE one layer, GET_TENSOR, next layer). Each kernel
call's output tensor is mapped to the Keras layer whose output it is (the converter keeps the Keras
layer path in the tensor names, e.g. 'functional_1/conv2d_1/Relu;...'; where names are ambiguous the
numbers decide, then the graph order), dequantized with its scale and zero point and compared with
the float layer's output on the same calibration samples.

Two errors per layer:
- end to end (`rmse`, `max_abs_err`, `snr_db`, `nrmse`, `channel_nrmse`): the quantized model against
  the float model from the input up to this layer; errors of earlier layers are carried along.
- local (`local_*`): the float Keras layer (with any layers the converter fused into it) run on the
  *dequantized quantized* inputs the device actually fed it, against what the device produced: the
  error this layer adds by itself.

Layers are sorted by `score` = the local error per output channel, relative to that channel's spread
in the float model (mean over channels of rmse_c / std_c). One channel with a huge range (an outlier)
forces a coarse scale on every channel of a per-tensor quantized activation: the other channels
lose their precision, which this score shows at the layer that causes it, while the end-to-end errors
rise at every layer after it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mcu_mot.boards import load_board
from mcu_mot.codegen.compile import generate, model_digest
from mcu_mot.device.simulator import load
from mcu_mot.device.target import QemuTarget, SerialTarget
from mcu_mot.errors import MotError
from mcu_mot.fileio import load_arrays
from mcu_mot.fwbuild import build
from mcu_mot.ir import read_tflite
from mcu_mot.optimize import ptq
from mcu_mot.optimize.keras_io import load_keras
from mcu_mot.optimize.report_html import atomic_write

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: what `score` (the sort key) measures, written into the result
SCORE_DOC = (
    "local channel NRMSE: the error this layer adds by itself (float layer on the dequantized "
    "quantized inputs vs the quantized output), per output channel relative to the channel's "
    "std in the float model, averaged over channels"
)

_SKIP_OPS = {"DEQUANTIZE"}
_ERR_KEYS = ("rmse", "max_abs_err", "snr_db", "nrmse", "channel_nrmse", "worst_channel")
_TOL_ABS, _TOL_REL = 0.02, 0.10  # numeric ties when choosing between candidate layers
_FALLBACK_MAX_REL = 0.5  # a layer found by numbers alone must match this well


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def debug(
    keras_model_or_path,
    tflite_path,
    calib,
    labels=None,
    board=None,
    progress=None,
    *,
    port=None,
    build_dir=None,
    max_samples: int | None = None,
    worst_k: int = 3,
    exclusions: bool = True,
    quantize_kwargs: dict | None = None,
    batch_size: int = 32,
) -> dict:
    """Per-layer quantization error of `tflite_path` against the float Keras model.

    keras_model_or_path: a keras.Model or a .keras file.
    calib: float samples (N, *input_shape) of the Keras model's input (a list of arrays for several
        inputs), or a .npy/.npz file.
    labels: (N,) class ids or (N, C) one-hot: accuracy; float targets shaped like the output: mean
        squared error. Array or .npy file.
    board: an emulated board: build the firmware, start QEMU and read every intermediate tensor over
        the serial link; or any board together with `port` where this model's firmware already runs.
    max_samples: the per-layer statistics use the first max_samples samples (the metric uses all).
    worst_k, exclusions: with labels, re-quantize with each of the worst k layers kept in float
        (mcu_mot.optimize.ptq.quantize(model, mode, calib, exclude=REGEX, **quantize_kwargs); mode is
        read from the .tflite unless quantize_kwargs gives one) and measure what that gives back.
    progress(done, total, text) is called as work completes (the CLI's rich bar fits).

    Returns the result dict (JSON-ready): `layers` sorted worst first, `model_metric` with labels.
    """
    say = progress or (lambda *a, **k: None)
    tflite_path = Path(tflite_path)
    graph = read_tflite(tflite_path)
    model, model_name = _load_keras(keras_model_or_path)
    xs = _as_inputs(calib, model)
    n_all = xs[0].shape[0]
    if n_all == 0:
        raise MotError("calibration data is empty")
    n = n_all if max_samples is None else max(1, min(int(max_samples), n_all))
    ys = _check_labels(labels, n_all)
    if len(graph.inputs) != len(xs):
        raise MotError(f"{tflite_path.name} has {len(graph.inputs)} input(s), the Keras model {len(xs)}")
    for t, x in zip(graph.inputs, xs):
        if int(np.prod(t.shape[1:] if t.shape and t.shape[0] == 1 else t.shape)) != int(np.prod(x.shape[1:])):
            raise MotError(
                f"{tflite_path.name}: input '{t.name}' has shape {tuple(t.shape)}, the calibration "
                f"data {tuple(x.shape[1:])}: is this the quantized version of this Keras model?"
            )
    xq_all = [quantize_input(x, t) for x, t in zip(xs, graph.inputs)]

    keras_side = _KerasSide(model)
    result = {
        "model": model_name,
        "tflite": tflite_path.name,
        "board": board if board is not None else "host",
        "where": "host",
        "mode": _mode_of(graph),
        "samples": n,
        "sorted_by": "score",
        "score": SCORE_DOC,
    }
    with ExitStack() as stack:
        runner = _open_runner(stack, tflite_path, board, port, build_dir, say)
        result["where"] = runner.where
        rows, unmatched = _compare(graph, keras_side, runner, xs, xq_all, n, batch_size, say)
        result["layers"] = sorted(rows, key=_sort_key)
        result["unmatched"] = unmatched
        if ys is not None:
            say(0, 1, "model metric")
            out_f = keras_side.predict_outputs(xs)[0]
            out_q = _dequantize(runner.run(xq_all, lambda i, k: say(i, k, "model metric"))[0], graph.outputs[0])
            metric = _metric(ys, out_f, out_q)
            metric["where"] = runner.where
            result["model_metric"] = metric
    if ys is not None:
        _add_exclusions(result, model, graph, xs, ys, worst_k if exclusions else 0, quantize_kwargs, say)
    return result


def write_json(result: dict, path) -> Path:
    """The result as JSON, written atomically."""
    return atomic_write(path, (json.dumps(_jsonable(result), indent=2) + "\n").encode())


def print_table(result: dict, console=None, top: int | None = None) -> None:
    """A rich table of the layers, worst first (and the model metric when there is one)."""
    console = console or Console()
    rows = result["layers"][:top] if top else result["layers"]
    where = result.get("where", "host")
    # names and file names are data, never rich markup
    table = Table(
        title=escape(
            f"Quantization error per layer: {result['tflite']} vs {result['model']} "
            f"({result['samples']} samples, {where}), worst first"
        ),
        caption="score: the error the layer adds by itself (per-channel RMSE / float std); "
        "RMSE, max |err|, SNR: against the float model from the input on",
    )
    wide = console.width >= 110
    cols = ["#", "layer", "op", "score", "RMSE", "max |err|", "SNR dB", "scale, zp", "float range"]
    if not wide:
        cols = [c for c in cols if c not in ("max |err|", "float range")]
    for col in cols:
        table.add_column(
            col,
            justify="left" if col in ("layer", "op") else "right",
            overflow="fold",
            no_wrap=col not in ("layer", "op"),
        )
    for r in rows:
        cells = {
            "#": str(r["index"]),
            "layer": escape(r["name"]),
            "op": escape(r["op"]),
            "score": _g(r["score"]),
            "RMSE": _g(r["rmse"]),
            "max |err|": _g(r["max_abs_err"]),
            "SNR dB": _db(r["snr_db"]),
            "scale, zp": "float" if r["scale"] is None else f"{_g(r['scale'])}, {r['zero_point']}",
            "float range": f"{_g(r['float_min'])}..{_g(r['float_max'])}",
        }
        table.add_row(*(cells[c] for c in cols))
    console.print(table)
    m = result.get("model_metric")
    if m:
        console.print(
            escape(
                f"{m['metric']}: float {_g(m['float'])}, quantized {_g(m['quantized'])} "
                f"({m['samples']} samples, quantized on {m.get('where', 'host')})"
            )
        )
        for e in m.get("exclusions") or []:
            what = (
                f"{_g(e['quantized'])} ({e['gain']:+.4f})"
                if e.get("gain") is not None
                else f"not measured: {e.get('error', '')}"
            )
            console.print(escape(f"  {_variant_text(e)} in float (--exclude '{e['exclude']}'): {what}"))
        if m.get("exclusions_note"):
            console.print(escape(f"  {m['exclusions_note']}"))
    if result.get("unmatched"):
        names = ", ".join(f"{u['index']} {u['op']}" for u in result["unmatched"])
        console.print(f"[dim]kernel calls with no Keras layer to compare with: {escape(names)}[/]")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _load_keras(model_or_path):
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    if isinstance(model_or_path, keras.Model):
        return model_or_path, model_or_path.name
    path = Path(model_or_path)
    return load_keras(path), path.stem


def _load_array(a, what: str):
    """An array, or a .npy/.npz file holding it (.npz, or the dict load_arrays makes of one:
    one array per input, in order)."""
    if isinstance(a, (str, Path)):
        a = load_arrays(a, f"{what} file")
    if isinstance(a, dict):
        arrays = list(a.values())
        return arrays if len(arrays) > 1 else arrays[0]
    return a


def _as_inputs(calib, model) -> list[np.ndarray]:
    calib = _load_array(calib, "calibration data")
    arrays = list(calib) if isinstance(calib, (list, tuple)) else [calib]
    try:
        inputs = list(model.inputs)
    except Exception:
        raise MotError(f"Keras model '{model.name}' has no defined inputs (build it with keras.Input)") from None
    if len(arrays) != len(inputs):
        raise MotError(f"the Keras model has {len(inputs)} input(s), the calibration data gives {len(arrays)}")
    out = []
    for k, (a, t) in enumerate(zip(arrays, inputs)):
        a = np.asarray(a)
        if a.dtype.kind != "f":
            raise MotError(f"calibration data must be float (the Keras model's input), got {a.dtype}")
        want = tuple(t.shape[1:])
        if a.ndim != len(want) + 1 or any(w is not None and w != s for w, s in zip(want, a.shape[1:])):
            shape = ", ".join("?" if w is None else str(w) for w in want)
            raise MotError(f"calibration data must have shape (N, {shape}) for input {k}, got {tuple(a.shape)}")
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    if len({a.shape[0] for a in out}) != 1:
        raise MotError("all calibration inputs must have the same number of samples")
    return out


def _check_labels(labels, n: int):
    if labels is None:
        return None
    y = np.asarray(_load_array(labels, "labels"))
    if y.ndim == 0 or y.shape[0] != n:
        raise MotError(f"labels must have one entry per calibration sample ({n}), got shape {tuple(y.shape)}")
    return y


def _round_half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_input(x: np.ndarray, t) -> np.ndarray:
    shape = (x.shape[0],) + tuple(t.shape[1:] if t.shape and t.shape[0] == 1 else t.shape)
    if t.dtype == "float32":
        return x.reshape(shape)
    if t.quant is None or t.dtype not in ("int8", "int16", "uint8"):
        raise MotError(f"input '{t.name}' is {t.dtype} without quantization parameters: cannot feed float data")
    s, z = t.quant.single()
    info = np.iinfo(t.dtype)
    q = np.clip(_round_half_away(x.astype(np.float64) / s) + z, info.min, info.max)
    return q.astype(t.dtype).reshape(shape)


def _quant_of(t):
    if t.quant is None or t.dtype == "float32":
        return None, None
    s, z = t.quant.single()
    return s, z


def _dequantize(a: np.ndarray, t) -> np.ndarray:
    s, z = _quant_of(t)
    if s is None:
        return a.astype(np.float64)
    return (a.astype(np.float64) - z) * s


def _mode_of(graph) -> str:
    dtypes = {
        op.outputs[0].dtype
        for op in graph.ops
        if op.outputs and not op.outputs[0].is_const and op.opcode not in ("QUANTIZE", "DEQUANTIZE")
    }
    kinds = [k for k in ("int16", "int8", "float32") if k in dtypes]
    if kinds == ["int16"]:
        return "int16x8"
    if kinds == ["int8"]:
        return "int8"
    if kinds == ["float32"]:
        return "float32"
    return "mixed (" + ", ".join("int16x8" if k == "int16" else k for k in kinds) + ")"


# --------------------------------------------------------------------------------------------
# running the quantized model: host (generated C) or device (serial link)
# --------------------------------------------------------------------------------------------
class _HostRunner:
    where = "host"

    def __init__(self, path):
        self.model = load(path)
        self.calls = [layer for layer in self.model.meta["layers"] if layer["kernel"]]

    def layer_outputs(self, sample: list) -> list[np.ndarray]:
        return [a for _, a in self.model.layer_outputs(*sample)]

    def run(self, xq: list, progress=None) -> list[np.ndarray]:
        return self.model.run(*xq)


class _DeviceRunner:
    def __init__(self, client, calls: list, board: str):
        self.dev = client
        self.calls = calls
        self.where = board
        info = client.info()
        if info.layers != len(calls):
            raise MotError(
                f"the device on {client.port} runs a model with {info.layers} layers, "
                f"this one has {len(calls)}: flash the build of this model first"
            )

    def layer_outputs(self, sample: list) -> list[np.ndarray]:
        for k, x in enumerate(sample):
            self.dev.set_input(k, np.ascontiguousarray(x))
        out = []
        for i, layer in enumerate(self.calls):
            # a continuation INVOKE(i, i) after INVOKE(0, 0) on a fresh input (protocol v1)
            ran = self.dev.invoke(i, i)[1]
            if ran != 1:
                raise MotError(f"device ran {ran} layers for INVOKE({i}, {i})")
            out.append(self.dev.get_tensor(i, dtype=layer["dtype"], shape=tuple(layer["shape"])))
        return out

    def run(self, xq: list, progress=None) -> list[np.ndarray]:
        return self.dev.run(*xq, progress=progress)


def _open_runner(stack: ExitStack, path: Path, board, port, build_dir, say):
    if board in (None, "host") and port is None:
        say(0, 1, "compiling the generated C for the host")
        return _HostRunner(path)
    b = load_board(board) if board is not None else None
    calls = [layer for layer in generate(path, "portable", b.name if b else "host").report["layers"] if layer["kernel"]]
    if port is None:
        if not b.emulated:
            raise MotError(f"board '{b.name}' is not emulated: flash the firmware for {path.name} and give its port")
        if build_dir is None:
            build_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="mm-debug-"))
        build(path, b, Path(build_dir), progress=say)
        say(0, 1, f"starting {b.name} (QEMU)")
        target = QemuTarget(build_dir, board=b)
    else:
        target = SerialTarget(port, board=b)
    dev = stack.enter_context(target.connect())
    dev.check_model(model_digest(path.read_bytes()))
    return _DeviceRunner(dev, calls, b.name if b else str(port))


# --------------------------------------------------------------------------------------------
# the float model
# --------------------------------------------------------------------------------------------
def _predict(model, xs: list, batch: int = 256) -> list[np.ndarray]:
    """The float model's outputs (inference mode), float64."""
    parts = []
    for s in range(0, xs[0].shape[0], batch):
        with _quiet():
            o = model([x[s : s + batch] for x in xs] if len(xs) > 1 else xs[0][s : s + batch], training=False)
        parts.append([_np(t) for t in (o if isinstance(o, (list, tuple)) else [o])])
    return [np.concatenate(p) for p in zip(*parts)]


def _np(t) -> np.ndarray:
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    return np.asarray(keras.ops.convert_to_numpy(t), dtype=np.float64)


@contextmanager
def _quiet():
    """Keras warns when an input's nesting differs from the one the model was built with: not news here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _out_size(shape) -> int:
    return int(np.prod([d for d in shape[1:]], dtype=np.int64)) if len(shape) > 1 else 1


class _KerasSide:
    """The float model's layers, their outputs, and sub-models that recompute one layer from its inputs."""

    def __init__(self, model):
        import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

        self.keras = keras
        self.model = model
        self.input_layers = [t._keras_history.operation for t in model.inputs]
        self.layers = []  # single-output, non-input layers in graph order
        seen = set()
        for layer in model.layers:
            if layer in self.input_layers or id(layer) in seen:
                continue
            seen.add(id(layer))
            try:
                out = layer.output
            except Exception:  # shared layers (several nodes) have no single output
                continue
            if isinstance(out, (list, tuple, dict)) or not hasattr(out, "shape"):
                continue
            if any(d is None for d in out.shape[1:]):
                continue
            self.layers.append(layer)
        self.pos = {id(layer): i for i, layer in enumerate(self.layers)}
        self.by_name = {layer.name: layer for layer in self.layers}
        outs = [layer.output for layer in self.layers]
        self._all = keras.Model(model.inputs, outs) if outs else None
        self.output_layers = [t._keras_history.operation for t in model.outputs]
        self._segments = {}
        self._readers = {}  # id(layer) -> layers whose input is its output (this model's graph)
        for layer in self.layers:
            for t in self._inbound(layer.output):
                self._readers.setdefault(id(t._keras_history.operation), []).append(layer)

    def readers(self, layer) -> list:
        """The layers that read `layer`'s output, looking through layers that only reshape it (those
        included): to keep that tensor in float they must all be float."""
        out, todo = [], list(self._readers.get(id(layer), []))
        while todo:
            r = todo.pop(0)
            if r in out:
                continue
            out.append(r)
            if type(r).__name__ in _SHAPE_ONLY:
                todo.extend(self._readers.get(id(r), []))
        return sorted(out, key=lambda lyr: self.pos.get(id(lyr), -1))

    def size(self, layer) -> int:
        return _out_size(layer.output.shape)

    def shape(self, layer) -> tuple:
        return tuple(layer.output.shape[1:])

    def layer_values(self, xs: list) -> dict:
        """{id(layer): float64 array (B, ...)} for every layer (the float model, inference mode)."""
        if self._all is None:
            return {}
        with _quiet():
            outs = self._all(list(xs), training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return {id(layer): _np(o) for layer, o in zip(self.layers, outs)}

    def predict_outputs(self, xs: list) -> list[np.ndarray]:
        return _predict(self.model, xs)

    @staticmethod
    def _inbound(tensor) -> list:
        op, node_index, _ = tensor._keras_history
        node = op._inbound_nodes[node_index]
        return list(node.input_tensors)

    def segment(self, layer, matched: set):
        """(sub-model, frontier tensors, fused layers): recompute `layer` from the nearest matched
        layers' outputs (or the model inputs); None when Keras cannot build it."""
        key = id(layer)
        if key in self._segments:
            return self._segments[key]
        frontier, fused, seen = [], [layer], set()
        stack = self._inbound(layer.output)
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            producer = t._keras_history.operation
            if producer in self.input_layers or id(producer) in matched:
                frontier.append(t)
            else:
                if producer not in fused:
                    fused.append(producer)
                stack.extend(self._inbound(t))
        try:
            sub = self.keras.Model(frontier, layer.output) if frontier else None
        except Exception:
            sub = None
        fused = sorted(fused, key=lambda lyr: self.pos.get(id(lyr), -1))
        seg = (sub, frontier, fused)
        self._segments[key] = seg
        return seg


# --------------------------------------------------------------------------------------------
# matching kernel calls to Keras layers
# --------------------------------------------------------------------------------------------
_SUFFIX = re.compile(r"^(.*?)((?:_\d+)*)$")


def _name_candidates(tensor_name: str, names: dict) -> dict:
    """{layer name: rank} for the Keras layers named in a converter tensor name.

    Keras 3 adds one '_N' to each scope ('conv2d' -> 'conv2d_1', 'conv2d_1' -> 'conv2d_1_2'): rank 0
    for one stripped suffix, 1 for the exact name, 2 for more."""
    found = {}
    for part in tensor_name.split(";"):
        for seg in part.split("/"):
            if not seg:
                continue
            stem, suffix = _SUFFIX.match(seg).groups()
            groups = re.findall(r"_\d+", suffix)
            for k in range(len(groups) + 1):  # strip 0, 1, 2, ... '_N' groups
                cand = stem + "".join(groups[: len(groups) - k])
                if cand in names:
                    rank = 0 if k == 1 else 1 if k == 0 else 2
                    found[cand] = min(rank, found.get(cand, 9))
    return found


def _rel_err(q: np.ndarray, f: np.ndarray) -> float:
    den = float(np.sqrt(np.sum(f * f)))
    num = float(np.sqrt(np.sum((q - f) ** 2)))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def _graph_output_producers(graph) -> dict:
    """{tensor index of a kernel output: output k} for tensors that are (or dequantize into) outputs."""
    res = {}
    for k, t in enumerate(graph.outputs):
        res[t.index] = k
        op = graph.producer(t)
        while op is not None and op.opcode in ("DEQUANTIZE", "QUANTIZE", "RESHAPE") and op.inputs:
            src = op.inputs[0]
            if src is None or src.is_const:
                break
            res[src.index] = k
            op = graph.producer(src)
    return res


def _match(graph, ks: _KerasSide, calls: list, q_first: list, f_first: dict, requant: dict) -> dict:
    """{call index: layer | ('input', k) | ('requant', source)} from names, sizes, numbers and order."""
    tensors = {t.index: t for t in graph.tensors}
    out_of = _graph_output_producers(graph)
    match = {}
    cands = {}  # call -> [(rel, rank, -pos, layer)]
    for i, layer in enumerate(calls):
        t = tensors[layer["tensor"]]
        op = layer["op"]
        if op in _SKIP_OPS or (t.dtype != "float32" and t.quant is None):
            continue
        if op == "QUANTIZE":
            src = requant.get(i)
            if src is not None and src[0] == "input" and graph.inputs[src[1]].dtype == "float32":
                match[i] = src  # the model's float input, quantized
            elif src is not None:
                match[i] = ("requant", src)
            continue
        size = int(np.prod(layer["shape"][1:] if layer["shape"] and layer["shape"][0] == 1 else layer["shape"]))
        named = _name_candidates(layer["name"], ks.by_name)
        pool = {name: rank for name, rank in named.items() if ks.size(ks.by_name[name]) == size}
        if t.index in out_of:
            k = out_of[t.index]
            for j, out_layer in enumerate(ks.output_layers):
                if id(out_layer) in ks.pos and ks.size(out_layer) == size:
                    pool.setdefault(out_layer.name, 0 if j == k else 1)
        fallback = not pool
        if fallback:
            pool = {lyr.name: 3 for lyr in ks.layers if ks.size(lyr) == size}
        q = q_first[i]
        rows = []
        for name, rank in pool.items():
            lyr = ks.by_name[name]
            f = f_first[id(lyr)]
            rel = _rel_err(q.reshape(f.shape), f)
            if fallback and not rel <= _FALLBACK_MAX_REL:
                continue
            rows.append((rel, rank, -ks.pos[id(lyr)], lyr))
        if rows:
            cands[i] = rows
    # most confident calls choose first; a layer goes to one call only
    order = sorted(cands, key=lambda i: (min(r[0] for r in cands[i]), i))
    taken = set()
    for i in order:
        rows = [r for r in cands[i] if id(r[3]) not in taken]
        if not rows:
            continue
        best = min(r[0] for r in rows)
        tied = [r for r in rows if r[0] <= best + max(_TOL_ABS, _TOL_REL * best)]
        choice = min(tied, key=lambda r: (r[1], r[2]))[3]
        match[i] = choice
        taken.add(id(choice))
    return match


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
class _Stats:
    """Streaming error statistics of q against f (float64 arrays, channels last)."""

    def __init__(self, lo=None, hi=None):
        self.lo, self.hi = lo, hi  # the quantized tensor's representable range
        self.clipped = 0
        self.n = 0
        self.se = self.sf = self.sf2 = 0.0
        self.max_abs = 0.0
        self.fmin, self.fmax = math.inf, -math.inf
        self.ce2 = self.cf = self.cf2 = None
        self.cn = 0

    def add(self, q: np.ndarray, f: np.ndarray) -> None:
        e = q - f
        c = f.shape[-1] if f.ndim > 1 else 1
        e2 = (e * e).reshape(-1, c)
        fc = f.reshape(-1, c)
        if self.ce2 is None:
            self.ce2, self.cf, self.cf2 = np.zeros(c), np.zeros(c), np.zeros(c)
        self.ce2 += e2.sum(0)
        self.cf += fc.sum(0)
        self.cf2 += (fc * fc).sum(0)
        self.cn += fc.shape[0]
        self.n += e.size
        self.se += float(e2.sum())
        self.sf += float(f.sum())
        self.sf2 += float((f * f).sum())
        if e.size:
            self.max_abs = max(self.max_abs, float(np.abs(e).max()))
            self.fmin, self.fmax = min(self.fmin, float(f.min())), max(self.fmax, float(f.max()))
            if self.lo is not None:
                self.clipped += int(np.count_nonzero((f < self.lo) | (f > self.hi)))

    def spread(self) -> tuple:
        n = max(self.n, 1)
        return math.sqrt(max(self.sf2 / n - (self.sf / n) ** 2, 0.0)), self.channel_std()

    def channel_std(self) -> np.ndarray:
        cn = max(self.cn, 1)
        return np.sqrt(np.maximum(self.cf2 / cn - (self.cf / cn) ** 2, 0.0))

    def result(self, prefix: str = "", std=None) -> dict:
        """The statistics; `std` = (overall, per channel) spread to normalize by (default: f's own)."""
        n = max(self.n, 1)
        rmse = math.sqrt(self.se / n)
        if std is None:
            std = (math.sqrt(max(self.sf2 / n - (self.sf / n) ** 2, 0.0)), self.channel_std())
        std, c_std = std
        snr = None if self.se == 0 else (10 * math.log10(self.sf2 / self.se) if self.sf2 > 0 else -math.inf)
        cn = max(self.cn, 1)
        c_rmse = np.sqrt(self.ce2 / cn)
        live = c_std > max(1e-6 * float(c_std.max()), 1e-12)
        if live.any():
            ratios = c_rmse[live] / c_std[live]
            c_nrmse = float(ratios.mean())
            worst = int(np.flatnonzero(live)[int(np.argmax(ratios))])
        else:
            c_nrmse, worst = (0.0 if rmse == 0 else math.inf), None
        d = {
            "rmse": rmse,
            "max_abs_err": self.max_abs,
            "snr_db": snr,
            "nrmse": rmse / std if std > 0 else (0.0 if rmse == 0 else math.inf),
            "channel_nrmse": c_nrmse,
            "worst_channel": worst,
        }
        if not prefix:
            d["float_min"] = self.fmin if self.n else None
            d["float_max"] = self.fmax if self.n else None
            d["clipped"] = self.clipped / n if self.lo is not None else None
        return {prefix + k: v for k, v in d.items()}


def _wiring(graph, calls: list) -> tuple[dict, dict]:
    """From the .tflite graph: for each kernel call, the kernel outputs / graph inputs it reads (through
    ops that run no kernel: aliases, fused activations); and the QUANTIZE calls that requantize another
    kernel's output or a graph input ({call: ('call', p) | ('input', k)})."""
    call_of = {c["tensor"]: i for i, c in enumerate(calls)}
    input_index = {t.index: k for k, t in enumerate(graph.inputs)}
    producer = {t.index: op for op in graph.ops for t in op.outputs}
    reads, requant = {}, {}
    for i, c in enumerate(calls):
        found, seen = set(), set()
        stack = [producer[c["tensor"]]] if c["tensor"] in producer else []
        while stack:
            op = stack.pop()
            if id(op) in seen:
                continue
            seen.add(id(op))
            for t in op.inputs:
                if t is None or t.is_const:
                    continue
                if t.index in call_of and call_of[t.index] != i:
                    found.add(("call", call_of[t.index]))
                elif t.index in input_index:
                    found.add(("input", input_index[t.index]))
                elif t.index in producer:
                    stack.append(producer[t.index])
        reads[i] = found
        if c["op"] == "QUANTIZE" and len(found) == 1:
            requant[i] = next(iter(found))
    return reads, requant


def _compare(graph, ks: _KerasSide, runner, xs, xq_all, n, batch_size, say):
    calls = runner.calls
    tensors = {t.index: t for t in graph.tensors}
    reads, requant = _wiring(graph, calls)
    match = None
    acc, local = {}, {}
    in_stats = [_Stats(*_qrange(t)) for t in graph.inputs]
    say(0, n, f"layers on {runner.where}")
    for s in range(0, n, max(1, int(batch_size))):
        e = min(n, s + batch_size)
        b = e - s
        xb = [x[s:e] for x in xs]
        per_sample = [runner.layer_outputs([xq[j] for xq in xq_all]) for j in range(s, e)]
        q = [np.stack([ps[i] for ps in per_sample]) for i in range(len(calls))]
        deq = [_dequantize(q[i], tensors[calls[i]["tensor"]]) for i in range(len(calls))]
        fvals = ks.layer_values(xb)
        if match is None:
            match = _match(graph, ks, calls, deq, fvals, requant)
            matched_ids = {id(v) for v in match.values() if not isinstance(v, tuple)}
            seg_of = {i: ks.segment(v, matched_ids) for i, v in match.items() if not isinstance(v, tuple)}
            layer_call = {id(v): i for i, v in match.items() if not isinstance(v, tuple)}
            input_call = {v[1]: i for i, v in match.items() if isinstance(v, tuple) and v[0] == "input"}
        # the quantized model's view of each input (what the first layers were fed)
        xin = []
        for k, (xqk, t) in enumerate(zip(xq_all, graph.inputs)):
            xin.append(deq[input_call[k]] if k in input_call else _dequantize(xqk[s:e], t))
        for k in range(len(xs)):
            in_stats[k].add(xin[k].reshape(xb[k].shape), xb[k].astype(np.float64))

        def value(src):
            return xin[src[1]] if src[0] == "input" else deq[src[1]]

        def float_ref(src):
            if src[0] == "input":
                return xb[src[1]].astype(np.float64)
            v = match.get(src[1])
            if v is None or (isinstance(v, tuple) and v[0] != "input"):
                return None
            return xb[v[1]].astype(np.float64) if isinstance(v, tuple) else fvals[id(v)]

        def fed(i, src):
            """What call i read for the tensor `src`: src itself or a QUANTIZE of it."""
            for r, rsrc in requant.items():
                if rsrc == src and ("call", r) in reads[i]:
                    return deq[r]
            return value(src)

        for i, v in match.items():
            if isinstance(v, tuple):
                if v[0] == "requant":  # a QUANTIZE between two kernels: int16 <-> int8, float -> int
                    f = float_ref(v[1])
                    if f is None:
                        continue
                    qi = deq[i].reshape(f.shape)
                    if i not in acc:
                        acc[i], local[i] = _Stats(*_qrange(tensors[calls[i]["tensor"]])), _Stats()
                    acc[i].add(qi, f)
                    local[i].add(qi, value(v[1]).reshape(f.shape))
                continue
            f = fvals[id(v)]
            qi = deq[i].reshape(f.shape)
            if i not in acc:
                acc[i] = _Stats(*_qrange(tensors[calls[i]["tensor"]]))
            acc[i].add(qi, f)
            sub, frontier, _ = seg_of[i]
            if sub is None:
                continue
            feeds = []
            for t in frontier:
                producer = t._keras_history.operation
                src = (
                    ("input", ks.input_layers.index(producer))
                    if producer in ks.input_layers
                    else ("call", layer_call[id(producer)])
                )
                feeds.append(fed(i, src).reshape((b,) + tuple(t.shape[1:])))
            try:
                with _quiet():
                    ref = sub([a.astype(np.float32) for a in feeds], training=False)
            except Exception:
                seg_of[i] = (None, frontier, seg_of[i][2])
                continue
            local.setdefault(i, _Stats()).add(qi, _np(ref).reshape(f.shape))
        say(e, n, f"layers on {runner.where}")

    rows = []
    # the inputs' own quantization (int8/int16 inputs): a pseudo layer ahead of the first kernel
    for k, t in enumerate(graph.inputs):
        if k in input_call or t.dtype == "float32":
            continue
        st = in_stats[k].result()
        rows.append(_row(-1, ks.input_layers[k].name, "INPUT", t, st, st, [ks.input_layers[k].name]))

    def src_name(src):
        if src[0] == "input":
            return ks.input_layers[src[1]].name
        v = match.get(src[1])
        return None if v is None else (ks.input_layers[v[1]].name if isinstance(v, tuple) else v.name)

    for i, v in sorted(match.items()):
        layer = calls[i]
        t = tensors[layer["tensor"]]
        if isinstance(v, tuple) and v[0] == "input":
            st = in_stats[v[1]].result()
            rows.append(
                _row(i, ks.input_layers[v[1]].name, layer["op"], t, st, st, [ks.input_layers[v[1]].name], layer)
            )
        elif isinstance(v, tuple):
            if i not in acc or src_name(v[1]) is None:
                continue
            st_acc = acc[i].result()
            st_loc = local[i].result(std=acc[i].spread())
            src_t = tensors[calls[v[1][1]]["tensor"]] if v[1][0] == "call" else graph.inputs[v[1][1]]
            rows.append(
                _row(i, f"{src_name(v[1])} ({src_t.dtype}->{t.dtype})", layer["op"], t, st_acc, st_loc, [], layer)
            )
            rows[-1]["requantizes"] = src_name(v[1])
        else:
            sub, _, fused = seg_of[i]
            st_acc = acc[i].result()
            # the layer's own error, relative to the spread of its output in the float model
            st_loc = local[i].result(std=acc[i].spread()) if i in local and sub is not None else None
            rows.append(_row(i, v.name, layer["op"], t, st_acc, st_loc, [lyr.name for lyr in fused], layer))
            rows[-1]["readers"] = [lyr.name for lyr in ks.readers(v)]
    shown = {r["index"] for r in rows}
    unmatched = [
        {"index": i, "name": layer["name"], "op": layer["op"]}
        for i, layer in enumerate(calls)
        if i not in shown and layer["op"] not in _SKIP_OPS
    ]
    return rows, unmatched


def _row(index, name, op, t, st_acc, st_loc, keras_layers, layer=None) -> dict:
    s, z = _quant_of(t)
    row = {
        "index": index,
        "name": name,
        "op": op,
        "tensor": t.name,
        "keras_layers": keras_layers,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": s,
        "zero_point": z,
    }
    row["quant_min"], row["quant_max"] = _qrange(t)
    row.update(st_acc)
    if st_loc is not None:
        row.update({"local_" + k: v for k, v in st_loc.items() if k in _ERR_KEYS})
    row["score"] = row.get("local_channel_nrmse", row["channel_nrmse"])
    return row


def _qrange(t):
    s, z = _quant_of(t)
    if s is None:
        return None, None
    info = np.iinfo(t.dtype)
    return (info.min - z) * s, (info.max - z) * s


def _sort_key(row):
    s = row["score"]
    return (-(s if s is not None and not math.isnan(s) else -1.0), row["index"])


# --------------------------------------------------------------------------------------------
# model metric and what excluding a layer gives back
# --------------------------------------------------------------------------------------------
def _metric(y: np.ndarray, out_f: np.ndarray, out_q: np.ndarray) -> dict:
    n = y.shape[0]
    out_f = out_f.reshape(n, -1) if out_f.ndim > 2 else out_f
    out_q = out_q.reshape(out_f.shape)
    if y.dtype.kind in "iub" and y.ndim == 1 or (y.ndim == 2 and y.shape == out_f.shape and _one_hot(y)):
        ids = y if y.ndim == 1 else y.argmax(-1)
        if out_f.ndim != 2:
            raise MotError(f"class labels need a (N, classes) output, the model gives {out_f.shape}")
        return {
            "metric": "accuracy",
            "higher_is_better": True,
            "samples": n,
            "float": float(np.mean(out_f.argmax(-1) == ids)),
            "quantized": float(np.mean(out_q.argmax(-1) == ids)),
        }
    if y.size == out_f.size:
        yy = y.reshape(out_f.shape).astype(np.float64)
        return {
            "metric": "mse",
            "higher_is_better": False,
            "samples": n,
            "float": float(np.mean((out_f - yy) ** 2)),
            "quantized": float(np.mean((out_q - yy) ** 2)),
        }
    raise MotError(f"labels of shape {tuple(y.shape)} fit neither class ids (N,) nor the output {out_f.shape}")


def _one_hot(y) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(-1) == 1))


def _add_exclusions(result, model, graph, xs, ys, k, quantize_kwargs, say) -> None:
    metric = result["model_metric"]
    metric["exclusions"] = []
    if k <= 0:
        return
    kwargs = dict(quantize_kwargs or {})
    mode = kwargs.pop("mode", None)
    if mode is None:
        if result["mode"] == "float32":
            metric["exclusions"] = None
            metric["exclusions_note"] = "not measured: the model is not quantized"
            return
        mode = "int16x8" if result["mode"] == "int16x8" else "int8"
        if result["mode"].startswith("mixed"):
            metric["exclusions_note"] = (
                f"re-quantized as {mode} with one layer excluded each time; pass "
                f"quantize_kwargs to reproduce the original recipe"
            )
    worst = [r for r in result["layers"] if r["op"] not in ("INPUT", "QUANTIZE")][:k]
    calib = xs if len(xs) > 1 else xs[0]
    sign = 1 if metric["higher_is_better"] else -1
    out_f = _float_out(model, xs)
    metric["exclusions_where"] = "host"  # each variant runs as generated C on the host
    kwargs.setdefault("io", "float" if all(t.dtype == "float32" for t in graph.inputs) else "int")
    variants = []
    for row in worst:
        names = _exclusion_names(model, row)
        variants.append((row, "layer", names))
        # a layer in float still hands its output on quantized when the layers reading it are int: to
        # keep the tensor this score measures out of int8, its readers must be float as well
        if row.get("readers"):
            variants.append((row, "with_readers", names + [nm for nm in row["readers"] if nm not in names]))
    for j, (row, variant, names) in enumerate(variants):
        label = f"re-quantizing with {', '.join(names)} in float ({j + 1}/{len(variants)})"
        kw = dict(kwargs)
        kw.setdefault("progress", lambda stage, done, total, label=label: say(done, total, f"{label}: {stage}"))
        regex = "^(" + "|".join(re.escape(nm) for nm in names) + ")$"
        entry = {"layer": row["name"], "variant": variant, "keras_layers": names, "exclude": regex}
        say(0, 1, label)
        with tempfile.TemporaryDirectory(prefix="mm-debug-x-") as tmp:
            out = Path(tmp) / "excluded.tflite"
            try:
                _write_model(ptq.quantize(model, mode, calib, exclude=regex, **kw), out)
                g2 = read_tflite(out)
                xq = [quantize_input(x, t) for x, t in zip(xs, g2.inputs)]
                outq = _dequantize(load(out).run(*xq)[0], g2.outputs[0])
            except MotError as exc:  # this variant cannot be made or compiled: say so, go on
                entry.update({"quantized": None, "gain": None, "error": str(exc)})
                metric["exclusions"].append(entry)
                continue
        value = _metric(ys, out_f, outq)["quantized"]
        entry.update({"quantized": value, "gain": sign * (value - metric["quantized"])})
        metric["exclusions"].append(entry)


_SHAPE_ONLY = (
    "Flatten",
    "Reshape",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
)


def _exclusion_names(model, row) -> list[str]:
    """The Keras layers to keep in float for one kernel call: the layers the converter fused into it,
    less those that only reshape or vanish at inference."""
    names = []
    for nm in row["keras_layers"] or [row["name"]]:
        try:
            kind = type(model.get_layer(nm)).__name__
        except ValueError:
            kind = ""
        if nm == row["name"] or kind not in _SHAPE_ONLY:
            names.append(nm)
    return names


def _float_out(model, xs):
    return _predict(model, xs)[0]


def _write_model(got, path: Path) -> None:
    if isinstance(got, (bytes, bytearray)):
        path.write_bytes(bytes(got))
    elif isinstance(got, (str, Path)) and Path(got).is_file():
        path.write_bytes(Path(got).read_bytes())
    elif isinstance(got, dict) and "tflite" in got:
        _write_model(got["tflite"], path)
    else:
        raise MotError(f"ptq.quantize returned {type(got).__name__}, expected .tflite bytes")


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def _variant_text(e: dict) -> str:
    others = [nm for nm in e["keras_layers"] if nm != e["layer"]]
    if e.get("variant") == "with_readers":
        return f"'{e['layer']}' and the layers reading its output ({', '.join(others)})"
    return f"'{e['layer']}'" + (f" (with {', '.join(others)} fused into it)" if others else "")


def _g(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.3g}"
    return str(v)


def _db(v) -> str:
    return "exact" if v is None else f"{v:.1f}"


def _jsonable(o):
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        o = float(o)
        return o if math.isfinite(o) else None  # JSON has no inf/nan
    if isinstance(o, np.integer):
        return int(o)
    return o
