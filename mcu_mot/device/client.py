"""DeviceClient: the protocol's requests as Python calls (numpy in, numpy out).

    with DeviceClient("socket://127.0.0.1:4321") as dev:
        print(dev.info())
        (y,) = dev.run(x)              # x: (N, *input_shape) -> y: (N, *output_shape)
        ticks = dev.get_profile()      # per layer, last INVOKE

Recovery on a bad line (on top of the transport's resends of the same frame):
- Inputs go in chunks whose size adapts to the line: halved when a chunk does not get through
  in two attempts, grown again after clean round trips. Every chunk is acknowledged with the
  count of bytes the device holds, and the next chunk continues from there (after a device
  reset, from what STATUS reports). GET_OUTPUT / GET_TENSOR read lengths adapt the same way.
  An input fails only when it makes no progress for the whole deadline.
- An INVOKE is resent with its own seq (answered from the device's reply cache, never run
  twice). If no reply gets through at all, STATUS tells whether it ran (then its result is
  used) or whether the device still holds the fresh input (then it is sent anew); otherwise
  it fails with what the device said.
- `run` redoes a sample (input, INVOKE, outputs) when the device no longer holds its input or
  its outputs (it was reset in between), so a reset never yields stale or zeroed outputs.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mcu_mot.device import protocol as P
from mcu_mot.device.transport import DeviceError, LinkError, Transport
from mcu_mot.errors import MotError

#: smallest adaptive chunk (data bytes per SET_INPUT, bytes per GET_OUTPUT / GET_TENSOR read)
MIN_CHUNK = 16
#: an input or a read fails after `deadline` s without progress, or after this many deadlines in all
TOTAL_DEADLINES = 4


class _Chunker:
    """Adaptive chunk size: the smaller of two rules.

    - AIMD: a chunk that does not get through in `attempts` tries halves the size, two clean
      round trips in a row grow it by a quarter (fast retreat when the line turns bad).
    - An estimate of the byte error rate p from a moving average of the attempts that got their
      reply and the bytes they moved, giving the goodput-optimal chunk of about 1/p bytes."""

    OVERHEAD = 36  # framing bytes of one request + its reply besides the data
    attempts = 4  # tries for one chunk before it is cut smaller

    def __init__(self, largest: int):
        self.largest = max(MIN_CHUNK, largest)
        self.cap = float(self.largest)
        self.streak = 0
        self.ok = 1.0  # moving average: attempts that got their reply
        self.moved = float(self.largest + self.OVERHEAD)

    def record(self, attempts: int, data_bytes: int, got_through: bool) -> None:
        a = 0.1
        for k in range(max(1, attempts)):
            hit = got_through and k == attempts - 1
            self.ok = (1 - a) * self.ok + a * (1.0 if hit else 0.0)
            self.moved = (1 - a) * self.moved + a * (data_bytes + self.OVERHEAD)
        if not got_through:
            self.streak = 0
            self.cap = max(MIN_CHUNK, min(self.cap, data_bytes) / 2)
        elif attempts == 1:
            self.streak += 1
            if self.streak >= 2:
                self.cap = min(self.largest, self.cap * 1.25 + 1)
                self.streak = 0
        else:
            self.streak = 0

    @property
    def error_rate(self) -> float:
        return 1.0 - max(self.ok, 1e-9) ** (1.0 / self.moved)

    @property
    def size(self) -> int:
        p = self.error_rate
        best = self.largest if p < 1e-4 else 0.9 / p
        return int(max(MIN_CHUNK, min(self.largest, self.cap, best)))


def sample_shape(shape) -> tuple:
    """Per-sample shape: the model's shape without a leading batch dimension of 1 (as `simulate`)."""
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] == 1 else shape


class DeviceClient:
    """Talk to mcu_mot firmware on `port` (a pyserial port name or URL, or an open Transport)."""

    def __init__(
        self,
        port,
        *,
        timeout: float = 1.0,
        retries: int = 5,
        invoke_timeout: float = 120.0,
        deadline: float = 30.0,
        baudrate: int = 115200,
        sync: bool = True,
    ):
        self.transport = (
            port
            if isinstance(port, Transport)
            else Transport(port, timeout=timeout, retries=retries, deadline=deadline, baudrate=baudrate)
        )
        self.invoke_timeout = float(invoke_timeout)
        self._info: P.DeviceInfo | None = None
        self._layers: list | None = None
        self._in_chunk = _Chunker(P.INPUT_CHUNK)
        self._read_chunk = _Chunker(P.MAX_PAYLOAD)
        self._has_status: bool | None = None
        self.redone = 0  # samples `run` had to redo (device reset)
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
                raise MotError(
                    f"device on {self.port} speaks protocol version {info.version}, this mcu_mot speaks {P.VERSION}"
                )
            self._info = info
        return self._info

    def stats(self) -> dict:
        return P.parse_stats(self.request(P.STATS))

    def status(self, deadline: float | None = None) -> P.DeviceStatus | None:
        """What the device holds now (STATUS); None for firmware that predates the request."""
        if self._has_status is False:
            return None
        try:
            st = P.parse_status(self.transport.request(P.STATUS, deadline=deadline))
        except DeviceError as e:
            if e.code == P.ERR_UNKNOWN:
                self._has_status = False
                return None
            raise
        self._has_status = True
        return st

    @property
    def deadline(self) -> float:
        return self.transport.deadline

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
            raise MotError(
                f"the device on {self.port} runs model {have:08x} ('{self.info().name}'), "
                f"not {want:08x}: flash the new build first"
            )

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
            raise MotError(
                f"input {index} must have shape {sample_shape(spec.shape)} ({spec.bytes} bytes), got {a.shape}"
            )
        self._write_input(index, data, min(P.INPUT_CHUNK, info.max_payload - 6))

    def _write_input(self, index: int, data: bytes, largest: int) -> None:
        """Chunks, each acknowledged with the bytes the device holds; resumes from there. Fails only
        after `deadline` seconds without progress."""
        size, off, ch = len(data), 0, self._in_chunk
        ch.largest = largest
        tr = self.transport
        until = time.monotonic() + tr.deadline
        stop = time.monotonic() + TOTAL_DEADLINES * tr.deadline  # progress or not: bounded
        tries = failures = 0
        last: Exception | None = None
        while off < size and time.monotonic() < stop:
            n = min(ch.size, size - off)
            before = tr.sent
            tries += 1
            try:
                reply = tr.request(
                    P.SET_INPUT,
                    P.set_input_payload(index, off, data[off : off + n]),
                    deadline=until,
                    attempts=ch.attempts if n > MIN_CHUNK else None,
                )
            except LinkError as e:
                last, failures = e, failures + 1
                ch.record(tr.sent - before, n, False)
                if time.monotonic() >= until:
                    break
                continue
            except DeviceError as e:
                if e.code != P.ERR_RANGE or off == 0:
                    raise
                # "gap": the device holds less than we sent (it was reset): resume from what it holds
                last = e
                st = self.status(deadline=until)
                held = st.received[index] if st is not None and index < len(st.received) else 0
                off = min(off, held)
                continue
            if len(reply) < 4:
                raise MotError(f"device on {self.port} sent a malformed SET_INPUT reply ({len(reply)} bytes)")
            got = int.from_bytes(reply[:4], "little")
            if got < off + n or got > size:
                raise MotError(
                    f"device on {self.port} acknowledged {got} bytes of input {index} "
                    f"after a chunk ending at {off + n} of {size}"
                )
            ch.record(tr.sent - before, n, True)
            if got > off:
                until = min(stop, time.monotonic() + tr.deadline)  # progress: the deadline counts from here
            off = got
        if off < size:
            why = (
                f"{tr.deadline:g} s without progress"
                if time.monotonic() < stop
                else f"{TOTAL_DEADLINES * tr.deadline:g} s in all"
            )
            raise MotError(
                f"SET_INPUT of input {index} to {self.port} failed: {off} of {size} bytes acknowledged "
                f"after {tries} chunks ({failures} not getting through, down to {ch.size} bytes) and "
                f"{why}; last: {last}"
            )

    def invoke(self, first: int = 0, last: int | None = None) -> tuple[int, int]:
        """Run layers [first, last] (all by default). Returns (total ticks, layers run).

        Resent with the same seq until `invoke_timeout` + `deadline` (never run twice); if no reply
        got through, STATUS decides: it ran (its result is returned), or the device still holds the
        fresh input (sent once more as a new request), or a one-line error says what happened."""
        tr = self.transport
        payload = P.invoke_payload(first, last)
        until = time.monotonic() + self.invoke_timeout + tr.deadline
        for round_ in range(2):
            try:
                return P.parse_invoke(tr.request(P.INVOKE, payload, timeout=self.invoke_timeout, deadline=until))
            except LinkError as e:
                seq, lost = tr.last_seq, e
            try:
                st = self.status(deadline=time.monotonic() + tr.deadline)
            except MotError as e2:
                raise MotError(f"INVOKE on {self.port}: {lost}; and STATUS did not get through either ({e2})") from None
            if st is None:
                raise lost
            if st.invoked and st.last_invoke_seq == seq and not st.fresh:
                return st.last_ticks, st.last_layers  # it ran; only its replies were lost
            if not (first == 0 and st.fresh) or round_:
                state = "still holds the fresh input" if st.fresh else "holds no fresh input: set the input again"
                raise MotError(f"INVOKE on {self.port} got no reply ({lost}); the device did not run it and {state}")
            until = time.monotonic() + self.invoke_timeout + tr.deadline  # fresh input, not run: again
        raise AssertionError("unreachable")

    def _read(self, type_, make, size: int) -> bytes:
        """Read `size` bytes in adaptive chunks (each read is idempotent: safe to resend smaller)."""
        tr, ch = self.transport, self._read_chunk
        ch.largest = self.info().max_payload
        out = bytearray()
        until = time.monotonic() + tr.deadline
        stop = time.monotonic() + TOTAL_DEADLINES * tr.deadline
        failures = 0
        while len(out) < size:
            off = len(out)
            if time.monotonic() >= stop:
                raise MotError(
                    f"{P.NAMES.get(type_, type_)} from {self.port} failed: {off} of {size} bytes read "
                    f"in {TOTAL_DEADLINES * tr.deadline:g} s ({failures} reads not getting through)"
                )
            n = min(ch.size, size - off)
            before = tr.sent
            try:
                part = tr.request(type_, make(off, n), deadline=until, attempts=ch.attempts if n > MIN_CHUNK else None)
            except LinkError as e:
                failures += 1
                ch.record(tr.sent - before, n, False)
                if time.monotonic() >= until:
                    raise MotError(
                        f"{P.NAMES.get(type_, type_)} from {self.port} failed: {off} of {size} bytes "
                        f"read, {failures} reads not getting through (down to {ch.size} bytes) in "
                        f"{tr.deadline:g} s without progress; last: {e}"
                    ) from None
                continue
            if len(part) != n:
                raise MotError(f"device on {self.port} sent {len(part)} bytes, asked for {n}")
            ch.record(tr.sent - before, n, True)
            out += part
            until = min(stop, time.monotonic() + tr.deadline)
        return bytes(out)

    def get_output(self, index: int) -> np.ndarray:
        """Output `index` of the last INVOKE, shaped (per sample) and typed from INFO."""
        info = self.info()
        if not 0 <= index < len(info.outputs):
            raise MotError(f"the model has {len(info.outputs)} output(s), no output {index}")
        spec = info.outputs[index]
        raw = self._read(P.GET_OUTPUT, lambda off, n: P.get_output_payload(index, off, n), spec.bytes)
        return (
            np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<"))
            .astype(spec.dtype)
            .reshape(sample_shape(spec.shape))
        )

    def get_profile(self) -> list[int]:
        """Ticks per layer of the last INVOKE (multiply by info().unit_per_tick for instructions/cycles)."""
        n = self.info().layers
        ticks = []
        for first in range(0, n, P.PROFILE_CHUNK):
            ticks += P.parse_profile(
                self.request(P.GET_PROFILE, P.get_profile_payload(first, min(P.PROFILE_CHUNK, n - first)))
            )
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

    def run_sample(self, inputs, redo: int = 2) -> tuple[int, list]:
        """One inference: write every input, INVOKE, read every output. Returns (ticks, outputs).

        Redone (up to `redo` times) when the device refuses the INVOKE or the outputs for want of
        a fresh input / valid outputs: it was reset in between, and its bytes are not ours."""
        for attempt in range(redo + 1):
            for k, a in enumerate(inputs):
                self.set_input(k, a)
            try:
                total, _ = self.invoke()
                outs = [self.get_output(k) for k in range(len(self.info().outputs))]
            except DeviceError as e:
                if e.code != P.ERR_NOT_FRESH or attempt == redo:
                    raise
                self.redone += 1
                continue
            return total, outs
        raise AssertionError("unreachable")

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
            total, outs = self.run_sample([a[i] for a in arrays])
            for r, o in zip(results, outs):
                r[i] = o
            if profile:
                profiles.append((total, self.get_profile()))
            if progress is not None:
                progress(i + 1, n)
        return (results, profiles) if profile else results


__all__ = ["DeviceClient", "DeviceError", "LinkError", "sample_shape"]
