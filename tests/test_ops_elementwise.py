"""ADD/SUB/MUL, RELU/RELU6/LEAKY_RELU/HARD_SWISH, QUANTIZE/DEQUANTIZE: bit-exact with TFLM.

Two kinds of models:
- Keras models converted by the TF converter (int8, int16x8, float; io_float for
  QUANTIZE/DEQUANTIZE at the borders);
- one-op .tflite files written directly with the schema's object API, to reach
  what the converter never emits: extreme zero points and scales, int16 with
  non-zero zero points, every requantize pair, saturating float inputs.
"""

from __future__ import annotations

import harness as H
import numpy as np
import pytest

MODES = ["int8", "int16", "float"]


# ---------------------------------------------------------------- helpers
def multi_input_model(fn, shapes, seed=0):
    """Keras model with inputs in_0, in_1, ... (names sort in input order)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = [keras.Input(s, name=f"in_{i}") for i, s in enumerate(shapes)]
    return keras.Model(inputs, fn(*inputs))


def rep_for(model, ranges, seed=0):
    """Representative data as {input name: array}, input k drawn from ranges[k]."""
    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(16):
            yield {
                t.name: rng.uniform(lo, hi, (1,) + tuple(t.shape[1:])).astype(np.float32)
                for t, (lo, hi) in zip(model.inputs, ranges)
            }

    return rep


def convert(model, mode, ranges=None, io_float=False):
    rep = rep_for(model, ranges) if ranges is not None else None
    return H.convert(model, mode, rep=rep, io_float=io_float)


def check(tmp_path, tflite, inputs=None, n=3, name="model"):
    """simulate == TFLM bit for bit (floats compared as bit patterns, so NaN == NaN)."""
    from mcu_mot.device.simulator import simulate

    path = H.save(tflite, tmp_path, name)
    inputs = inputs if inputs is not None else H.random_inputs(path, n)
    ours, ref = simulate(path, inputs), H.tflm_run(path, inputs)
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        b = b.reshape(a.shape)
        assert a.dtype == b.dtype, (k, a.dtype, b.dtype)
        if a.tobytes() != b.tobytes():
            bits = {1: np.uint8, 2: np.uint16, 4: np.uint32}[a.itemsize]
            bad = np.argwhere(a.view(bits) != b.view(bits))
            where = tuple(bad[0])
            raise AssertionError(
                f"output {k} differs at {len(bad)} of {a.size} places; first at "
                f"{where}: ours {a[where]!r}, TFLM {b[where]!r}"
            )
    return ours


def ops_of(path):
    from mcu_mot.ir import read_tflite

    return [op.opcode for op in read_tflite(path).ops]


def graph_model(ops):
    """A .tflite of independent operators, each with its own tensors.

    ops: list of (opcode, inputs, outputs, options); inputs/outputs are dicts with
    shape, dtype, scale, zp, data (inputs with data are constants). Graph inputs are
    the non-constant inputs in order, graph outputs all outputs in order.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as S

    ttype = {
        "float32": S.TensorType.FLOAT32,
        "int8": S.TensorType.INT8,
        "int16": S.TensorType.INT16,
        "int32": S.TensorType.INT32,
    }
    m = S.ModelT()
    m.version = 3
    m.buffers = [S.BufferT()]
    m.operatorCodes = []
    sg = S.SubGraphT()
    sg.tensors, sg.operators, sg.inputs, sg.outputs = [], [], [], []
    codes = {}
    activation_bytes = 0

    def tensor(spec, name):
        nonlocal activation_bytes
        t = S.TensorT()
        t.name, t.shape, t.type = name, list(spec["shape"]), ttype[spec["dtype"]]
        if spec.get("scale") is not None:
            qp = S.QuantizationParametersT()
            qp.scale, qp.zeroPoint = [float(spec["scale"])], [int(spec.get("zp", 0))]
            t.quantization = qp
        buf = S.BufferT()
        if spec.get("data") is not None:
            buf.data = list(np.ascontiguousarray(spec["data"], dtype=spec["dtype"]).tobytes())
        else:
            activation_bytes += int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize
        m.buffers.append(buf)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    for k, (opcode, ins, outs, opts) in enumerate(ops):
        if opcode not in codes:
            code = S.OperatorCodeT()
            code.builtinCode = getattr(S.BuiltinOperator, opcode)
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            codes[opcode] = len(m.operatorCodes)
            m.operatorCodes.append(code)
        op = S.OperatorT()
        op.opcodeIndex = codes[opcode]
        op.inputs = [tensor(spec, f"op{k}_in{i}") for i, spec in enumerate(ins)]
        op.outputs = [tensor(spec, f"op{k}_out{i}") for i, spec in enumerate(outs)]
        if opts is not None:
            op.builtinOptionsType = getattr(S.BuiltinOptions, type(opts).__name__[:-1])
            op.builtinOptions = opts
        sg.operators.append(op)
        sg.inputs += [t for t, spec in zip(op.inputs, ins) if spec.get("data") is None]
        sg.outputs += op.outputs
    # the reference interpreter sizes its arena as 10x the file: pad the file
    pad = S.BufferT()
    pad.data = [0] * (activation_bytes // 4 + 1024)
    m.buffers.append(pad)
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def op_model(opcode, inputs, outputs, options=None):
    return graph_model([(opcode, inputs, outputs, options)])


def options(kind, **fields):
    from tensorflow.lite.python import schema_py_generated as S

    o = getattr(S, kind + "T")()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def q(shape, dtype, scale=None, zp=0, data=None):
    return dict(shape=shape, dtype=dtype, scale=scale, zp=zp, data=data)


def sweep(dtype, shape, n=1, seed=None):
    """n samples holding every value of the dtype (cycled, or evenly spaced from min to
    max when there are fewer elements than values); shuffled when a seed is given."""
    info = np.iinfo(dtype)
    total = n * int(np.prod(shape, dtype=np.int64))
    count = int(info.max) - int(info.min) + 1
    if total >= count:
        flat = np.resize(np.arange(info.min, info.max + 1, dtype=np.int64), total)
    else:
        flat = np.linspace(info.min, info.max, total).round().astype(np.int64)
    if seed is not None:
        flat = np.random.default_rng(seed).permutation(flat)
    return flat.reshape((n,) + tuple(shape)).astype(dtype)


# ---------------------------------------------------------------- Keras: binary ops
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", ["Add", "Subtract", "Multiply"])
def test_binary_keras(tmp_path, layer, mode):
    """Same shapes, input-2 broadcast, input-1 broadcast, fused RELU / RELU6."""
    import keras

    def fn(a, b, c):
        op = getattr(keras.layers, layer)
        return [
            op()([a, b]),  # (4,4,3) op (1,1,3)
            keras.layers.ReLU(6.0)(op()([b, c])),  # broadcast first input, relu6
            keras.layers.ReLU()(op()([a, c])),
        ]  # same shape, fused relu

    model = multi_input_model(fn, [(4, 4, 3), (1, 1, 3), (4, 4, 3)])
    # different ranges give different scales and zero points per input
    tfl = convert(model, mode, [(-1, 1), (-3, 0.5), (0, 2)])
    path = H.save(tfl, tmp_path)
    opcode = {"Add": "ADD", "Subtract": "SUB", "Multiply": "MUL"}[layer]
    assert ops_of(path).count(opcode) == 3
    H.assert_bit_exact(path, n=3)


@pytest.mark.parametrize(
    "layer,mode", [("Add", "int8"), ("Multiply", "int16"), ("Subtract", "float"), ("Multiply", "int8")]
)
def test_broadcast_patterns_5d(tmp_path, layer, mode):
    """5-D tensors broadcast in inner, middle, outer and all dimensions."""
    import keras

    shapes = [(2, 3, 4, 5), (1, 3, 1, 5), (2, 1, 4, 1), (1, 1, 1, 1), (2, 3, 4, 1), (1, 1, 4, 5)]

    def fn(a, *others):
        op = getattr(keras.layers, layer)
        return [op()([a, o]) if i % 2 == 0 else op()([o, a]) for i, o in enumerate(others)]

    model = multi_input_model(fn, shapes)
    check(tmp_path, convert(model, mode, [(-1, 1), (-0.5, 2), (-2, 0.2), (0.1, 1), (-1, 1), (-4, 4)]))


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_constant_operands(tmp_path, mode):
    """Rescaling: MUL and ADD with constant scalar operands."""
    import keras

    model = H.keras_model(lambda x: keras.layers.Rescaling(1 / 127.5, -1)(x), (8, 3))
    path = H.save(convert(model, mode), tmp_path)
    assert ops_of(path) == ["MUL", "ADD"]
    H.assert_bit_exact(path)


@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_dense_branches(tmp_path, mode):
    """Two Dense branches of one input joined by Add, Subtract and Multiply; the
    elementwise outputs may be planned over their dying inputs."""
    import keras

    def fn(x):
        a = keras.layers.Dense(6)(x)
        b = keras.layers.Dense(6, activation="relu")(x)
        s = keras.layers.Add()([a, b])
        d = keras.layers.Subtract()([s, keras.layers.Dense(6)(x)])
        return keras.layers.Multiply()([d, keras.layers.Dense(1)(x)])

    model = H.keras_model(fn, (10,))
    path = H.save(convert(model, mode), tmp_path)
    assert {"ADD", "SUB", "MUL"} <= set(ops_of(path))
    H.assert_bit_exact(path, n=4)


# ---------------------------------------------------------------- Keras: activations
def _activations(x, with_hard_swish=True):
    import keras

    outs = [
        keras.layers.ReLU()(x),
        keras.layers.ReLU(max_value=6.0)(x),
        keras.layers.LeakyReLU(negative_slope=0.2)(x),
        keras.layers.LeakyReLU(negative_slope=1.7)(x),
    ]
    if with_hard_swish:
        outs.append(keras.layers.Activation("hard_swish")(x))
    return outs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rng", [(-1, 1), (0.3, 9), (-7, -0.4)], ids=["sym", "zp-128", "zp127"])
def test_activations_keras(tmp_path, mode, rng):
    """Standalone activations on the input: they requantize between different scales."""
    if mode == "int16" and rng[1] < 0:
        # an all-negative int16 RELU gets a denormal output scale (a factor ~1e38 that
        # we refuse, see test_degenerate_scale_refused); keep a sliver of positives
        rng = (rng[0], 0.3)
    model = H.keras_model(lambda x: _activations(x, mode != "int16"), (6, 7, 3))
    path = H.save(convert(model, mode, [rng]), tmp_path)
    ops = ops_of(path)
    for opcode in ("RELU", "RELU6", "LEAKY_RELU"):
        assert opcode in ops
    H.assert_bit_exact(path, n=3)


def test_hard_swish_int16_unsupported(tmp_path):
    """TFLM has no int16 HARD_SWISH; neither do we."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.errors import MotError

    path = H.save(op_model("HARD_SWISH", [q([1, 8], "int16", 0.001)], [q([1, 8], "int16", 0.001)]), tmp_path)
    with pytest.raises(MotError, match="HARD_SWISH"):
        generate(path)


@pytest.mark.parametrize("mode", ["int8", "int16"])
def test_quantize_dequantize_io_float(tmp_path, mode):
    """io_float models: QUANTIZE float->int at the input, DEQUANTIZE at the output."""
    import keras

    def fn(a, b):
        return keras.layers.Add()([a, keras.layers.LeakyReLU(negative_slope=0.1)(b)])

    model = multi_input_model(fn, [(5, 7), (5, 7)])
    path = H.save(convert(model, mode, [(-2, 2), (-0.5, 3)], io_float=True), tmp_path)
    ops = ops_of(path)
    assert ops.count("QUANTIZE") == 2 and ops.count("DEQUANTIZE") == 1
    rng = np.random.default_rng(1)
    inputs = [rng.uniform(-3, 4, (3, 5, 7)).astype(np.float32) for _ in range(2)]
    # saturation, signed zeros, tiny and large finite values
    inputs[0][0, 0, :] = [1e6, -1e6, 0.0, -0.0, 1e-30, 7e5, -3e4]
    H.assert_bit_exact(path, inputs=inputs)


# ---------------------------------------------------------------- one-op models: extremes
BINARY_EXTREMES = [
    # (dtype, (s1, z1), (s2, z2), (s_out, z_out), fused activation)
    ("int8", (0.02, -128), (0.02, 127), (0.04, 0), 0),
    ("int8", (1.0, 127), (0.001, -128), (0.05, -128), 0),  # one input dominates
    ("int8", (0.5, 0), (0.7, 3), (1e-4, 0), 0),  # saturates both ways
    ("int8", (0.01, 5), (0.03, -9), (0.02, 10), 1),  # fused RELU (SUB: double multipliers)
    ("int8", (0.01, 5), (0.03, -9), (0.02, 10), 2),  # fused RELU_N1_TO_1
    ("int8", (0.1, -100), (0.01, 100), (0.05, 120), 3),  # fused RELU6
    ("int8", (3e-3, 1), (4e-3, -1), (0.001890657003968954, -2), 3),  # RELU6 bound: float rounding
    ("int16", (0.001, 0), (0.0003, 0), (0.0005, 0), 0),
    ("int16", (0.002, 0), (0.002, 0), (3e-6, 0), 3),  # saturates, fused RELU6
    ("int16", (0.01, 0), (0.01, 0), (0.00042435817886143923, 0), 2),  # RELU_N1_TO_1 bound rounding
    ("int16", (0.01, 100), (0.003, -7), (0.02, 5), 0),  # int16 with zero points (ADD/SUB only)
]


@pytest.mark.parametrize("opcode", ["ADD", "SUB", "MUL"])
def test_binary_extremes(tmp_path, opcode):
    """Extreme zero points and scales, saturation, every fused activation; one model per op
    holding every case, with same-shape and broadcast second inputs."""
    kind = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[opcode]
    ops, inputs = [], []
    for k, (dtype, (s1, z1), (s2, z2), (so, zo), fused) in enumerate(BINARY_EXTREMES):
        if opcode == "MUL" and dtype == "int16" and (z1, z2, zo) != (0, 0, 0):
            continue  # TFLM's int16 MUL requires zero points 0
        shape_b = [1, 1, 8] if k % 2 else [1, 32, 8]
        ops.append(
            (
                opcode,
                [q([1, 32, 8], dtype, s1, z1), q(shape_b, dtype, s2, z2)],
                [q([1, 32, 8], dtype, so, zo)],
                options(kind, fusedActivationFunction=fused),
            )
        )
        inputs += [sweep(dtype, (32, 8), n=4, seed=k), sweep(dtype, shape_b[1:], n=4, seed=k + 100)]
    check(tmp_path, graph_model(ops), inputs=inputs)


def test_binary_float_extremes(tmp_path):
    """Float: overflow to inf is clamped to FLT_MAX (TFLM's activation range); NaN passes."""
    big = np.float32(3e38)
    a = np.array([[big, -big, big, np.inf, -np.inf, np.nan, 1.5, -0.0]], np.float32)
    b = np.array([[big, -big, -big, 1.0, 2.0, 1.0, -2.25, 0.0]], np.float32)
    ops, inputs = [], []
    for opcode, kind in (("ADD", "AddOptions"), ("SUB", "SubOptions"), ("MUL", "MulOptions")):
        for fused in (0, 1, 2, 3):
            ops.append(
                (
                    opcode,
                    [q([1, 8], "float32"), q([1, 8], "float32")],
                    [q([1, 8], "float32")],
                    options(kind, fusedActivationFunction=fused),
                )
            )
            inputs += [a, b]
    check(tmp_path, graph_model(ops), inputs=inputs)


def test_binary_scalar_constant(tmp_path):
    """Rank-0 and broadcast constant second inputs."""
    c = np.arange(-60, 120, 30, dtype=np.int8).reshape(1, 1, 6)
    ops = [
        (
            "ADD",
            [q([1, 4, 6], "int8", 0.05, -3), q([], "int8", 0.2, 7, data=np.int8(-90))],
            [q([1, 4, 6], "int8", 0.1, 2)],
            options("AddOptions", fusedActivationFunction=0),
        ),
        (
            "MUL",
            [q([1, 4, 6], "int8", 0.05, -3), q([1, 1, 6], "int8", 0.01, 4, data=c)],
            [q([1, 4, 6], "int8", 0.02, -5)],
            options("MulOptions", fusedActivationFunction=0),
        ),
        (
            "SUB",
            [q([1, 1, 6], "int16", 0.01, 0, data=c.astype(np.int16) * 200), q([1, 4, 6], "int16", 0.003, 0)],
            [q([1, 4, 6], "int16", 0.02, 0)],
            options("SubOptions", fusedActivationFunction=0),
        ),
    ]
    check(
        tmp_path,
        graph_model(ops),
        inputs=[sweep("int8", (4, 6), 2, 0), sweep("int8", (4, 6), 2, 1), sweep("int16", (4, 6), 2, 2)],
    )


UNARY_INT8 = [  # (s_in, z_in, s_out, z_out)
    (0.02, 0, 0.015, -10),
    (0.1, -128, 0.05, -100),
    (0.5, 127, 0.01, 50),
    (20.0, 3, 1.0, 0),
    (1e-4, -50, 2e-4, 60),
    (0.03, 10, 0.003, -128),
    (0.003, -128, 0.03, 127),
    (0.0010919469641521573, -91, 0.0016898915637284517, -4),  # HARD_SWISH: double multiplier
]


@pytest.mark.parametrize("opcode", ["RELU", "RELU6", "LEAKY_RELU", "HARD_SWISH"])
def test_unary_int8_exhaustive(tmp_path, opcode):
    """Every int8 input value, across scales and zero points (incl. output/input scale > 1)."""
    ops = []
    for k, (s_in, z_in, s_out, z_out) in enumerate(UNARY_INT8):
        if opcode == "HARD_SWISH" and s_in >= 128 * s_out:
            continue  # TFLM rejects an output multiplier >= 1 for HARD_SWISH
        opts = options("LeakyReluOptions", alpha=[0.2, 1.5, 0.01, -0.3][k % 4]) if opcode == "LEAKY_RELU" else None
        ops.append((opcode, [q([1, 256], "int8", s_in, z_in)], [q([1, 256], "int8", s_out, z_out)], opts))
    check(tmp_path, graph_model(ops), inputs=[sweep("int8", (256,))] * len(ops))


UNARY_INT16 = [  # (s_in, s_out, alpha) found to tell float from double multiplier math apart
    (1.4514166650769766e-05, 1.1095860827481374e-05, 0.35119831562042236),
    (7.201187690952793e-05, 2.5783081582630984e-05, 0.35119831562042236),
    (0.001, 0.0005, 1.25),
    (3e-5, 1e-5, 0.05),
    (0.001890657003968954, 0.0012643557274714112, 0.7),  # RELU6: 6 / scale rounds in float
]


@pytest.mark.parametrize("opcode", ["RELU", "RELU6", "LEAKY_RELU"])
def test_unary_int16_exhaustive(tmp_path, opcode):
    """Every int16 input value (TFLM needs zero points 0 for int16 RELU only)."""
    ops = []
    for k, (s_in, s_out, alpha) in enumerate(UNARY_INT16):
        z_in = 0 if opcode == "RELU" else [0, 0, 37, -300, 0][k]
        opts = options("LeakyReluOptions", alpha=alpha) if opcode == "LEAKY_RELU" else None
        ops.append((opcode, [q([1, 512], "int16", s_in, z_in)], [q([1, 512], "int16", s_out, 0)], opts))
    x = sweep("int16", (512,), n=128)
    check(tmp_path, graph_model(ops), inputs=[x] * len(ops))


def test_unary_float(tmp_path):
    """Float activations on special values (signed zeros, denormals, inf, NaN, +-3 for hard swish)."""
    x = np.array(
        [[0.0, -0.0, 1e-40, -1e-40, 3.0, -3.0, 6.0, 6.5, -2.9999, np.inf, -np.inf, np.nan, 1e30, -1e30, 2.5, -0.7]],
        np.float32,
    )
    ops = []
    for opcode in ("RELU", "RELU6", "LEAKY_RELU", "HARD_SWISH"):
        opts = options("LeakyReluOptions", alpha=0.2) if opcode == "LEAKY_RELU" else None
        ops.append((opcode, [q([1, 16], "float32")], [q([1, 16], "float32")], opts))
    check(tmp_path, graph_model(ops), inputs=[x] * len(ops))


REQUANT_SCALES = [
    ((0.05, 3), (0.0071, -2)),
    ((0.001, -128), (0.5, 127)),
    ((0.3, 127), (0.3, -128)),
    ((2e-5, 0), (1e-3, 0)),
    ((0.02, -1), (1e-4, 1)),
]


def test_requantize(tmp_path):
    """QUANTIZE int8/int16 -> int8/int16, every input value, scale ratios below and above 1."""
    ops, inputs = [], []
    for din in ("int8", "int16"):
        for dout in ("int8", "int16"):
            for (s_in, z_in), (s_out, z_out) in REQUANT_SCALES:
                z_in, z_out = z_in * (100 if din == "int16" else 1), z_out * (100 if dout == "int16" else 1)
                ops.append(("QUANTIZE", [q([1, 512], din, s_in, z_in)], [q([1, 512], dout, s_out, z_out)], None))
                inputs.append(sweep(din, (512,), n=128))
    check(tmp_path, graph_model(ops), inputs=inputs)


def quantize_probe_values(scale, dtype, seed=0):
    """Floats next to a rounding tie of x / scale where float and double division round
    differently (TFLM divides in float), plus saturating and special values."""
    rng = np.random.default_rng(seed)
    s = np.float32(scale)
    k = rng.integers(-100 if dtype == "int8" else -30000, 100 if dtype == "int8" else 30000, 200000)
    v = ((k + 0.5) * float(s)).astype(np.float32)
    v = np.nextafter(v, np.where(rng.random(v.size) < 0.5, np.inf, -np.inf).astype(np.float32))

    def rnd(x):
        return np.where(x >= 0, np.floor(x + 0.5), -np.floor(-x + 0.5))

    differ = v[rnd((v / s).astype(np.float32).astype(np.float64)) != rnd(v.astype(np.float64) / float(s))]
    special = np.array(
        [1e6, -1e6, 0.0, -0.0, 1e-38, -1e-38, 1e-45, 127.5 * s, -128.5 * s, 32767.5 * s, -32768.5 * s], np.float32
    )
    out = np.concatenate([special, differ[:53], rng.uniform(-300, 300, 64).astype(np.float32) * s])
    return np.resize(out, 128).astype(np.float32)


QUANT_FLOAT = [(0.0078125, -128), (0.013, 127), (3.7e-5, 0), (250.0, -77), (0.0123, 3)]


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_quantize_dequantize_float(tmp_path, dtype):
    """float -> int (roundf(x / scale) + zp, saturating) and int -> float."""
    ops, inputs = [], []
    for k, (scale, zp) in enumerate(QUANT_FLOAT):
        zp = zp if dtype == "int8" else zp * 50
        ops.append(("QUANTIZE", [q([1, 128], "float32")], [q([1, 128], dtype, scale, zp)], None))
        inputs.append(np.stack([quantize_probe_values(scale, dtype, k), quantize_probe_values(scale, dtype, k + 9)]))
        ops.append(("DEQUANTIZE", [q([1, 128], dtype, scale, zp)], [q([1, 128], "float32")], None))
        inputs.append(sweep(dtype, (128,), n=2, seed=k))
    check(tmp_path, graph_model(ops), inputs=inputs)


# ---------------------------------------------------------------- lowering details
def test_degenerate_scale_refused(tmp_path):
    """A rescaling factor >= 2^31 would need a left shift past 31 bits: refused clearly."""
    from mcu_mot.codegen.compile import generate
    from mcu_mot.errors import MotError

    path = H.save(op_model("RELU", [q([1, 8], "int16", 2e-4)], [q([1, 8], "int16", 3.6e-43)]), tmp_path)
    with pytest.raises(MotError, match="RELU.*too large"):
        generate(path)


def test_broadcast_loops_merge():
    from mcu_mot.codegen.ops.elementwise import broadcast_loops

    assert broadcast_loops(None, (1, 4, 4, 3), (1, 4, 4, 3), (1, 4, 4, 3)) is None
    assert broadcast_loops(None, (1, 4, 4, 3), (1, 1, 1, 3), (1, 4, 4, 3)) == ([16, 3], [3, 1], [0, 1])
    assert broadcast_loops(None, (2, 1, 5), (2, 3, 5), (2, 3, 5)) == ([2, 3, 5], [5, 0, 1], [15, 5, 1])
    assert broadcast_loops(None, (1, 1), (), (1, 1)) is None
    assert broadcast_loops(None, (3, 1, 1), (1, 1, 7), (3, 1, 7)) == ([3, 7], [1, 0], [0, 1])


def test_inplace_declared(tmp_path):
    """Same-shape elementwise ops may overwrite input 0; a broadcast input is never overwritten."""
    import mcu_mot.codegen.ops  # noqa: F401  (registers the lowerings)
    from mcu_mot.codegen.lowering import LoweringContext, lower_op
    from mcu_mot.ir import read_tflite

    tfl = op_model(
        "ADD",
        [q([1, 1, 3], "int8", 0.1, 0), q([1, 4, 3], "int8", 0.1, 0)],
        [q([1, 4, 3], "int8", 0.1, 0)],
        options("AddOptions", fusedActivationFunction=0),
    )
    g = read_tflite(H.save(tfl, tmp_path))
    call = lower_op(g.ops[0], LoweringContext())
    assert call.inplace == (1, 0)
    tfl = op_model("QUANTIZE", [q([1, 8], "int8", 0.1, 0)], [q([1, 8], "int16", 0.01, 0)])
    g = read_tflite(H.save(tfl, tmp_path, "q"))
    assert lower_op(g.ops[0], LoweringContext()).inplace is None
