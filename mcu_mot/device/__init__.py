"""device: the board side of the toolchain: launch (QEMU) or attach (serial port), the wire
protocol's host side, and the profiler. Nothing here imports TensorFlow.

    from mcu_mot.device import DeviceClient, QemuInstance, profile_device
"""

_EXPORTS = {
    "DeviceClient": ("client", "DeviceClient"),
    "DeviceError": ("transport", "DeviceError"),
    "Transport": ("transport", "Transport"),
    "QemuInstance": ("qemu", "QemuInstance"),
    "HostDevice": ("host", "HostDevice"),
    "build_host_firmware": ("host", "build_host_firmware"),
    "profile_device": ("profile", "profile"),   # not "profile": that name is the submodule
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib
        mod, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    raise AttributeError(name)


__all__ = list(_EXPORTS)
