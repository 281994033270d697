"""A TCP proxy that damages a serial link on purpose: it sits between pyserial and the device's
TCP port (QEMU's UART or the host build of the firmware) and drops, corrupts, duplicates and
delays bytes, each decided by a seeded RNG per direction, so a failing run can be replayed.

    with FaultProxy(device_port, seed=1, corrupt=2e-4, drop=2e-4) as proxy:
        DeviceClient(proxy.url, ...)

Rates: `drop`, `corrupt`, `dup_byte` per byte; `dup_chunk` (resend a whole chunk, i.e. usually a
whole frame) and `delay` (hold a chunk back up to `max_delay` seconds) per chunk read.
`faults_at(rate)` spreads one byte error rate over drop, corrupt and duplicate. `cut()` closes the
live connections (as an emulator that closes its socket); new ones are accepted as before.
A test and benchmark tool: nothing in the deploy path uses it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    drop: float = 0.0
    corrupt: float = 0.0
    dup_byte: float = 0.0
    dup_chunk: float = 0.0
    delay: float = 0.0
    max_delay: float = 0.05


def faults_at(rate: float, max_delay: float = 0.05) -> "Faults":
    """A byte error rate `rate` (0.01 = 1 %) split equally into dropped, corrupted and duplicated
    bytes; besides, that fraction of the chunks read is held back up to `max_delay` seconds and
    (a tenth as often) sent twice."""
    return Faults(
        drop=rate / 3, corrupt=rate / 3, dup_byte=rate / 3, delay=rate, dup_chunk=rate / 10, max_delay=max_delay
    )


@dataclass
class Counters:
    bytes: int = 0
    dropped: int = 0
    corrupted: int = 0
    dup_bytes: int = 0
    dup_chunks: int = 0
    delays: int = 0

    def faults(self) -> int:
        return self.dropped + self.corrupted + self.dup_bytes + self.dup_chunks + self.delays


@dataclass
class _Direction:
    faults: Faults
    rng: random.Random
    counters: Counters = field(default_factory=Counters)

    def mangle(self, data: bytes) -> list[tuple[float, bytes]]:
        """[(sleep before, bytes to send)]"""
        f, r, c = self.faults, self.rng, self.counters
        c.bytes += len(data)
        out = bytearray()
        for b in data:
            if f.drop and r.random() < f.drop:
                c.dropped += 1
                continue
            if f.corrupt and r.random() < f.corrupt:
                b ^= r.randrange(1, 256)
                c.corrupted += 1
            out.append(b)
            if f.dup_byte and r.random() < f.dup_byte:
                out.append(b)
                c.dup_bytes += 1
        pause = 0.0
        if f.delay and r.random() < f.delay:
            pause = r.uniform(0, f.max_delay)
            c.delays += 1
        parts = [(pause, bytes(out))]
        if f.dup_chunk and out and r.random() < f.dup_chunk:
            parts.append((0.0, bytes(out)))
            c.dup_chunks += 1
        return parts


class FaultProxy:
    """Listens on 127.0.0.1 (free port); each accepted client is connected to 127.0.0.1:target_port."""

    def __init__(
        self,
        target_port: int,
        *,
        seed: int = 0,
        to_device: Faults | None = None,
        to_host: Faults | None = None,
        **faults,
    ):
        both = Faults(**faults)
        self.target_port = target_port
        self.up = _Direction(to_device or both, random.Random(seed * 2 + 1))
        self.down = _Direction(to_host or both, random.Random(seed * 2 + 2))
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(2)
        self.port = self._listen.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def counters(self) -> dict:
        return {"to_device": self.up.counters, "to_host": self.down.counters}

    def injected(self) -> int:
        return self.up.counters.faults() + self.down.counters.faults()

    def cut(self) -> int:
        """Close every live connection now (both ends); returns how many were cut."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.cuts += 1
        return len(socks) // 2

    def start(self) -> "FaultProxy":
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self) -> None:
        self._listen.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except (socket.timeout, OSError):
                continue
            try:
                device = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, device):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.1)
            with self._lock:
                self._socks += [client, device]
            self.connections += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            for src, dst, d in ((client, device, self.up), (device, client, self.down)):
                t = threading.Thread(target=self._pump, args=(src, dst, d), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, d: _Direction) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                for pause, part in d.mangle(data):
                    if pause:
                        self._stop.wait(pause)
                    if part:
                        dst.sendall(part)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        for s in self._socks + [self._listen]:
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SilentServer:
    """Accepts connections and never says a word (a port with no firmware behind it)."""

    def __init__(self, noise: bool = False, seed: int = 0):
        self.noise = noise
        self.rng = random.Random(seed)
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(2)
        self.port = self._listen.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._listen.settimeout(0.1)
        conns = []
        while not self._stop.is_set():
            try:
                c, _ = self._listen.accept()
                conns.append(c)
            except (socket.timeout, OSError):
                pass
            for c in conns:
                try:
                    c.setblocking(False)
                    try:
                        c.recv(65536)
                    except BlockingIOError:
                        pass
                    if self.noise:  # a wrong baud rate: a stream of junk with the odd 0x00 in it
                        c.send(bytes(self.rng.randrange(256) for _ in range(512)))
                except OSError:
                    pass
            if self.noise:
                time.sleep(0.005)
        for c in conns:
            c.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        self._listen.close()
