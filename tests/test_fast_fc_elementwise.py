"""Fast FULLY_CONNECTED / ADD / pooling kernels (DSP on Cortex-M4, MVE on Cortex-M55): bit-exact
with TFLite Micro, on the host (isa plain and dsp, DSP instructions emulated) and on QEMU
(qemu-mps2-an386 = DSP, qemu-mps3-an547 = MVE).

Shapes cover the blocked weight layouts' edges: in_depth not a multiple of 4 / 8 / 16, out_depth
not a multiple of 4 (rows left over), batches > 1, int16 sums longer than one int32 chunk."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import harness

needs_tools = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm or arm-none-eabi-gcc is not installed")

BOARDS = ["qemu-mps2-an386", "qemu-mps3-an547"]


def _layers():
    import keras
    return keras.layers


def _rep(shape, lo, hi, seed=0):
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(16):
            yield [rng.uniform(lo, hi, (1,) + tuple(shape)).astype(np.float32)]
    return rep


def _build(tmp_path, fn, shape, mode, name, lo=-1.0, hi=1.0, seed=0):
    model = harness.keras_model(fn, shape, seed=seed)
    return harness.save(harness.convert(model, mode, rep=_rep(shape, lo, hi, seed), seed=seed),
                        tmp_path, f"{name}_{mode}")


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
    "long": ((1030,), [10, 16], None, (0.0, 3.0)),           # int16: two int32 chunks; zp -128
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
