"""SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, which Keras 3 emits for dilated convolutions.

TFLite Micro's SPACE_TO_BATCH_ND pads with an uninitialized value (its params'
output_offset is never set), so its results vary from run to run; the TF Lite
interpreter (ai-edge-litert) pads with the zero point, as we do, and is the
reference here."""

import numpy as np
import pytest
from harness import convert, keras_model, litert_run, random_inputs, save


@pytest.mark.parametrize("mode", ["int8", "float"])
@pytest.mark.parametrize("dilation,padding", [(2, "same"), (2, "valid"), (3, "same")])
def test_dilated_conv_through_space_to_batch(mode, dilation, padding, tmp_path):
    import keras

    from mcu_mot.device.simulator import simulate
    from mcu_mot.ir import read_tflite

    model = keras_model(
        lambda x: keras.layers.Conv2D(5, 3, dilation_rate=dilation, padding=padding, activation="relu")(x), (11, 9, 3)
    )
    path = save(convert(model, mode), tmp_path, f"dil_{mode}")
    assert "SPACE_TO_BATCH_ND" in [op.opcode for op in read_tflite(path).ops]
    (x,) = random_inputs(path, 4)
    (ours,) = simulate(path, x)
    ref = litert_run(path, x)
    assert np.array_equal(ours, ref)
