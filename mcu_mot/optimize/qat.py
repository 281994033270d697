"""Quantization-aware training (QAT) for Keras 3, native.

`tensorflow-model-optimization` does not accept Keras 3 models, so this module
rewrites a Keras 3 model itself. Every Conv2D / DepthwiseConv2D / Dense (with a
following BatchNormalization folded in and a following ReLU/ReLU6 fused) becomes
a `QuantLayer` that computes, in float, exactly what the TF converter and the
int8 kernels compute on the device:

* weights: the *folded* kernel (BN's gamma / sqrt(var + eps) multiplied in),
  fake-quantized per output channel, symmetric, narrow range [-127, 127]
  (scale = max|w| / 127, zero point 0);
* bias: the folded bias rounded to int32 steps of s_in * s_w[c] (the scale the
  converter gives it), s_in being the scale of the layer's input tensor;
* activations: asymmetric int8 after the fused activation, range tracked as an
  exponential moving average of the batch min/max (as tfmot does), always
  containing 0 and nudged so that 0 is exactly representable
  (`tf.quantization.fake_quant_with_min_max_vars` does the nudging, the
  converter nudges the same way);
* the model inputs, and the outputs of layers that compute new values without
  weights (Add, Multiply, Concatenate, GlobalAveragePooling, ...), get the
  same activation fake-quant; layers that keep their input's scale in TFLite
  (pooling, reshape, padding, dropout) get none, and Softmax / sigmoid / tanh
  keep the fixed output scales TFLite gives them.

Gradients are straight-through (the fake-quant ops' own gradients: identity
inside the range, zero outside). Batch-norm statistics are frozen during QAT
(folded with their moving averages; gamma and beta keep training), which is
what the converter folds at export, so training and inference see the same
weights.

`convert_qat` exports the QAT model with the TF converter in its
quantization-aware mode: the converter reads the FakeQuant ops' ranges instead
of calibrating, so the .tflite carries exactly the learned scales and zero
points, and the weights quantize onto the grid the fake-quant already put them
on. The result is a full-integer int8 model (int8 input/output by default).
The device then computes what the fake-quant model computes except where the
int8 kernels' fixed-point requantization rounds twice (TFLite Micro's
doubling high multiply, then a rounding shift): a value within about 2**-shift
of a half step can land one step off, so a small fraction of activations
differ by one step (argmax agreement on digits: 100 %).

Python API::

    from mcu_mot.optimize.qat import quantize_model, train_qat, convert_qat, qat
    qmodel = quantize_model(model)          # fake-quant clone (weights copied)
    qmodel = train_qat(qmodel, (x, y), epochs=3)   # or your own qmodel.fit(...)
    tflite_bytes = convert_qat(qmodel)
    tflite_bytes = qat("model.keras", "data.npz", epochs=3, out_path="m.tflite")
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402  (after the log level)
import numpy as np
import tensorflow as tf  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write, load_arrays
from mcu_mot.optimize.keras_io import load_keras
from mcu_mot.optimize.tfquiet import converter_output
from mcu_mot.safetext import one_line

L = keras.layers

#: EMA decay of the activation ranges (tfmot uses 0.999 over long trainings;
#: QAT here is a short fine-tuning, so the ranges must follow faster).
EMA_DECAY = 0.99
#: smallest activation range (a tensor that is always 0 still needs a scale)
_MIN_RANGE = 1e-4
#: smallest per-channel weight magnitude (an all-zero channel still needs a scale)
_MIN_WEIGHT = 1e-6

_FUSABLE = ("relu", "relu6")
_FIXED_RANGE = ("softmax", "sigmoid", "tanh")  # TFLite gives these a fixed output scale

# Layers whose TFLite op keeps the input's scale and zero point: no fake-quant after them.
_SAME_SCALE = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Identity,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.Cropping1D,
    L.Cropping2D,
    L.UpSampling2D,
)
# Layers without weights that compute new values: a fake-quant after them.
_REQUANT = (
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Average,
    L.Maximum,
    L.Minimum,
    L.Concatenate,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.ReLU,
    L.LeakyReLU,
    L.Activation,
    L.BatchNormalization,
    L.Rescaling,
)


# ----------------------------------------------------------------------------------------------
# fake-quant primitives (TF ops: the converter recognises them)


def _act_range(qmin, qmax):
    """The range as the fake-quant op (and the converter) will see it: contains 0, non-empty."""
    lo = tf.minimum(tf.convert_to_tensor(qmin), 0.0)
    hi = tf.maximum(tf.convert_to_tensor(qmax), 0.0)
    hi = tf.maximum(hi, lo + _MIN_RANGE)
    return lo, hi


def act_scale(qmin, qmax) -> float:
    """Scale of an asymmetric int8 tensor with range [qmin, qmax] (nudging keeps the scale)."""
    lo, hi = min(float(qmin), 0.0), max(float(qmax), 0.0)
    hi = max(hi, lo + _MIN_RANGE)
    return (hi - lo) / 255.0


def nudged_params(qmin: float, qmax: float) -> tuple[float, int]:
    """(scale, int8 zero point) of the range, nudged as TF's FakeQuant and the converter do."""
    lo, hi = min(float(qmin), 0.0), max(float(qmax), 0.0)
    hi = max(hi, lo + _MIN_RANGE)
    scale = (hi - lo) / 255.0
    zp_from_min = 0.0 - lo / scale
    zp = 0 if zp_from_min < 0 else 255 if zp_from_min > 255 else int(np.floor(zp_from_min + 0.5))
    return scale, zp - 128


def fake_quant_weights(w):
    """Per-channel (last axis) symmetric int8 fake-quant, narrow range [-127, 127]."""
    axes = list(range(len(w.shape) - 1))
    m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), _MIN_WEIGHT))
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -m, m, num_bits=8, narrow_range=True)


def weight_scales(w) -> np.ndarray:
    w = np.asarray(w)
    m = np.maximum(np.abs(w).reshape(-1, w.shape[-1]).max(0), _MIN_WEIGHT)
    return (2 * m / 254).astype(np.float64)


def _round_ste(x):
    return x + tf.stop_gradient(tf.round(x) - x)


class _ActQuant:
    """Range variables and the EMA / calibration update of one asymmetric int8 activation."""

    def _make_range(self, prefix: str = "act"):
        self.act_min = self.add_weight(
            name=f"{prefix}_min", shape=(), initializer=keras.initializers.Constant(-6.0), trainable=False
        )
        self.act_max = self.add_weight(
            name=f"{prefix}_max", shape=(), initializer=keras.initializers.Constant(6.0), trainable=False
        )
        self.act_seen = self.add_weight(name=f"{prefix}_seen", shape=(), initializer="zeros", trainable=False)
        self.calibrating = False

    def _quant_act(self, x, training):
        if self.calibrating or training:
            bmin = tf.minimum(tf.reduce_min(x), 0.0)
            bmax = tf.maximum(tf.reduce_max(x), 0.0)
            seen = self.act_seen > 0.5
            if self.calibrating:  # plain min/max over the calibration batches (what PTQ would do)
                new_min = tf.where(seen, tf.minimum(self.act_min, bmin), bmin)
                new_max = tf.where(seen, tf.maximum(self.act_max, bmax), bmax)
            else:  # EMA of the batch min/max while training
                d = self.ema_decay
                new_min = tf.where(seen, self.act_min * d + bmin * (1 - d), bmin)
                new_max = tf.where(seen, self.act_max * d + bmax * (1 - d), bmax)
            self.act_min.assign(new_min)
            self.act_max.assign(new_max)
            self.act_seen.assign(1.0)
        lo, hi = _act_range(self.act_min, self.act_max)
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8, narrow_range=False)

    def act_scale(self) -> float:
        return act_scale(self.act_min.numpy(), self.act_max.numpy())

    def quant_params(self) -> tuple[float, int]:
        """(scale, zero point) the converter will give this tensor."""
        return nudged_params(self.act_min.numpy(), self.act_max.numpy())


def _history_layer(t):
    """The layer that produced a symbolic tensor, and the node's first input (or None)."""
    hist = getattr(t, "_keras_history", None)
    if hist is None:
        return None, None
    op = hist.operation
    try:
        node = op._inbound_nodes[hist.node_index]
        ins = node.input_tensors
    except (AttributeError, IndexError):
        ins = []
    return op, (ins[0] if len(ins) == 1 else None)


def _producer_quantizer(t):
    """The activation quantizer whose grid tensor `t` is on (through same-scale layers), or None."""
    for _ in range(64):
        op, src = _history_layer(t)
        if isinstance(op, (QuantLayer, FakeQuant)):
            return op if op.quantize_output and op.post_activation in (None, "linear") else None
        if isinstance(op, _SAME_SCALE) and src is not None:
            t = src
            continue
        return None
    return None


class _Ref:
    """Holds a layer without Keras tracking it (the input quantizer a layer reads its scale from)."""

    def __init__(self, layer):
        self.layer = layer


# ----------------------------------------------------------------------------------------------
# layers


@keras.saving.register_keras_serializable(package="mcu_mot")
class FakeQuant(_ActQuant, keras.layers.Layer):
    """Asymmetric int8 fake-quant of a tensor (model inputs, outputs of weightless layers).

    `layer`: optionally a weightless layer to apply first (Add, GlobalAveragePooling2D, ...),
    with a ReLU/ReLU6 `activation` fused after it (the converter fuses it too).
    """

    def __init__(self, layer=None, activation=None, ema_decay: float = EMA_DECAY, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        self.layer = layer
        self.activation = activation if activation not in (None, "linear") else None
        self.ema_decay = float(ema_decay)
        self.quantize_output = True
        self.post_activation = None

    def build(self, input_shape):
        if self.layer is not None and not self.layer.built:
            self.layer.build(input_shape)
        self._make_range()
        self.built = True

    def call(self, inputs, training=None):
        x = self.layer(inputs) if self.layer is not None else inputs
        x = _apply_activation(x, self.activation)
        return self._quant_act(x, training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape) if self.layer is not None else input_shape

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            layer=keras.saving.serialize_keras_object(self.layer) if self.layer is not None else None,
            activation=self.activation,
            ema_decay=self.ema_decay,
        )
        return cfg


@keras.saving.register_keras_serializable(package="mcu_mot")
class QuantLayer(_ActQuant, keras.layers.Layer):
    """Conv2D / DepthwiseConv2D / Dense with a folded BatchNormalization and a fused ReLU/ReLU6,
    fake-quantized as the int8 kernels run it (see the module docstring)."""

    def __init__(
        self,
        layer,
        bn=None,
        activation=None,
        post_activation=None,
        quantize_output: bool = True,
        ema_decay: float = EMA_DECAY,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if isinstance(bn, dict):
            bn = keras.saving.deserialize_keras_object(bn)
        self.layer = layer
        self.bn = bn
        self.activation = activation if activation not in (None, "linear") else None
        self.post_activation = post_activation if post_activation not in (None, "linear") else None
        self.quantize_output = bool(quantize_output)
        self.ema_decay = float(ema_decay)
        self._input_quant = _Ref(None)
        self._export = None  # (kernel, bias) constants while convert_qat traces the model

    @property
    def kind(self) -> str:
        if isinstance(self.layer, L.DepthwiseConv2D):
            return "depthwise"
        if isinstance(self.layer, L.Conv2D):
            return "conv"
        return "dense"

    def __call__(self, inputs, *args, **kwargs):
        # find the quantizer of our input (for the bias scale) while the graph is being built
        if isinstance(inputs, keras.KerasTensor):
            self._input_quant = _Ref(_producer_quantizer(inputs))
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.bn is not None and not self.bn.built:
            self.bn.build(self.layer.compute_output_shape(input_shape))
        if self.quantize_output:
            self._make_range()
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def folded(self):
        """(kernel, bias) with the batch norm folded in, as tensors (kernel in Keras layout)."""
        layer = self.layer
        k = tf.convert_to_tensor(layer.kernel)
        n_out = int(k.shape[-2] * k.shape[-1]) if self.kind == "depthwise" else int(k.shape[-1])
        b = tf.convert_to_tensor(layer.bias) if layer.use_bias else tf.zeros((n_out,), k.dtype)
        if self.bn is not None:
            bn = self.bn
            inv = tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
            if bn.scale:
                inv = inv * bn.gamma
            beta = tf.convert_to_tensor(bn.beta) if bn.center else 0.0
            b = beta + (b - bn.moving_mean) * inv
            k = k * (tf.reshape(inv, k.shape[-2:]) if self.kind == "depthwise" else inv)
        return k, b

    def quantized_weights(self):
        """(fake-quantized kernel, fake-quantized bias) as the device will use them."""
        k, b = self.folded()
        if self.kind == "depthwise":  # channels are (in, multiplier) flattened, as TFLite lays them out
            shape = k.shape
            kq = tf.reshape(fake_quant_weights(tf.reshape(k, (shape[0], shape[1], 1, -1))), shape)
            flat = tf.reshape(k, (-1, shape[-2] * shape[-1]))
        else:
            kq = fake_quant_weights(k)
            flat = tf.reshape(k, (-1, k.shape[-1]))
        src = self._input_quant.layer
        if src is not None:
            m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), _MIN_WEIGHT))
            lo, hi = _act_range(src.act_min, src.act_max)
            s_bias = tf.stop_gradient((hi - lo) / 255.0 * (2.0 * m / 254.0))
            b = _round_ste(b / s_bias) * s_bias
        return kq, b

    def call(self, x, training=None):
        layer = self.layer
        if self._export is not None:
            kq, b = (tf.constant(a) for a in self._export)
        else:
            kq, b = self.quantized_weights()
        if self.kind == "conv":
            y = layer.convolution_op(x, kq)
        elif self.kind == "depthwise":
            y = keras.ops.depthwise_conv(
                x,
                kq,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
        else:
            y = keras.ops.matmul(x, kq)
        y = y + b
        y = _apply_activation(y, self.activation)
        if self.quantize_output:
            y = self._quant_act(y, training)
        return _apply_activation(y, self.post_activation)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            layer=keras.saving.serialize_keras_object(self.layer),
            bn=keras.saving.serialize_keras_object(self.bn) if self.bn is not None else None,
            activation=self.activation,
            post_activation=self.post_activation,
            quantize_output=self.quantize_output,
            ema_decay=self.ema_decay,
        )
        return cfg


def _apply_activation(x, name):
    if name is None:
        return x
    if name == "relu":
        return tf.nn.relu(x)
    if name == "relu6":
        return tf.nn.relu6(x)
    return keras.activations.get(name)(x)


# ----------------------------------------------------------------------------------------------
# model rewrite


def _activation_name(fn) -> str:
    if fn is None:
        return "linear"
    try:
        name = keras.activations.serialize(fn)
    except Exception:  # noqa: BLE001
        name = getattr(fn, "__name__", "custom")
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", "custom"))
        name = name if isinstance(name, str) else "custom"
    return name


def _standalone_activation(layer) -> str | None:
    """'relu' / 'relu6' / other activation name for an activation-only layer, else None."""
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            return "leaky"
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else "clipped"
    if isinstance(layer, L.Activation):
        return _activation_name(layer.activation)
    if isinstance(layer, L.Softmax):
        return "softmax"
    return None


def _graph(model):
    """(inputs, outputs, nodes in execution order) of a functional or built sequential model."""
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise MotError("QAT: build the Sequential model first (give it an Input or an input_shape)")
        model = fn
    if not hasattr(model, "_nodes_by_depth"):
        raise MotError(
            f"QAT: {type(model).__name__} models are not supported; use a functional or Sequential Keras model"
        )
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                nodes.append(node)
    return model.inputs, model.outputs, nodes


def _clone(layer):
    new = layer.__class__.from_config(layer.get_config())
    return new


def quantize_model(model, ema_decay: float = EMA_DECAY) -> keras.Model:
    """A fake-quant clone of a float Keras 3 model (functional or Sequential), weights copied.

    Conv2D / DepthwiseConv2D / Dense (+ a following BatchNormalization, + ReLU/ReLU6) become
    `QuantLayer`s named after the conv/dense layer; inputs and weightless value-changing
    layers get a `FakeQuant`. Activation ranges start at [-6, 6] until calibrated
    (`calibrate`) or trained (`train_qat` does both).
    """
    if not isinstance(model, keras.Model):
        raise MotError(f"QAT needs a Keras model, got {type(model).__name__}")
    inputs, outputs, nodes = _graph(model)
    out_ids = {id(t) for t in outputs}
    consumers: dict[int, list] = {}
    for node in nodes:
        for t in node.input_tensors:
            consumers.setdefault(id(t), []).append(node)

    def single_consumer(t):
        """The node that alone consumes tensor t (and t is not a model output), else None."""
        c = consumers.get(id(t), [])
        return c[0] if len(c) == 1 and id(t) not in out_ids else None

    # plan: which nodes are absorbed into which group
    absorbed: set[int] = set()
    plan: dict[int, dict] = {}
    for node in nodes:
        if id(node) in absorbed:
            continue
        layer = node.operation
        if isinstance(layer, keras.Model):
            raise MotError(f"QAT: nested model '{layer.name}' is not supported; flatten it into one model")
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) and type(layer) in (
            L.Conv2D,
            L.DepthwiseConv2D,
            L.Dense,
        ):
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise MotError(f"QAT: layer '{layer.name}' uses channels_first; TFLite needs channels_last")
            if isinstance(layer, L.Conv2D) and layer.groups != 1:
                raise MotError(f"QAT: grouped convolution '{layer.name}' is not supported")
            act = _activation_name(layer.activation)
            bn, end = None, node.output_tensors[0]
            if act == "linear":
                nxt = single_consumer(end)
                if (
                    nxt is not None
                    and isinstance(nxt.operation, L.BatchNormalization)
                    and nxt.operation.axis in (-1, [-1], len(end.shape) - 1, [len(end.shape) - 1])
                ):
                    bn = nxt.operation
                    absorbed.add(id(nxt))
                    end = nxt.output_tensors[0]
                nxt = single_consumer(end)
                if nxt is not None and _standalone_activation(nxt.operation) in _FUSABLE:
                    act = _standalone_activation(nxt.operation)
                    absorbed.add(id(nxt))
                    end = nxt.output_tensors[0]
            post = None
            if act not in ("linear",) + _FUSABLE:  # softmax/sigmoid/tanh keep TFLite's fixed output
                act, post = "linear", act  # scale; others get their own fake-quant after
            plan[id(node)] = dict(kind="quant", bn=bn, activation=act, post=post, end=end)
        elif isinstance(layer, _SAME_SCALE):
            plan[id(node)] = dict(kind="same", end=node.output_tensors[0])
        elif isinstance(layer, L.Softmax) or (_standalone_activation(layer) in _FIXED_RANGE):
            plan[id(node)] = dict(kind="same", end=node.output_tensors[0])
        elif isinstance(layer, _REQUANT) or not layer.weights:
            if isinstance(layer, L.BatchNormalization) or layer.weights:
                if not isinstance(layer, L.BatchNormalization):
                    raise MotError(f"QAT: layer '{layer.name}' ({type(layer).__name__}) is not supported")
            act, end = None, node.output_tensors[0]
            if _standalone_activation(layer) is None:
                nxt = single_consumer(end)
                if nxt is not None and _standalone_activation(nxt.operation) in _FUSABLE:
                    act = _standalone_activation(nxt.operation)
                    absorbed.add(id(nxt))
                    end = nxt.output_tensors[0]
            plan[id(node)] = dict(kind="requant", activation=act, end=end)
        else:
            raise MotError(f"QAT: layer '{layer.name}' ({type(layer).__name__}) is not supported")

    # rebuild
    tensors: dict[int, object] = {}
    new_inputs = []
    for t in inputs:
        hist = getattr(t, "_keras_history", None)
        name = getattr(hist.operation, "name", None) if hist is not None else None
        inp = keras.Input(shape=t.shape[1:], batch_size=t.shape[0], dtype=t.dtype, name=name)
        new_inputs.append(inp)
        iname = f"{name}_quant" if name else None
        tensors[id(t)] = FakeQuant(ema_decay=ema_decay, name=iname)(inp)
    copies = []  # (new layer, original layer)
    for node in nodes:
        if id(node) in absorbed:
            continue
        p = plan[id(node)]
        layer = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        kwargs.pop("training", None)
        if p["kind"] == "quant":
            inner = _clone(layer)
            inner.activation = keras.activations.get("linear")
            bn = _clone(p["bn"]) if p["bn"] is not None else None
            post = p["post"]
            fixed = post is None or post in _FIXED_RANGE
            new = QuantLayer(
                inner,
                bn=bn,
                activation=p["activation"],
                post_activation=post if fixed else None,
                ema_decay=ema_decay,
                name=layer.name,
            )
            y = new(*args, **kwargs)
            if not fixed:
                y = FakeQuant(L.Activation(post), ema_decay=ema_decay, name=f"{layer.name}_{post}")(y)
            copies.append((inner, layer))
            if bn is not None:
                copies.append((bn, p["bn"]))
        elif p["kind"] == "same":
            new = _clone(layer)
            y = new(*args, **kwargs)
        else:
            inner = _clone(layer)
            new = FakeQuant(inner, activation=p["activation"], ema_decay=ema_decay, name=layer.name)
            y = new(*args, **kwargs)
            if layer.weights:
                copies.append((inner, layer))
        tensors[id(p["end"])] = y
    for new, old in copies:
        new.set_weights(old.get_weights())
    missing = [t for t in outputs if id(t) not in tensors]
    if missing:
        raise MotError("QAT: could not rebuild the model's outputs")
    outs = [tensors[id(t)] for t in outputs]
    qmodel = keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        outs if len(outs) > 1 else outs[0],
        name=f"{model.name}_qat",
    )
    return qmodel


def quantizers(qmodel) -> list:
    """The activation quantizers of a QAT model, in graph order."""
    return [layer for layer in qmodel.layers if isinstance(layer, (QuantLayer, FakeQuant)) and layer.quantize_output]


def is_qat_model(model) -> bool:
    return any(isinstance(layer, (QuantLayer, FakeQuant)) for layer in getattr(model, "layers", []))


# ----------------------------------------------------------------------------------------------
# calibration, training


def _progress():
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=True,
    )


def calibrate(qmodel, x, batch_size: int = 64, progress: bool = True) -> None:
    """Set every activation range to the min/max over `x` (what PTQ would use): a starting point
    for QAT, so the EMA starts from sensible ranges."""
    x = np.asarray(x, np.float32)
    qs = quantizers(qmodel)
    for q in qs:
        q.act_seen.assign(0.0)
        q.calibrating = True
    try:
        batches = range(0, len(x), batch_size)
        if progress:
            with _progress() as bar:
                task = bar.add_task("calibrating ranges", total=len(batches), info="")
                for i in batches:
                    qmodel(x[i : i + batch_size], training=False)
                    bar.advance(task)
        else:
            for i in batches:
                qmodel(x[i : i + batch_size], training=False)
    finally:
        for q in qs:
            q.calibrating = False


class _RichProgress(keras.callbacks.Callback):
    """model.fit progress as one rich bar per epoch."""

    def __init__(self, epochs: int, steps: int):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.bar = None
        self.lines = []

    def on_train_begin(self, logs=None):
        self.bar = _progress()
        self.bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.task = self.bar.add_task(f"QAT epoch {epoch + 1}/{self.epochs}", total=self.steps, info="")

    def on_train_batch_end(self, batch, logs=None):
        info = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
        self.bar.update(self.task, completed=batch + 1, info=info)

    def on_epoch_end(self, epoch, logs=None):
        info = "  ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())
        self.bar.remove_task(self.task)
        self.bar.console.print(f"QAT epoch {epoch + 1}/{self.epochs}: {info}")

    def on_train_end(self, logs=None):
        self.bar.stop()


def _load_data(data):
    """(x, y) from an .npz path with arrays x and y, a (x, y) tuple or a dict."""
    if isinstance(data, (str, Path)):
        path, data = data, load_arrays(data, "QAT data file")
        if not isinstance(data, dict):
            raise MotError(f"{path}: QAT data must be an .npz file holding arrays 'x' and 'y'")
    if isinstance(data, dict):
        if "x" not in data or "y" not in data:
            found = ", ".join(one_line(k, 40) for k in sorted(map(str, data))[:20])
            raise MotError(f"QAT data must hold arrays 'x' and 'y', found: {found}")
        data = (data["x"], data["y"])
    x, y = data
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise MotError(f"QAT data: x has {len(x)} samples but y has {len(y)}")
    return x.astype(np.float32), y


def _default_loss(model, x, y):
    """A loss matching the labels and the model's output (probabilities or logits)."""
    out_shape = model.outputs[0].shape
    probe = np.asarray(model(x[:16], training=False))
    probs = bool(np.all(probe >= 0) and np.allclose(probe.sum(-1), 1.0, atol=1e-3)) if probe.shape[-1] > 1 else False
    if np.issubdtype(y.dtype, np.integer) and (y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1)) and out_shape[-1] > 1:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=not probs), ["accuracy"]
    if y.shape[1:] == tuple(out_shape[1:]) and out_shape[-1] > 1 and np.allclose(y.sum(-1), 1.0):
        return keras.losses.CategoricalCrossentropy(from_logits=not probs), ["accuracy"]
    return keras.losses.MeanSquaredError(), []


def train_qat(
    model,
    data,
    epochs: int = 3,
    batch_size: int = 32,
    learning_rate: float = 3e-4,
    validation_data=None,
    validation_split: float = 0.0,
    loss=None,
    metrics=None,
    calib_samples: int = 512,
    progress: bool = True,
    seed: int | None = 0,
) -> keras.Model:
    """Quantization-aware fine-tuning with `model.fit` (a float model is `quantize_model`d first).

    data: an .npz path with arrays x and y, or (x, y). The activation ranges are first
    calibrated on up to `calib_samples` samples (unless the model has trained ranges), then
    follow the EMA of the batch ranges. The loss is guessed from the labels and the model's
    output (sparse/categorical cross-entropy on probabilities or logits, else MSE) unless given.
    """
    x, y = _load_data(data)
    if not isinstance(model, keras.Model):
        raise MotError(f"QAT needs a Keras model, got {type(model).__name__}")
    want = tuple(model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise MotError(f"QAT data: x has samples of shape {tuple(x.shape[1:])}, the model takes {want}")
    if epochs < 0:
        raise MotError("QAT: epochs must be >= 0")
    qmodel = model if is_qat_model(model) else quantize_model(model)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if calib_samples and not any(float(q.act_seen.numpy()) > 0 for q in quantizers(qmodel)):
        idx = np.random.default_rng(0).permutation(len(x))[:calib_samples]
        calibrate(qmodel, x[idx], progress=progress)
    if loss is None:
        loss, default_metrics = _default_loss(qmodel, x, y)
        metrics = default_metrics if metrics is None else metrics
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics or [])
    if epochs:
        n_train = (
            len(x) if validation_data is not None or not validation_split else int(len(x) * (1 - validation_split))
        )
        steps = -(-n_train // batch_size)
        callbacks = [_RichProgress(epochs, steps)] if progress else []
        qmodel.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation_data,
            validation_split=validation_split,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    return qmodel


# ----------------------------------------------------------------------------------------------
# conversion


def convert_qat(qat_model, calib=None, io_float: bool = False) -> bytes:
    """An int8 .tflite carrying the QAT model's learned quantization (scales, zero points, weights).

    The TF converter runs in its quantization-aware mode: it reads the FakeQuant ops' ranges
    (no calibration), folds the batch norms and fuses ReLU/ReLU6 as the QAT layers did.
    `io_float`: keep float32 input/output (QUANTIZE/DEQUANTIZE at the borders) instead of int8.
    `calib` (optional, x samples): checks that the converted model agrees with the fake-quant
    model on them (argmax agreement >= 99 % for classifiers) and raises MotError otherwise.
    """
    if not is_qat_model(qat_model):
        raise MotError("convert_qat needs a QAT model (from quantize_model / train_qat)")
    for q in quantizers(qat_model):
        q.calibrating = False
    qlayers = [layer for layer in qat_model.layers if isinstance(layer, QuantLayer)]
    # The converter's QAT mode mishandles per-channel FakeQuant on FULLY_CONNECTED weights (it
    # transposes them), so the weights go in as constants already on their per-channel int8 grid:
    # the converter's own per-channel quantization (scale max|w|/127) maps them back onto the same
    # integers, and the biases onto the same int32 steps. Activations keep their FakeQuant ops.
    for layer in qlayers:
        kq, b = layer.quantized_weights()
        layer._export = (np.asarray(kq, np.float32), np.asarray(b, np.float32))
    try:
        conv = tf.lite.TFLiteConverter.from_keras_model(qat_model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if not io_float:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        with converter_output():  # the Keras export prints its signature; the converter its MLIR
            tfl = conv.convert()
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MotError(f"QAT conversion failed: {first}") from None
    finally:
        for layer in qlayers:
            layer._export = None
    if calib is not None:
        agreement = check_agreement(qat_model, tfl, np.asarray(calib, np.float32))
        if agreement is not None and agreement < 0.99:
            raise MotError(
                f"converted QAT model agrees with the fake-quant model on only {agreement:.1%} "
                "of the calibration samples (expected >= 99 %)"
            )
    return tfl


def _tflite_run(tfl: bytes, x: np.ndarray) -> np.ndarray:
    """Run the .tflite on float samples with the TF Lite interpreter (float outputs, dequantized)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType  # noqa: PLC0415  (TensorFlow Lite only where a check runs)

        it = Interpreter(model_content=tfl, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    except ImportError:  # pragma: no cover
        it = tf.lite.Interpreter(
            model_content=tfl, experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF
        )
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for i in range(len(x)):
        xi = x[i : i + 1]
        if inp["dtype"] != np.float32:
            s, z = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            xi = np.clip(np.round(xi / s) + z, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], xi.reshape(inp["shape"]))
        it.invoke()
        o = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            s, z = out["quantization"]
            o = (o - z) * s
        res.append(o.reshape(o.shape[1:]))
    return np.stack(res)


def check_agreement(qat_model, tfl: bytes, x: np.ndarray) -> float | None:
    """Fraction of samples where the .tflite's argmax equals the fake-quant model's, over the
    samples the fake-quant model decides clearly (top-1 ahead of top-2 by more than 2 % of the
    output range: an int8 output a step or two off may flip a near-tie). None if the model has
    several inputs/outputs or its output is not a class vector."""
    if len(qat_model.inputs) != 1 or len(qat_model.outputs) != 1:
        return None
    ref = np.asarray(qat_model.predict(x, verbose=0))
    if ref.ndim < 2 or ref.shape[-1] < 2:
        return None
    ref = ref.reshape(len(ref), -1)
    top2 = np.sort(ref, -1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.02 * max(float(ref.max() - ref.min()), 1e-12)
    if not clear.any():
        return None
    got = _tflite_run(tfl, x[clear]).reshape(int(clear.sum()), -1)
    return float(np.mean(got.argmax(-1) == ref[clear].argmax(-1)))


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, data)


def qat(
    model_path_or_model,
    data_path,
    epochs: int = 3,
    out_path=None,
    io_float: bool = False,
    batch_size: int = 32,
    learning_rate: float = 3e-4,
    progress: bool = True,
    **train_kwargs,
) -> bytes:
    """`mcu-mot optimize MODEL.keras --qat data.npz --epochs N -o m.tflite`: quantize the model for
    QAT, fine-tune it on data.npz (arrays x, y), convert to an int8 .tflite (written atomically
    to out_path when given) and return its bytes."""
    model = model_path_or_model
    if isinstance(model, (str, Path)) and not Path(model).is_file():
        raise MotError(f"Keras model not found: {model}")
    x, y = _load_data(data_path)
    if isinstance(model, (str, Path)):
        model = load_keras(model)
    qmodel = train_qat(
        model,
        (x, y),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        progress=progress,
        **train_kwargs,
    )
    tfl = convert_qat(qmodel, calib=x[:256], io_float=io_float)
    if out_path is not None:
        _write_atomic(Path(out_path), tfl)
    return tfl
