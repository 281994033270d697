"""Models with a dynamic batch, where the converter stores placeholder shapes: a
Keras 3 Dense on a rank-3 input (SHAPE/GATHER/REDUCE_PROD + RESHAPE chains).
TFLite Micro cannot run them (no REDUCE_PROD), so the TF Lite reference kernels are
the reference."""
import numpy as np
import pytest

from harness import convert, keras_model, random_inputs, save


def litert(path, x):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for k in range(x.shape[0]):
        it.set_tensor(i["index"], x[k:k + 1])
        it.invoke()
        outs.append(it.get_tensor(o["index"])[0])
    return np.stack(outs)


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_dense_on_rank3_input(mode, tmp_path):
    import keras
    L = keras.layers
    m = keras_model(lambda x: L.Dense(10)(L.Flatten()(L.Dense(4)(L.Dense(12, activation="relu")(x)))), (8, 8))
    path = save(convert(m, mode), tmp_path, f"dense3d_{mode}")
    from mcu_mot.simulate import simulate
    (x,) = random_inputs(path, 5)
    (ours,) = simulate(path, x)
    assert np.array_equal(ours, litert(path, x))
