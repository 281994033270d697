"""The one loader of Keras model files (optimize, QAT and debug all read models through it)."""

from __future__ import annotations

from pathlib import Path

from mcu_mot.errors import MotError
from mcu_mot.safetext import one_line


def load_keras(path):
    """Load a Keras 3 .keras model without compiling it (QAT layers included once
    mcu_mot.optimize.qat is imported); a one-line MotError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise MotError(f"Keras model not found: {path}")
    if path.suffix != ".keras":
        raise MotError(f"{path}: expected a Keras 3 model file (.keras)")
    import keras  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise MotError(
            one_line(f"{path}: not a readable Keras model ({type(exc).__name__}: {msg[:200]})", 400)
        ) from None
