"""DeviceClient: the protocol's requests as Python calls (numpy in, numpy out).

    with DeviceClient("socket://127.0.0.1:4321") as dev:
        print(dev.info())
        (y,) = dev.run(x)              # x: (N, *input_shape) -> y: (N, *output_shape)
        ticks = dev.get_profile()      # per layer, last INVOKE
"""
from __future__ import annotations

import os

import numpy as np

from .. import MotError
from . import protocol as P
from .transport import DeviceError, Transport


def sample_shape(shape) -> tuple:
    """Per-sample shape: the model's shape without a leading batch dimension of 1 (as `simulate`)."""
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] == 1 else shape


class DeviceClient:
    """Talk to mcu_mot firmware on `port` (a pyserial port name or URL, or an open Transport)."""

    def __init__(self, port, *, timeout: float = 1.0, retries: int = 5, invoke_timeout: float = 120.0,
                 baudrate: int = 115200, sync: bool = True):
        self.transport = port if isinstance(port, Transport) else Transport(port, timeout=timeout, retries=retries,
                                                                           baudrate=baudrate)
        self.invoke_timeout = float(invoke_timeout)
        self._info: P.DeviceInfo | None = None
        self._layers: list | None = None
        if sync:
            # A PING with a random nonce: flushes whatever the line held and replaces the device's
            # reply cache, so a request of ours can never be mistaken for a retry of an older one.
            nonce = os.urandom(8)
            if self.ping(nonce) != nonce:
                raise MotError(f"{self.port}: PING answered with different bytes")

    @property
    def port(self) -> str:
        return self.transport.port

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, type_: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        return self.transport.request(type_, payload, timeout=timeout)

    # ---- requests ----
    def ping(self, data: bytes = b"") -> bytes:
        return self.request(P.PING, data)

    def info(self, refresh: bool = False) -> P.DeviceInfo:
        if self._info is None or refresh:
            info = P.parse_info(self.request(P.INFO))
            if info.version != P.VERSION:
                raise MotError(f"device on {self.port} speaks protocol version {info.version}, "
                               f"this mcu_mot speaks {P.VERSION}")
            self._info = info
        return self._info

    def stats(self) -> dict:
        return P.parse_stats(self.request(P.STATS))

    def layer_info(self, layer: int) -> dict:
        return P.parse_layer_info(self.request(P.LAYER_INFO, P.layer_info_payload(layer)))

    def layers(self) -> list[dict]:
        """Name, op, MACs and output placement of every layer (kernel call), from the device."""
        if self._layers is None:
            self._layers = [self.layer_info(i) for i in range(self.info().layers)]
        return self._layers

    def check_model(self, model_hash) -> None:
        """MotError unless the device runs the model whose hash (int or hex string, first 8 hex digits) is given."""
        want = int(str(model_hash)[:8], 16) if isinstance(model_hash, str) else int(model_hash)
        have = self.info().model_hash
        if want != have:
            raise MotError(f"the device on {self.port} runs model {have:08x} ('{self.info().name}'), "
                           f"not {want:08x}: flash the new build first")

    def set_input(self, index: int, array) -> None:
        """Write input `index` (the whole tensor, in chunks)."""
        info = self.info()
        if not 0 <= index < len(info.inputs):
            raise MotError(f"the model has {len(info.inputs)} input(s), no input {index}")
        spec = info.inputs[index]
        a = np.asarray(array)
        if a.dtype != np.dtype(spec.dtype):
            raise MotError(f"input {index} must be {spec.dtype}, got {a.dtype}")
        data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        if len(data) != spec.bytes:
            raise MotError(f"input {index} must have shape {sample_shape(spec.shape)} ({spec.bytes} bytes), "
                           f"got {a.shape}")
        chunk = min(P.INPUT_CHUNK, info.max_payload - 6)
        for off in range(0, len(data), chunk):
            reply = self.request(P.SET_INPUT, P.set_input_payload(index, off, data[off:off + chunk]))
            got = int.from_bytes(reply[:4], "little")
            if got != min(off + chunk, len(data)):
                raise MotError(f"device on {self.port} acknowledged {got} bytes of input {index}, "
                               f"expected {min(off + chunk, len(data))}")

    def invoke(self, first: int = 0, last: int | None = None) -> tuple[int, int]:
        """Run layers [first, last] (all by default). Returns (total ticks, layers run)."""
        return P.parse_invoke(self.request(P.INVOKE, P.invoke_payload(first, last), timeout=self.invoke_timeout))

    def _read(self, type_, make, size: int) -> bytes:
        step = self.info().max_payload
        out = bytearray()
        for off in range(0, size, step):
            n = min(step, size - off)
            part = self.request(type_, make(off, n))
            if len(part) != n:
                raise MotError(f"device on {self.port} sent {len(part)} bytes, asked for {n}")
            out += part
        return bytes(out)

    def get_output(self, index: int) -> np.ndarray:
        """Output `index` of the last INVOKE, shaped (per sample) and typed from INFO."""
        info = self.info()
        if not 0 <= index < len(info.outputs):
            raise MotError(f"the model has {len(info.outputs)} output(s), no output {index}")
        spec = info.outputs[index]
        raw = self._read(P.GET_OUTPUT, lambda off, n: P.get_output_payload(index, off, n), spec.bytes)
        return np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<")).astype(spec.dtype).reshape(
            sample_shape(spec.shape))

    def get_profile(self) -> list[int]:
        """Ticks per layer of the last INVOKE (multiply by info().unit_per_tick for instructions/cycles)."""
        n = self.info().layers
        ticks = []
        for first in range(0, n, P.PROFILE_CHUNK):
            ticks += P.parse_profile(self.request(P.GET_PROFILE, P.get_profile_payload(first, min(P.PROFILE_CHUNK, n - first))))
        return ticks

    def get_tensor(self, layer: int, dtype=None, shape=None):
        """The output of `layer` as it is in the arena now (run INVOKE(0, layer) first).

        Raw bytes, or an array when `dtype` (and optionally `shape`) is given."""
        li = self.layers()[layer] if 0 <= layer < self.info().layers else None
        if li is None:
            raise MotError(f"the model has {self.info().layers} layers, no layer {layer}")
        raw = self._read(P.GET_TENSOR, lambda off, n: P.get_tensor_payload(layer, off, n), li["bytes"])
        if dtype is None:
            return raw
        a = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        return a.reshape(shape) if shape is not None else a

    # ---- batches ----
    def run(self, *batches, progress=None, profile: bool = False):
        """Run each sample of the batch(es): one (N, *input_shape) array per input.

        Returns one (N, *output_shape) array per output; with profile=True also a list of
        (total ticks, per-layer ticks) per sample. `progress(i, n)` is called after each sample."""
        info = self.info()
        if len(batches) == 1 and isinstance(batches[0], (list, tuple)):
            batches = tuple(batches[0])
        if len(batches) != len(info.inputs):
            raise MotError(f"the model has {len(info.inputs)} input(s), got {len(batches)}")
        arrays = [np.asarray(b) for b in batches]
        n = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
        for k, (a, spec) in enumerate(zip(arrays, info.inputs)):
            want = sample_shape(spec.shape)
            if a.dtype != np.dtype(spec.dtype):
                raise MotError(f"input {k} must be {spec.dtype}, got {a.dtype}")
            if a.ndim == 0 or tuple(a.shape[1:]) != want or a.shape[0] != n:
                raise MotError(f"input {k} must have shape (N, {', '.join(map(str, want))}), got {tuple(a.shape)}")
        results = [np.empty((n,) + sample_shape(o.shape), dtype=o.dtype) for o in info.outputs]
        profiles = []
        for i in range(n):
            for k, a in enumerate(arrays):
                self.set_input(k, a[i])
            total, _ = self.invoke()
            for k, r in enumerate(results):
                r[i] = self.get_output(k)
            if profile:
                profiles.append((total, self.get_profile()))
            if progress is not None:
                progress(i + 1, n)
        return (results, profiles) if profile else results


__all__ = ["DeviceClient", "DeviceError", "sample_shape"]
