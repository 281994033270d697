"""optimize: Keras model -> .tflite (post-training quantization, selective float layers,
mixed int8/int16x8 precision, dynamic range) and what each choice costs.

This stage imports TensorFlow; the deploy path (compile, simulate, build...) never does. The
names below load their module on first use, so that `mcu_mot.optimize.tfquiet` (which the
command line imports for -v) costs nothing at start-up.
"""

from __future__ import annotations

import importlib

_API = {
    "load_keras": "keras_io",
    "quantize": "ptq",
    "read_calibration": "ptq",
    "check_calibration": "ptq",
    "save_tflite": "ptq",
    "MODES": "ptq",
}

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
