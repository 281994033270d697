"""mcu_mot: a deployment toolchain that takes TensorFlow/Keras models to 32-bit MCUs.

The deploy path (compile, simulate, build, size, flash, profile, run) never
imports TensorFlow so that build scripts start fast. The functions below are the
Python API for build scripts; each imports its stage only when called.
"""

from mcu_mot.errors import MotError
from mcu_mot.version import __version__

__all__ = ["MotError", "__version__", "compile_model", "simulate", "build"]


def compile_model(*args, **kwargs):
    """mcu_mot.flows.deploy.compile_model: OUT/model.c, model.h, kernels/, report.json."""
    from mcu_mot.flows.deploy import compile_model as _compile  # lazy: keep `import mcu_mot` instant

    return _compile(*args, **kwargs)


def simulate(*args, **kwargs):
    """mcu_mot.device.simulator.simulate: run the generated C on the host."""
    from mcu_mot.device.simulator import simulate as _simulate  # lazy: keep `import mcu_mot` instant

    return _simulate(*args, **kwargs)


def build(*args, **kwargs):
    """mcu_mot.flows.deploy.build_firmware: firmware ELF + report.json for a board."""
    from mcu_mot.flows.deploy import build_firmware as _build  # lazy: keep `import mcu_mot` instant

    return _build(*args, **kwargs)
