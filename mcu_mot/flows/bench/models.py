"""Benchmark models, made here with Keras 3 at random weights (no downloads):
the MLPerf Tiny architectures and a small conv+FC speech model."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ds_cnn():
    """DS-CNN (KWS): 49x10x1 MFCC input, 10x4 stride-2 first conv, 4 depthwise-separable blocks."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from keras import layers as L  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    inp = keras.Input((49, 10, 1))
    x = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(inp)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])))(x)
    x = L.Flatten()(x)
    x = L.Softmax()(L.Dense(12)(x))
    return keras.Model(inp, x, name="ds_cnn")


def resnet8():
    """ResNet-8 (MLPerf Tiny image classification), 32x32x3."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from keras import layers as L  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    inp = keras.Input((32, 32, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(filters, 3, strides=stride, padding="same")(x)))
        y = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same")(y))
        if stride != 1 or int(x.shape[-1]) != filters:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=int(x.shape[1]))(x)
    x = L.Softmax()(L.Dense(10)(L.Flatten()(x)))
    return keras.Model(inp, x, name="resnet8")


def mobilenet_v1_025():
    """MobileNetV1 alpha 0.25 at 96x96x3 (MLPerf Tiny visual wake words), 2 classes."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from keras import layers as L  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    def block(x, filters, stride):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = L.ReLU(6.0)(L.BatchNormalization()(x))
        x = L.Conv2D(filters, 1, use_bias=False)(x)
        return L.ReLU(6.0)(L.BatchNormalization()(x))

    inp = keras.Input((96, 96, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)))
    for filters, stride in (
        (16, 1),
        (32, 2),
        (32, 1),
        (64, 2),
        (64, 1),
        (128, 2),
        (128, 1),
        (128, 1),
        (128, 1),
        (128, 1),
        (128, 1),
        (256, 2),
        (256, 1),
    ):
        x = block(x, filters, stride)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Softmax()(L.Dense(2)(x))
    return keras.Model(inp, x, name="mobilenet_v1_025")


def conv_fc_speech():
    """A small conv + FC speech model: 49x40x1 log-mel input, 10x8 stride-2 conv."""
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    from keras import layers as L  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    inp = keras.Input((49, 40, 1))
    x = L.Conv2D(28, (10, 8), strides=2, padding="same", activation="relu")(inp)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)
    x = L.Softmax()(L.Dense(12)(x))
    return keras.Model(inp, x, name="conv_fc_speech")


MODELS = {"ds_cnn": ds_cnn, "resnet8": resnet8, "mobilenet_v1_025": mobilenet_v1_025, "conv_fc_speech": conv_fc_speech}


def randomize(model, seed: int = 0):
    """Random but realistic BN statistics and biases so quantization ranges are not trivial."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
        elif "moving_mean" in v.path or "beta" in v.path or "bias" in v.path:
            v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
    return model


def build_tflite(name: str, mode: str, out_dir, seed: int = 0):
    """Make, randomize and convert a benchmark model; cached by name/mode in out_dir."""
    out = Path(out_dir) / f"{name}_{mode}.tflite"
    if out.exists():
        return out
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
    import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    keras.utils.set_random_seed(seed)
    model = randomize(MODELS[name](), seed)
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1,) + shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    if mode == "int8":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int16
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(conv.convert())
    return out
