"""CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV: bit-exact against TFLite Micro (int8, int16x8, float32)."""

import harness
import numpy as np
import pytest

MODES = ["int8", "int16", "float"]


def _layers():
    import keras

    return keras.layers


def conv(filters, kernel, **kw):
    return lambda x: _layers().Conv2D(filters, kernel, **kw)(x)


def dwconv(kernel, **kw):
    return lambda x: _layers().DepthwiseConv2D(kernel, **kw)(x)


def tconv(filters, kernel, **kw):
    return lambda x: _layers().Conv2DTranspose(filters, kernel, **kw)(x)


def dilated(filters, kernel, dilation, padding="same", depthwise=False, dm=1, act=None):
    """Dilated CONV_2D / DEPTHWISE_CONV_2D. Keras 3 lowers dilation through
    SPACE_TO_BATCH_ND + BATCH_TO_SPACE_ND, so emit the TF ops with a dilations attribute."""

    def build(x):
        import keras
        import tensorflow as tf

        class RawConv(keras.layers.Layer):
            def build(self, shape):
                c = shape[-1]
                ks = (*kernel, c, dm) if depthwise else (*kernel, c, filters)
                self.kernel = self.add_weight(shape=ks, initializer="glorot_uniform", name="kernel")
                self.bias = self.add_weight(shape=(c * dm if depthwise else filters,), initializer="zeros", name="bias")

            def call(self, x):
                dil = [1, *dilation, 1]
                if depthwise:
                    y = tf.raw_ops.DepthwiseConv2dNative(
                        input=x, filter=self.kernel, strides=[1, 1, 1, 1], padding=padding.upper(), dilations=dil
                    )
                else:
                    y = tf.nn.conv2d(x, self.kernel, strides=1, padding=padding.upper(), dilations=dil)
                return tf.nn.bias_add(y, self.bias)

        y = RawConv()(x)
        if act == "relu":
            return keras.layers.ReLU()(y)
        if act == "relu6":
            return keras.layers.ReLU(max_value=6.0)(y)
        return y

    return build


def conv_bn(filters, kernel, act=None, **kw):
    def build(x):
        L = _layers()
        y = L.Conv2D(filters, kernel, **kw)(x)
        y = L.BatchNormalization()(y)
        return L.Activation(act)(y) if act else y

    return build


CASES = {
    # CONV_2D
    "conv_3x3_same_relu": (conv(5, 3, padding="same", activation="relu"), (8, 9, 3)),
    "conv_10x4_s2_valid_nobias": (conv(7, (10, 4), strides=2, padding="valid", use_bias=False), (16, 11, 5)),
    "conv_3x3_dil2_same_relu6": (dilated(4, (3, 3), (2, 2), "same", act="relu6"), (9, 10, 7)),
    "conv_2x3_dil3x1_valid": (dilated(3, (2, 3), (3, 1), "valid"), (9, 8, 5)),
    "conv_3x2_dil2x3_same_big": (dilated(5, (3, 2), (2, 3), "same", act="relu"), (4, 5, 3)),
    "conv_1x1": (conv(3, 1, use_bias=False), (5, 6, 8)),
    "conv_5x3_s2_same_relu6": (conv(6, (5, 3), strides=2, padding="same", activation="relu6"), (7, 12, 3)),
    "conv_2x3_s21_same": (conv(5, (2, 3), strides=(2, 1), padding="same"), (7, 6, 5)),
    "conv_4x4_s2_same_even": (conv(4, 4, strides=2, padding="same", activation="relu"), (9, 8, 3)),
    "conv_kernel_bigger_than_input": (conv(3, 5, padding="same"), (3, 2, 5)),
    "conv_grouped": (conv(9, 3, padding="same", groups=3, activation="relu"), (7, 6, 6)),
    "conv_bn_relu": (conv_bn(6, 3, act="relu", padding="same"), (8, 8, 3)),
    "conv_bn_nobias_s2": (conv_bn(5, (3, 2), strides=2, use_bias=False), (9, 7, 4)),
    # DEPTHWISE_CONV_2D
    "dw_3x3_same_relu": (dwconv(3, padding="same", activation="relu"), (8, 9, 5)),
    "dw_5x2_dm2_s2_valid": (dwconv((5, 2), depth_multiplier=2, strides=2, padding="valid"), (11, 8, 3)),
    "dw_3x3_dm3_relu6_nobias": (
        dwconv(3, depth_multiplier=3, padding="same", activation="relu6", use_bias=False),
        (9, 8, 5),
    ),
    "dw_3x3_dil2_same_relu": (dilated(0, (3, 3), (2, 2), "same", depthwise=True, act="relu"), (9, 10, 7)),
    "dw_4x2_dm2_dil3x1_valid": (dilated(0, (4, 2), (3, 1), "valid", depthwise=True, dm=2), (11, 6, 3)),
    "dw_4x4_s2_same": (dwconv(4, strides=2, padding="same"), (9, 10, 7)),
    "dw_10x4_dm2_same": (dwconv((10, 4), depth_multiplier=2, padding="same"), (12, 6, 3)),
    # TRANSPOSE_CONV (output_shape, weights, input, [bias])
    "tconv_3x3_s2_same_relu": (tconv(4, 3, strides=2, padding="same", activation="relu"), (5, 4, 3)),
    "tconv_4x3_s21_valid_nobias": (tconv(7, (4, 3), strides=(2, 1), padding="valid", use_bias=False), (4, 5, 5)),
    "tconv_2x2_s2_valid_relu6": (tconv(3, 2, strides=2, padding="valid", activation="relu6"), (4, 3, 7)),
    "tconv_5x5_s3_same": (tconv(5, 5, strides=3, padding="same"), (3, 4, 3)),
    "tconv_1x1_s2_valid": (tconv(3, 1, strides=2, padding="valid"), (3, 4, 5)),
    "tconv_2x3_s3_same": (tconv(4, (2, 3), strides=3, padding="same"), (3, 3, 2)),
    "tconv_3x3_s1_same": (tconv(5, 3, padding="same"), (4, 5, 3)),
}


def _rep(shape, lo, hi, seed=1):
    def rep():
        rng = np.random.default_rng(seed)
        for _ in range(16):
            yield [rng.uniform(lo, hi, (1,) + shape).astype(np.float32)]

    return rep


def _inputs(path, n=3):
    """Random full-range samples plus an all-max and an all-min one (saturation)."""
    x = harness.random_inputs(path, n)[0]
    if x.dtype == np.float32:
        return [x]
    info = np.iinfo(x.dtype)
    ext = np.stack([np.full(x.shape[1:], info.max, x.dtype), np.full(x.shape[1:], info.min, x.dtype)])
    return [np.concatenate([x, ext])]


def _check(tmp_path, build, shape, mode, lo=-0.4, hi=1.2, seed=0, name="m"):
    model = harness.keras_model(build, shape, seed=seed)
    path = harness.save(harness.convert(model, mode, rep=_rep(shape, lo, hi)), tmp_path, name)
    harness.assert_bit_exact(path, inputs=_inputs(path))
    return path


# Extra geometry variants, run with -m slow (the fast set keeps the file under a minute).
SLOW_CASES = {
    "conv_2x3_dil3x1_valid",
    "conv_1x1",
    "conv_5x3_s2_same_relu6",
    "conv_2x3_s21_same",
    "conv_bn_nobias_s2",
    "dw_4x4_s2_same",
    "dw_10x4_dm2_same",
    "dw_3x3_dil2_same_relu",
    "tconv_2x2_s2_valid_relu6",
    "tconv_2x3_s3_same",
    "tconv_3x3_s1_same",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES])
def test_conv_family(tmp_path, case, mode):
    build, shape = CASES[case]
    path = _check(tmp_path, build, shape, mode)
    from mcu_mot.ir import read_tflite

    ops = {op.opcode for op in read_tflite(path).ops}
    want = {"conv": "CONV_2D", "dw": "DEPTHWISE_CONV_2D", "tconv": "TRANSPOSE_CONV"}[case.split("_")[0]]
    assert want in ops, ops


# Extreme input zero points (-128 / +127): all-positive or all-negative calibration data,
# so the folded zero-point correction and the border path both carry large offsets.
@pytest.mark.parametrize("lo,hi", [(0.0, 2.0), (-3.0, -0.5)], ids=["zp_min", "zp_max"])
@pytest.mark.parametrize("case", ["conv_3x3_dil2_same_relu6", "dw_4x2_dm2_dil3x1_valid", "tconv_3x3_s2_same_relu"])
def test_int8_extreme_zero_points(tmp_path, case, lo, hi):
    build, shape = CASES[case]
    path = _check(tmp_path, build, shape, "int8", lo, hi)
    from mcu_mot.ir import read_tflite

    zp = int(read_tflite(path).inputs[0].quant.zero_point[0])
    assert zp in ((-128,) if lo >= 0 else (127, 126)), zp


def _convert_int16_bias32(model, shape):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _rep(shape, -1.0, 1.0)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    conv.inference_input_type = tf.int16
    conv.inference_output_type = tf.int16
    conv._experimental_full_integer_quantization_bias_type = tf.int32
    return conv.convert()


@pytest.mark.parametrize("case", ["conv_3x3_same_relu", "conv_10x4_s2_valid_nobias"])
def test_int16_conv_int32_bias(tmp_path, case):
    """int16x8 CONV_2D with int32 bias: TFLM accumulates in (wrapping) int32."""
    build, shape = CASES[case]
    model = harness.keras_model(build, shape)
    path = harness.save(_convert_int16_bias32(model, shape), tmp_path)
    harness.assert_bit_exact(path, inputs=_inputs(path))


@pytest.mark.parametrize("case", ["dw_3x3_same_relu", "tconv_3x3_s2_same_relu"])
def test_int16_int32_bias_unsupported(tmp_path, case):
    """TFLM reads an int32 bias as int64 in int16 DEPTHWISE/TRANSPOSE: refuse clearly."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.errors import MotError

    build, shape = CASES[case]
    model = harness.keras_model(build, shape)
    path = harness.save(_convert_int16_bias32(model, shape), tmp_path)
    with pytest.raises(MotError, match="int32 bias"):
        generate(path)


def test_conv_chain_int8(tmp_path):
    """Conv -> depthwise -> conv transpose in one model (arena planning of the depthwise scratch)."""

    def build(x):
        L = _layers()
        y = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
        y = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(y)
        return L.Conv2DTranspose(3, 3, strides=2, padding="same")(y)

    _check(tmp_path, build, (10, 8, 3), "int8")


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(12))
def test_random_conv_sweep(tmp_path, mode, seed):
    rng = np.random.default_rng(seed)
    kind = ["conv", "dw", "tconv"][seed % 3]
    kh, kw = (int(v) for v in rng.integers(1, 6, 2))
    s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = str(rng.choice(["same", "valid"]))
    act = [None, "relu", "relu6"][int(rng.integers(0, 3))]
    use_bias = bool(rng.integers(0, 2))
    h, w, c = int(rng.integers(max(kh, 3), 12)), int(rng.integers(max(kw, 3), 12)), int(rng.integers(1, 8))
    if kind == "conv" and s == (1, 1) and seed % 2:
        d = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if pad == "valid":
            h, w = max(h, (kh - 1) * d[0] + 1), max(w, (kw - 1) * d[1] + 1)
        build = dilated(int(rng.integers(1, 9)), (kh, kw), d, pad, act=act)
    elif kind == "conv":
        build = conv(int(rng.integers(1, 9)), (kh, kw), strides=s, padding=pad, activation=act, use_bias=use_bias)
    elif kind == "dw":
        build = dwconv(
            (kh, kw),
            strides=s,
            padding=pad,
            depth_multiplier=int(rng.integers(1, 4)),
            activation=act,
            use_bias=use_bias,
        )
    else:
        build = tconv(int(rng.integers(1, 9)), (kh, kw), strides=s, padding=pad, activation=act, use_bias=use_bias)
    _check(tmp_path, build, (h, w, c), mode, seed=seed)
