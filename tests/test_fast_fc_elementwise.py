"""Fast FULLY_CONNECTED / ADD / pooling kernels (DSP on Cortex-M4, MVE on Cortex-M55): bit-exact
with TFLite Micro, on the host (isa plain and dsp, DSP instructions emulated) and on QEMU
(qemu-mps2-an386 = DSP, qemu-mps3-an547 = MVE).

Shapes cover the blocked weight layouts' edges: in_depth not a multiple of 4 / 8 / 16, out_depth
not a multiple of 4 (rows left over), batches > 1, int16 sums longer than one int32 chunk."""

from __future__ import annotations

import harness
import numpy as np
import pytest

needs_tools = harness.needs_qemu_tools

BOARDS = ["qemu-mps2-an386", "qemu-mps3-an547"]


def _layers():
    import keras

    return keras.layers


def _build(tmp_path, fn, shape, mode, name, lo=-1.0, hi=1.0, seed=0):
    model = harness.keras_model(fn, shape, seed=seed)
    return harness.save(
        harness.convert(model, mode, rep=harness.representative(shape, lo, hi, seed), seed=seed),
        tmp_path,
        f"{name}_{mode}",
    )


# ------------------------------------------------------------------ FULLY_CONNECTED
def fc_chain(widths, acts=None):
    """Dense layers in a chain: every (in, out) pair of consecutive widths is one FC."""
    L = _layers()

    def fn(x):
        for i, w in enumerate(widths):
            act = (acts or {}).get(i)
            x = L.Dense(w, activation=act, name=f"fc{i}_{w}")(x)
        return x

    return fn


FC_CASES = {
    # name: (input shape, widths, activations, rep range)
    "odd": ((37,), [5, 17, 3, 4, 1, 6], {1: "relu"}, (-1.0, 1.0)),
    "wide": ((530,), [12, 9, 64, 2], {0: "relu"}, (-1.0, 1.0)),
    "long": ((1030,), [10, 16], None, (0.0, 3.0)),  # int16: two int32 chunks; zp -128
    "skewed": ((21,), [8, 7], {0: "relu6"}, (-2.0, 0.05)),  # extreme zero point, relu6
    "tiny": ((1,), [3, 4], None, (-1.0, 1.0)),
}


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("case", sorted(FC_CASES))
def test_fc_host(tmp_path, case, mode):
    shape, widths, acts, (lo, hi) = FC_CASES[case]
    path = _build(tmp_path, fc_chain(widths, acts), shape, mode, f"fc_{case}", lo, hi)
    inputs = harness.random_inputs(path, 3, seed=1)
    for isa in ("plain", "dsp"):
        harness.assert_bit_exact(path, inputs, isa=isa)


def test_fc_layout_roundtrip():
    """Each blocked layout holds every weight exactly once (plus mve zero padding)."""
    from mcu_mot.codegen.ops.fully_connected import fc_blocked_layout

    rng = np.random.default_rng(0)
    for out_d, in_d in [(1, 1), (4, 4), (5, 17), (7, 33), (12, 64), (3, 9)]:
        w = rng.integers(-128, 128, (out_d, in_d)).astype(np.int8)
        for sfx in ("s8", "s16"):
            d = fc_blocked_layout(w, sfx, "dsp")
            assert d.size == w.size and sorted(d.tolist()) == sorted(w.ravel().tolist())
            g = 16 if sfx == "s8" else 8
            m = fc_blocked_layout(w, sfx, "mve")
            assert m.size == out_d * (-(-in_d // g) * g)
            assert np.count_nonzero(m) == np.count_nonzero(w)


@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_fc_device(tmp_path, board, mode):
    shape, widths, acts, (lo, hi) = FC_CASES["odd"]
    path = _build(tmp_path, fc_chain([19, 12, 5] + widths, acts), (70,), mode, "fc_dev", lo, hi)
    harness.assert_device_bit_exact(path, board, tmp_path / "build")


# ------------------------------------------------------------------ ADD / SUB
def addsub_model(n, relu=False, sub=False, bcast=False):
    """Two Dense branches of different scales combined by ADD (or SUB); bcast adds a [1, n] row to
    a [k, n] tensor (the broadcast loop nest, whose rows have unit strides too)."""
    L = _layers()

    def fn(x):
        a = L.Dense(n, name="br_a")(x)
        b = L.Dense(n, name="br_b")(x)
        b = L.Lambda(lambda t: t * 3.7, name="scale_b")(b)
        if bcast:
            a = L.Reshape((1, n), name="row_a")(a)
            b = L.Reshape((n, 1), name="col_b")(b)
        y = L.Subtract(name="sub")([a, b]) if sub else L.Add(name="add")([a, b])
        return L.ReLU(name="relu")(y) if relu else y

    return fn


ADD_CASES = {
    "n1": (1, False, False, False),
    "n7_relu": (7, True, False, False),
    "n16": (16, False, False, False),
    "n37_sub": (37, False, True, False),
    "n64_relu_sub": (64, True, True, False),
    "bcast5": (5, False, False, True),
}


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("case", sorted(ADD_CASES))
def test_addsub_host(tmp_path, case, mode):
    n, relu, sub, bcast = ADD_CASES[case]
    path = _build(tmp_path, addsub_model(n, relu, sub, bcast), (6,), mode, f"add_{case}", -1.0, 2.0)
    inputs = harness.random_inputs(path, 4, seed=2)
    for isa in ("plain", "dsp"):
        harness.assert_bit_exact(path, inputs, isa=isa)


@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_addsub_device(tmp_path, board, mode):
    L = _layers()

    def fn(x):
        a = L.Dense(39, name="da")(x)
        b = L.Lambda(lambda t: t * 0.3, name="sb")(L.Dense(39, name="db")(x))
        s = L.Add(name="add")([a, b])
        d = L.Subtract(name="sub")([b, L.ReLU(name="r")(s)])
        return L.Add(name="add2")(
            [L.Reshape((1, 39), name="ra")(d), L.Reshape((3, 1), name="rb")(L.Dense(3, name="d3")(x))]
        )

    path = _build(tmp_path, fn, (6,), mode, "add_dev", -1.0, 2.0)
    harness.assert_device_bit_exact(path, board, tmp_path / "build")


# ------------------------------------------------------------------ AVERAGE_POOL_2D
POOL_CASES = {
    # name: (input shape, pool size, strides, padding)
    "ds_cnn": ((25, 5, 64), (25, 5), None, "valid"),
    "same_odd": ((7, 6, 7), (3, 3), (2, 2), "same"),
    "global19": ((3, 3, 19), (3, 3), None, "valid"),
    "c21_s1": ((6, 5, 21), (2, 3), (1, 1), "same"),
    "big_window": ((17, 17, 5), (17, 16), None, "valid"),  # > 256 pixels: portable fallback
}


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_avg_pool_host(tmp_path, case, mode):
    shape, size, strides, padding = POOL_CASES[case]
    if mode == "int16" and size[0] * size[1] > 64:
        pytest.skip("TFLite Micro's int16 average pool refuses windows this large")
    L = _layers()

    def fn(x):
        return L.AveragePooling2D(size, strides=strides, padding=padding, name="pool")(x)

    path = _build(tmp_path, fn, shape, mode, f"pool_{case}", -1.0, 0.3)
    inputs = harness.random_inputs(path, 3, seed=3)
    for isa in ("plain", "dsp"):
        harness.assert_bit_exact(path, inputs, isa=isa)


@pytest.mark.qemu
@needs_tools
@pytest.mark.parametrize("board", BOARDS)
def test_avg_pool_device(tmp_path, board):
    L = _layers()

    def fn(x):
        a = L.AveragePooling2D((3, 3), strides=(2, 2), padding="same", name="p1")(x)
        return L.AveragePooling2D((4, 3), name="p2")(L.Conv2D(37, 1, name="c1")(a))

    path = _build(tmp_path, fn, (8, 6, 21), "int8", "pool_dev", -1.0, 0.3)
    harness.assert_device_bit_exact(path, board, tmp_path / "build")
