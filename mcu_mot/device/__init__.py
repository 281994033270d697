"""device: the board side of the toolchain: targets (QEMU, a board on a serial port, the host
build of the firmware: prepare, launch, open the transport, close), the wire protocol's host
side, and the profiler. Nothing here imports TensorFlow.

    from mcu_mot.device import QemuTarget, profile_device
    with QemuTarget("build/an386").connect() as dev: ...
"""

import importlib

_EXPORTS = {
    "DeviceClient": ("client", "DeviceClient"),
    "DeviceError": ("transport", "DeviceError"),
    "Transport": ("transport", "Transport"),
    "QemuInstance": ("qemu", "QemuInstance"),
    "Target": ("target", "Target"),
    "QemuTarget": ("target", "QemuTarget"),
    "SerialTarget": ("target", "SerialTarget"),
    "HostTarget": ("target", "HostTarget"),
    "target_for": ("target", "target_for"),
    "HostDevice": ("host", "HostDevice"),
    "build_host_firmware": ("host", "build_host_firmware"),
    "profile_device": ("profile", "profile"),  # not "profile": that name is the submodule
}


def __getattr__(name):
    if name in _EXPORTS:
        mod, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    raise AttributeError(name)


__all__ = list(_EXPORTS)
