"""Keras layer names <-> ops of a converted .tflite, for selective and mixed quantization.

The TF converter names each op's output tensor after the name scopes it was
traced in ("model_1/conv2d_1/Relu;model_1/conv2d_1/BiasAdd;..."), but the
scopes are uniquified ("conv2d" becomes "conv2d_1", "conv2d_1" becomes
"conv2d_1_2"), so they cannot be mapped back to the layer names the user
wrote. Before converting, the model is therefore cloned with every layer
renamed to a token that cannot be confused ("mmq7x"); a token and any
uniquifying suffix map back to exactly one layer. When the model is done the
tokens in the tensor names are replaced by the original layer names again.

An op belongs to every layer whose token appears in its output tensor name
(a conv with a folded batch norm belongs to both). The converter names the
graph outputs after the signature ("StatefulPartitionedCall_1:0"), so an op
with no token that produces a model output belongs to the Keras layer that
produces that output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mcu_mot.errors import MotError
from mcu_mot.safetext import one_line

TOKEN = re.compile(r"mmq(\d+)x(?:_\d+)*")
QDQ = (6, 114)  # BuiltinOperator DEQUANTIZE, QUANTIZE


@dataclass
class Tokenized:
    model: object  # the renamed clone (same weights)
    names: list  # token number -> original layer name
    output_layers: list  # graph output k -> original layer name
    layer_names: list = field(default_factory=list)  # the user's layer names, model order

    def restore(self, text: str) -> str:
        return TOKEN.sub(lambda m: self.names[int(m.group(1))], text)


def user_layers(model) -> list:
    """The model's layers the user can select (input layers excluded), in model order."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def match_layers(model, pattern: str, option: str) -> list:
    """Names of the layers whose whole name matches `pattern`; MotError if none does."""
    shown = one_line(pattern, 100)
    try:
        rx = re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:  # all that re.compile raises
        raise MotError(f"{option} '{shown}' is not a valid regular expression ({one_line(exc, 200)})") from None
    names = [layer.name for layer in user_layers(model)]
    matched = [n for n in names if rx.fullmatch(n)]
    if not matched:
        listed = ", ".join(one_line(n, 60) for n in names[:50]) + (", ..." if len(names) > 50 else "")
        raise MotError(f"{option} '{shown}' matches no layer (the whole name must match); layers: {listed}")
    return matched


def tokenize(model) -> Tokenized:
    """Clone a Functional/Sequential model with every layer renamed to a token."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    names: list = []

    def rename(layer):
        cfg = layer.get_config()
        cfg["name"] = f"mmq{len(names)}x"
        names.append(layer.name)
        return layer.__class__.from_config(cfg)

    if not isinstance(model, (keras.Sequential, keras.Model)) or not (
        isinstance(model, keras.Sequential) or model.__class__.__name__ == "Functional"
    ):
        raise MotError(
            f"selective quantization needs a Functional or Sequential Keras model, not {model.__class__.__name__}"
        )
    try:
        clone = keras.models.clone_model(model, clone_function=rename)
    except Exception as exc:  # subclassed models cannot be cloned
        raise MotError(
            f"selective quantization needs a Functional or Sequential Keras model "
            f"(cloning '{model.name}' failed: {type(exc).__name__}: {exc})"
        ) from None
    by_name = {layer.name: layer for layer in model.layers}
    for token, original in enumerate(names):
        new = clone.get_layer(f"mmq{token}x")
        new.set_weights(by_name[original].get_weights())
    outputs = []
    for t in clone.outputs:
        op = t._keras_history[0]
        m = TOKEN.fullmatch(op.name)
        outputs.append(names[int(m.group(1))] if m else op.name)
    return Tokenized(clone, names, outputs, [layer.name for layer in user_layers(model)])


def opcode(model_t, op) -> int:
    code = model_t.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def op_layers(model_t, tok: Tokenized) -> list:
    """For each op of subgraph 0: the set of original layer names it belongs to."""
    sg = model_t.subgraphs[0]
    producer = {}
    for i, op in enumerate(sg.operators):
        for t in _ints(op.outputs):
            producer[t] = i
    # graph outputs reached through QUANTIZE/DEQUANTIZE chains belong to the output layer
    out_layer = {}
    for k, t in enumerate(_ints(sg.outputs)):
        while t in producer and opcode(model_t, sg.operators[producer[t]]) in QDQ:
            t = _ints(sg.operators[producer[t]].inputs)[0]
        if t in producer and k < len(tok.output_layers):
            out_layer[producer[t]] = tok.output_layers[k]
    result = []
    for i, op in enumerate(sg.operators):
        layers = set()
        if opcode(model_t, op) not in QDQ:
            for t in _ints(op.outputs):
                name = (sg.tensors[t].name or b"").decode(errors="replace")
                layers |= {tok.names[int(m.group(1))] for m in TOKEN.finditer(name)}
            if not layers and i in out_layer:
                layers.add(out_layer[i])
        result.append(layers)
    return result


def restore_names(model_t, tok: Tokenized) -> None:
    """Put the user's layer names back into every tensor name (in place)."""
    for sg in model_t.subgraphs:
        for t in sg.tensors:
            if t.name:
                t.name = tok.restore(t.name.decode(errors="replace")).encode()


def check_coverage(layers_per_op: list, selected: list, option: str) -> set:
    """Indices of the ops of the selected layers; MotError when the layers produce no op."""
    chosen = set(selected)
    ops = {i for i, layers in enumerate(layers_per_op) if layers & chosen}
    if not ops:
        raise MotError(
            f"{option}: the layers {', '.join(selected)} produce no op in the converted "
            f"model (they were folded into others or only act in training)"
        )
    return ops


def _ints(v) -> list:
    if v is None:
        return []
    return [int(x) for x in np.asarray(v).ravel()]
