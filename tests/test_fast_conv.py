"""CONV_2D on DSP and Helium cores (mm_conv_gemm: patch x weight-row kernel) is
bit-exact with TFLite Micro: on the host with the DSP instructions emulated (the
same weight layouts and code paths a Cortex-M4 runs) and on the emulated M4 and
M55 boards. Shapes hit every branch: 1x1 and k x k, in_c not a multiple of 4,
odd channel and pixel counts (the pair tails), clipped windows, strides,
dilation, first convs with one input channel, saturating activations."""

import pytest
from harness import assert_bit_exact, assert_device_bit_exact, convert, keras_model, needs_qemu_tools, save

needs_tools = needs_qemu_tools


def _conv(filters, kernel, strides=1, padding="same", dilation=1, activation=None):
    import keras

    return lambda x: keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding=padding,
        dilation_rate=dilation,
        activation=activation,
        name="gemm_conv",
    )(x)


SHAPES = {
    "pw_64": (_conv(64, 1), (5, 5, 64)),
    "pw_odd": (_conv(7, 1), (3, 5, 6)),
    "pw_in3": (_conv(5, 1, activation="relu6"), (4, 3, 3)),
    "k3_same": (_conv(9, 3, activation="relu"), (7, 6, 16)),
    "k3_s2": (_conv(8, 3, strides=2), (9, 8, 5)),
    "k3_valid": (_conv(3, 3, padding="valid"), (5, 7, 4)),
    "first_10x4": (_conv(12, (10, 4), strides=2), (15, 10, 1)),
    "first_3x3x3": (_conv(8, 3, strides=2, activation="relu6"), (11, 11, 3)),
    "one_pixel": (_conv(5, 3, padding="valid"), (3, 3, 2)),
    "wide_k": (_conv(3, (1, 5)), (2, 9, 9)),
}
SLOW_SHAPES = {
    "k5_s3": (_conv(6, 5, strides=3), (13, 11, 7)),
    "deep": (_conv(9, 3), (4, 4, 150)),  # int16: int64 chunks of 127 groups
    "pw_128": (_conv(33, 1), (3, 2, 128)),
}


def _model(tmp_path, name, mode, shapes):
    fn, shape = shapes[name]
    return save(convert(keras_model(fn, shape, seed=sum(map(ord, name))), mode), tmp_path, f"{name}_{mode}")


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_gemm_conv_dsp_path_on_host(tmp_path, name, mode):
    path = _model(tmp_path, name, mode, SHAPES)
    from mcu_mot.codegen.compile import generate

    kernels = {layer["kernel"] for layer in generate(path, isa="dsp").report["layers"]}
    assert any(k and k.startswith("mm_conv_gemm_") for k in kernels), kernels
    assert_bit_exact(path, n=3, isa="dsp")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("name", sorted(SLOW_SHAPES))
def test_gemm_conv_dsp_path_on_host_slow(tmp_path, name, mode):
    assert_bit_exact(_model(tmp_path, name, mode, SLOW_SHAPES), n=3, isa="dsp")


def _stack(x):
    import keras

    L = keras.layers
    x = L.Conv2D(8, (5, 3), strides=2, padding="same", activation="relu", name="gs_first")(x)
    x = L.Conv2D(16, 3, padding="same", name="gs_k3")(x)  # 16 channels: the 1x1 after it reads in place (MVE)
    x = L.Conv2D(6, 1, activation="relu6", name="gs_pw")(x)
    return L.Conv2D(5, 3, strides=2, dilation_rate=1, padding="valid", name="gs_last")(x)


@needs_tools
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_gemm_conv_on_the_device(tmp_path, board, mode):
    path = save(convert(keras_model(_stack, (17, 11, 3), seed=4), mode), tmp_path, f"stack_{mode}")
    report = assert_device_bit_exact(path, board, tmp_path / "build", n=2)
    assert sum(1 for layer in report["layers"] if (layer["kernel"] or "").startswith("mm_conv_gemm_")) == 4


def _boundary_model(tmp_path, mode, seed):
    """The conv stack with activation scales pushed 2^-20..2^20 off and extreme zero points:
    multipliers above one (left shifts), flushed to zero, saturation everywhere."""
    from test_boundaries import mutate_quantization

    data = convert(keras_model(_stack, (17, 11, 3), seed=seed), mode)
    return save(mutate_quantization(data, seed), tmp_path, f"boundary_{mode}_{seed}")


@pytest.mark.parametrize("seed", [3, 4, 6])  # seeds whose mutated model TFLM accepts
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_gemm_conv_boundaries_on_host(tmp_path, mode, seed):
    assert_bit_exact(_boundary_model(tmp_path, mode, seed), n=3, isa="dsp")


def test_gemm_exact_requantization_where_the_fast_one_is_not_proven(tmp_path, monkeypatch):
    """Random models take the SMMLAR requantization; with it refused, TFLM's exact one."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.codegen.ops import conv_gemm

    path = _model(tmp_path, "k3_same", "int8", SHAPES)
    assert "_rq" in generate(path, isa="dsp").files["model.c"]
    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))  # the host build is cached by model
    monkeypatch.setattr(conv_gemm, "_fast_requantization", lambda *a: "NULL")
    assert "_rq" not in generate(path, isa="dsp").files["model.c"]
    assert_bit_exact(path, n=3, isa="dsp")


@needs_tools
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_gemm_conv_boundaries_on_the_device(tmp_path, board, mode):
    """Both requantizations of each path: the proven-range one and the exact fallback."""
    path = _boundary_model(tmp_path, mode, 3)
    from mcu_mot.codegen.compile import generate

    isa = "mve" if board.endswith("an547") else "dsp"
    model_c = generate(path, isa=isa).files["model.c"]
    if (mode, isa) != ("int8", "mve"):  # Helium int8 has one (vector) requantization
        assert ".rq = NULL" in model_c and ".rq = mmw_" in model_c
    assert_device_bit_exact(path, board, tmp_path / "build", n=2)


def _grouped(x):
    """Grouped convs run the portable mm_conv kernel, whose unclipped windows are mm_dot_s8 runs
    (SXTB16/SMLAD on DSP, VMLADAVA on Helium): 5 and 8 channels per group, clipped windows."""
    import keras

    L = keras.layers
    x = L.Conv2D(8, 3, padding="same", groups=2, name="grp_a")(x)
    return L.Conv2D(6, (3, 1), strides=(2, 1), padding="same", groups=2, activation="relu", name="grp_b")(x)


@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_grouped_conv_dsp_path_on_host(tmp_path, mode):
    path = save(convert(keras_model(_grouped, (6, 5, 10), seed=7), mode), tmp_path, f"grouped_{mode}")
    from mcu_mot.codegen.compile import generate

    kernels = [layer["kernel"] for layer in generate(path, isa="dsp").report["layers"]]
    assert kernels.count(f"mm_conv_{'s8' if mode == 'int8' else 's16'}") == 2, kernels
    assert_bit_exact(path, n=3, isa="dsp")


@needs_tools
@pytest.mark.qemu
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547"])
def test_grouped_conv_on_the_device(tmp_path, board):
    path = save(convert(keras_model(_grouped, (6, 5, 10), seed=7), "int8"), tmp_path, "grouped_int8")
    assert_device_bit_exact(path, board, tmp_path / "build", n=2)
