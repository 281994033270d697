"""mcu_mot: a deployment toolchain that takes TensorFlow/Keras models to 32-bit MCUs.

The deploy path (compile, simulate, build, size, flash, profile, run) never
imports TensorFlow so that build scripts start fast.
"""
from pathlib import Path

__version__ = "0.1.0"

#: repository root: templates/, firmware/ and boards/ live beside the package.
ROOT = Path(__file__).resolve().parent.parent


class MotError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def compile_model(*args, **kwargs):
    from .codegen.compile import compile_model as _compile
    return _compile(*args, **kwargs)


def simulate(*args, **kwargs):
    from .simulate import simulate as _simulate
    return _simulate(*args, **kwargs)
