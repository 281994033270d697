"""Fast DEPTHWISE_CONV_2D kernels (3x3, depth multiplier 1: mm_depthwise_conv_3x3.c; DSP on
Cortex-M4, MVE on Cortex-M55) and the generic fallback: bit-exact with TFLite Micro on the host
(isa plain and dsp, DSP instructions emulated) and on QEMU (qemu-mps2-an386 = DSP,
qemu-mps3-an547 = MVE).

Shapes cover the pad row at every border, strides 1 and 2, dilation, channel counts that are not
a multiple of 4 / 16 (tail group), tiny images (every window clipped), saturating activations,
extreme zero points, and the exact-requantization variant (shift >= 0 or unproven bounds)."""

from __future__ import annotations

import harness
import numpy as np
import pytest

needs_tools = harness.needs_qemu_tools

BOARDS = ["qemu-mps2-an386", "qemu-mps3-an547"]


def _layers():
    import keras

    return keras.layers


def dw(name, kernel=3, act=None, scale=None, **kw):
    """DepthwiseConv2D; `scale` multiplies its weights (extreme requantization multipliers)."""

    def fn(x):
        layer = _layers().DepthwiseConv2D(kernel, activation=act, name=name, **kw)
        y = layer(x)
        if scale is not None:
            layer.kernel.assign(layer.kernel.numpy() * scale)
        return y

    return fn


def dilated_dw(name, dilation, padding="same"):
    """DEPTHWISE_CONV_2D with a dilations attribute (Keras 3 would use SPACE_TO_BATCH)."""

    def fn(x):
        import keras
        import tensorflow as tf

        class RawDw(keras.layers.Layer):
            def build(self, shape):
                self.kernel = self.add_weight(shape=(3, 3, shape[-1], 1), initializer="glorot_uniform", name="kernel")
                self.bias = self.add_weight(shape=(shape[-1],), initializer="zeros", name="bias")

            def call(self, x):
                y = tf.raw_ops.DepthwiseConv2dNative(
                    input=x,
                    filter=self.kernel,
                    strides=[1, 1, 1, 1],
                    padding=padding.upper(),
                    dilations=[1, *dilation, 1],
                )
                return tf.nn.bias_add(y, self.bias)

        return RawDw(name=name)(x)

    return fn


def _build(tmp_path, fn, shape, mode, name, lo=-1.0, hi=1.0, seed=0):
    model = harness.keras_model(fn, shape, seed=seed)
    return harness.save(
        harness.convert(model, mode, rep=harness.representative(shape, lo, hi, seed), seed=seed),
        tmp_path,
        f"{name}_{mode}",
    )


# name: (layers, input shape, rep range)
CASES = {
    "s1_c64": (dw("dw_s1_c64", padding="same", act="relu"), (7, 5, 64), (-1.0, 1.0)),
    "s2_c16": (dw("dw_s2_c16", strides=2, padding="same", act="relu6"), (9, 8, 16), (-1.0, 1.0)),
    "s2_odd": (dw("dw_s2_odd", strides=2, padding="same"), (7, 9, 7), (-1.0, 1.0)),
    "valid_c5": (dw("dw_valid_c5", padding="valid"), (6, 7, 5), (0.0, 3.0)),  # zp -128
    "c1": (dw("dw_c1", padding="same"), (5, 4, 1), (-1.0, 1.0)),
    "c2_s21": (dw("dw_c2_s21", strides=(2, 1), padding="same"), (6, 5, 2), (-2.0, 0.5)),
    "c3_tiny": (dw("dw_c3_tiny", padding="same", act="relu"), (1, 2, 3), (-1.0, 1.0)),  # all clipped
    "c19_1x1": (dw("dw_c19_1x1", padding="same"), (1, 1, 19), (-1.0, 1.0)),
    "neg_zp": (dw("dw_neg_zp", padding="same", act="relu6"), (5, 6, 12), (-3.0, -1.0)),  # zp +127
    "c33_s2_valid": (dw("dw_c33_s2_valid", strides=2, padding="valid"), (7, 7, 33), (-1.0, 1.0)),
    "dil2": (dilated_dw("dw_dil2", (2, 2)), (9, 10, 7), (-1.0, 1.0)),
    "dil12_valid": (dilated_dw("dw_dil12_valid", (1, 2), "valid"), (6, 9, 6), (-1.0, 1.0)),
    # saturating: big weights, narrow output range (clamps hit on both sides)
    "sat": (dw("dw_sat", padding="same", act="relu6", scale=8.0), (5, 5, 8), (-1.0, 1.0)),
    # the generic kernel: other filter sizes and depth multipliers
    "k5_dm1": (dw("dw_k5_dm1", 5, padding="same"), (7, 6, 6), (-1.0, 1.0)),
    "k3_dm2": (dw("dw_k3_dm2", depth_multiplier=2, padding="same"), (5, 5, 3), (-1.0, 1.0)),
}


@pytest.mark.parametrize("isa", ["plain", "dsp"])
@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_depthwise_host(tmp_path, case, mode, isa):
    fn, shape, (lo, hi) = CASES[case]
    path = _build(tmp_path, fn, shape, mode, case, lo, hi)
    harness.assert_bit_exact(path, n=3, isa=isa)


def _kernels(path, isa):
    from mcu_mot.codegen.compile import generate

    return generate(path, "portable", "host", isa=isa).files["model.c"]


def test_fast_path_taken(tmp_path):
    """The 3x3 kernels (fast requantization for ordinary scales) are what the DSP lowering picks."""
    fn, shape, (lo, hi) = CASES["s1_c64"]
    src = _kernels(_build(tmp_path, fn, shape, "int8", "taken"), "dsp")
    assert "mm_depthwise_conv_3x3_s8(" in src
    src = _kernels(_build(tmp_path, fn, shape, "int16", "taken"), "dsp")
    assert "mm_depthwise_conv_3x3_s16(" in src
    fn, shape, _ = CASES["k3_dm2"]
    src = _kernels(_build(tmp_path, fn, shape, "int8", "taken_dm2"), "dsp")
    assert "mm_depthwise_conv_s8(" in src and "3x3" not in src


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("case", ["s2_odd", "c3_tiny", "neg_zp", "sat"])
def test_exact_requant_variant(tmp_path, monkeypatch, case, mode):
    """mm_depthwise_conv_3x3_<s8|s16>_q: the TFLM requantization, for layers the fast one cannot prove."""
    from mcu_mot.codegen.ops import depthwise_conv_3x3

    monkeypatch.setattr(depthwise_conv_3x3, "FORCE_EXACT_RQ", True)
    fn, shape, (lo, hi) = CASES[case]
    path = _build(tmp_path, fn, shape, mode, f"exactrq_{case}", lo, hi, seed=7)  # own cache key
    assert f"mm_depthwise_conv_3x3_{'s8' if mode == 'int8' else 's16'}_q(" in _kernels(path, "dsp")
    harness.assert_bit_exact(path, n=3, isa="dsp")


def test_fast_requant_formula():
    """(SMMLAR(2a, M, C) + (2a >> 31)) >> E == RDBP(SRDHM(a, M), E) + zp, ties and signs included."""
    rng = np.random.default_rng(0)

    def srdhm(a, m):
        ab = a * m
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        r = ab + nudge
        return r >> 31 if r >= 0 else -((-r) >> 31)

    def rdbp(x, e):
        mask = (1 << e) - 1
        return (x >> e) + ((x & mask) > (mask >> 1) + (1 if x < 0 else 0))

    for _ in range(20000):
        e = int(rng.integers(1, 16))
        m = int(rng.integers(1 << 30, 1 << 31)) if rng.integers(0, 4) else 1 << 30
        zp = int(rng.integers(-128, 128))
        a = int(rng.integers(-(1 << 20), 1 << 20)) if rng.integers(0, 2) else int(rng.integers(-4, 4))
        # ties of the final division: pick a so that srdhm(a, m) lands on a half
        c = (1 << (e - 1)) + zp * (1 << e)
        u = ((c << 32) + 2 * a * m + (1 << 31)) >> 32
        got = (u + (-1 if a < 0 else 0)) >> e
        assert got == rdbp(srdhm(a, m), e) + zp, (a, m, e, zp)
    # exhaustive small t around ties
    for e in (1, 2, 3, 5):
        for t in range(-70, 70):
            # a with srdhm(a, 2^30) == t: a = 2t
            a = 2 * t
            c = 1 << (e - 1)
            u = ((c << 32) + 2 * a * (1 << 30) + (1 << 31)) >> 32
            assert (u + (-1 if a < 0 else 0)) >> e == rdbp(srdhm(a, 1 << 30), e)


# ------------------------------------------------------------------ QEMU
def _benchmark_like(name):
    """MobileNet / DS-CNN shaped block: 3x3 s1 and s2 depthwise with pointwise convs between."""
    L = _layers()

    def fn(x):
        y = L.DepthwiseConv2D(3, padding="same", activation="relu", name=f"{name}_dw1")(x)
        y = L.Conv2D(20, 1, activation="relu", name=f"{name}_pw1")(y)
        y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6", name=f"{name}_dw2")(y)
        y = L.DepthwiseConv2D(3, padding="valid", name=f"{name}_dw3")(y)
        return L.DepthwiseConv2D((3, 2), padding="same", name=f"{name}_dw4")(y)  # generic kernel

    return fn


@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_depthwise_device(tmp_path, board, mode):
    path = _build(tmp_path, _benchmark_like("dq"), (11, 9, 13), mode, "dwdev")
    harness.assert_device_bit_exact(path, board, tmp_path / "build", n=3)


@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", BOARDS)
def test_depthwise_device_odd(tmp_path, board):
    """Channel tails, tiny image and a saturating layer on the device."""
    L = _layers()

    def fn(x):
        y = dw("do_sat", padding="same", act="relu6", scale=8.0)(x)
        y = L.DepthwiseConv2D(3, strides=2, padding="same", name="do_s2")(y)
        return L.DepthwiseConv2D(3, padding="same", activation="relu", name="do_tiny")(y)

    path = _build(tmp_path, fn, (4, 3, 35), "int8", "dwdev_odd")
    harness.assert_device_bit_exact(path, board, tmp_path / "build", n=3)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("seed", range(10))
def test_depthwise_sweep(tmp_path, mode, seed):
    rng = np.random.default_rng(seed)
    s = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = str(rng.choice(["same", "valid"]))
    act = [None, "relu", "relu6"][int(rng.integers(0, 3))]
    h, w, c = int(rng.integers(3, 14)), int(rng.integers(3, 14)), int(rng.integers(1, 40))
    lo = float(rng.uniform(-3, 0))
    path = _build(
        tmp_path,
        dw(f"dw_sweep{seed}", strides=s, padding=pad, act=act),
        (h, w, c),
        mode,
        f"sweep{seed}",
        lo,
        lo + float(rng.uniform(0.2, 4)),
        seed=seed,
    )
    for isa in ("plain", "dsp"):
        harness.assert_bit_exact(path, n=3, isa=isa)
