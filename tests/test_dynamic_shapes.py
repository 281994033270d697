"""Models with a dynamic batch, where the converter stores placeholder shapes: a
Keras 3 Dense on a rank-3 input (SHAPE/GATHER/REDUCE_PROD + RESHAPE chains).
TFLite Micro cannot run them (no REDUCE_PROD), so the TF Lite reference kernels are
the reference."""

import numpy as np
import pytest
from harness import convert, keras_model, litert_run, random_inputs, save


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_dense_on_rank3_input(mode, tmp_path):
    import keras

    L = keras.layers
    m = keras_model(lambda x: L.Dense(10)(L.Flatten()(L.Dense(4)(L.Dense(12, activation="relu")(x)))), (8, 8))
    path = save(convert(m, mode), tmp_path, f"dense3d_{mode}")
    from mcu_mot.device.simulator import simulate

    (x,) = random_inputs(path, 5)
    (ours,) = simulate(path, x)
    assert np.array_equal(ours, litert_run(path, x))
