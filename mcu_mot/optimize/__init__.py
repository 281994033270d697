"""optimize: Keras model -> .tflite (post-training quantization, selective float layers,
mixed int8/int16x8 precision, dynamic range) and what each choice costs.

This stage imports TensorFlow; the deploy path (compile, simulate, build...) never does.
"""

from __future__ import annotations

from mcu_mot.optimize.keras_io import load_keras
from mcu_mot.optimize.ptq import MODES, check_calibration, quantize, read_calibration, save_tflite

__all__ = ["quantize", "load_keras", "read_calibration", "check_calibration", "save_tflite", "MODES"]
