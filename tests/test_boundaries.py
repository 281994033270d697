"""Boundary values: the same models with their activation quantization pushed to
the extremes (zero points at the ends of the range, scales 2^-20..2^20 off,
so multipliers flush to zero, go above one, and everything saturates).
Generated C and the TFLite Micro interpreter must still agree bit for bit."""

import numpy as np
import pytest
from harness import assert_bit_exact, convert, keras_model, random_inputs, save

REQUANTIZING = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL"}
# TFLM aborts the process (TFLITE_CHECK) when an ADD/SUB rescale factor reaches 1, so tensors
# that feed or leave these ops keep their scale and only get extreme zero points.
SCALE_SENSITIVE = {"ADD", "SUB", "MUL"}


def mutate_quantization(data: bytes, seed: int) -> bytes:
    """Rewrite scale/zero point of tensors produced by requantizing ops (object API of TF's schema)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    rng = np.random.default_rng(seed)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    sg = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    consumers = {}
    for op in sg.operators:
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(names[codes[op.opcodeIndex]])
    outputs = set(int(t) for t in sg.outputs)
    for op in sg.operators:
        if names[codes[op.opcodeIndex]] not in REQUANTIZING:
            continue
        t = int(op.outputs[0])
        if not all(c in REQUANTIZING for c in consumers.get(t, [])) and t not in outputs:
            continue
        tensor = sg.tensors[t]
        q = tensor.quantization
        if q is None or q.scale is None:
            continue
        int16 = tensor.type == schema.TensorType.INT16
        touches_elementwise = names[codes[op.opcodeIndex]] in SCALE_SENSITIVE or any(
            c in SCALE_SENSITIVE for c in consumers.get(t, [])
        )
        if not touches_elementwise:
            q.scale = [float(np.float32(q.scale[0] * 2.0 ** rng.choice([-20, -9, -3, 0, 3, 9, 20])))]
        q.zeroPoint = [0 if int16 else int(rng.choice([-128, 127, -100, 0, 90]))]
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _fc_model():
    import keras

    return keras_model(lambda x: keras.layers.Dense(9)(keras.layers.Dense(13, activation="relu")(x)), (17,))


def _conv_model():
    import keras

    L = keras.layers
    return keras_model(
        lambda x: L.Conv2D(4, 1)(
            L.DepthwiseConv2D(3, padding="same")(L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x))
        ),
        (9, 7, 3),
    )


def _residual_model():
    import keras

    L = keras.layers

    def body(x):
        a = L.Conv2D(5, 1)(x)
        b = L.Conv2D(5, 3, padding="same")(x)
        return L.Multiply()([L.Add()([a, b]), L.Subtract()([a, b])])

    return keras_model(body, (6, 6, 2))


MODELS = {"fc": _fc_model, "conv": _conv_model, "residual": _residual_model}


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("seed", range(4))
def test_extreme_quantization(name, mode, seed, tmp_path):
    data = convert(MODELS[name](), mode)
    path = save(mutate_quantization(data, seed), tmp_path, f"{name}_{mode}_{seed}")
    assert_bit_exact(path, random_inputs(path, 6, seed))
