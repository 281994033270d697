"""The portable backend's per-op lowerings. Every module here registers its ops on import.

One module per C kernel family: <family>.py lowers to firmware/kernels/mm_<family>.c
(activation, batch_space, conv, conv_gemm, depthwise_conv, depthwise_conv_3x3,
elementwise, fully_connected, hybrid, nonlinear, pool, quantize, reduce, shape, softmax,
transpose_conv); besides them, reshape.py (views, no kernel) and common.py (helpers).
The op analysis both backends share is codegen/analysis.py."""

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
