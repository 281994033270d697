"""Serial transport: one request, one reply, with timeouts and bounded retries.

The port is anything pyserial opens: a device name (/dev/ttyACM0, COM3) for hardware,
`socket://127.0.0.1:PORT` for QEMU's UART (or the host build of the firmware). A retry
resends the very same frame (same seq), so the device answers it from its reply cache
instead of running it twice. Every failure is one-line MotError; nothing blocks forever:
each attempt has a deadline, and the number of attempts is bounded.
"""
from __future__ import annotations

import random
import re
import time

from .. import MotError
from . import protocol as P


class DeviceError(MotError):
    """The device answered with an ERROR frame."""

    def __init__(self, code: int, request: int, message: str, port: str = ""):
        self.code, self.request, self.detail = code, request, message
        what = P.NAMES.get(request, f"request 0x{request:02x}")
        super().__init__(f"device{' on ' + port if port else ''} refused {what}: "
                         f"{P.ERROR_NAMES.get(code, f'error {code}')} ({message})")


def normalize_port(port: str) -> str:
    """'127.0.0.1:4321', 'tcp:127.0.0.1:4321' and 'socket://...' all mean a TCP port."""
    port = str(port).strip()
    if port.startswith("tcp:"):
        port = port[4:]
    if re.fullmatch(r"[A-Za-z0-9_.\-]+:\d+", port) and not port.lower().startswith("com"):
        return "socket://" + port
    return port


def open_serial(port: str, timeout: float = 1.0, baudrate: int = 115200):
    import serial
    try:
        ser = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, write_timeout=max(timeout, 5.0))
    except (serial.SerialException, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MotError(f"cannot open port {port}: {msg}") from None
    sock = getattr(ser, "_socket", None)       # socket://: no Nagle delay on small frames
    if sock is not None:
        try:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
    return ser


class Transport:
    """Request/reply over a serial line. `timeout` is per attempt, `retries` the number of attempts."""

    def __init__(self, port, *, timeout: float = 1.0, retries: int = 5, baudrate: int = 115200, serial_obj=None):
        self.port = normalize_port(port) if serial_obj is None else str(port)
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        self.ser = serial_obj if serial_obj is not None else open_serial(self.port, self.timeout, baudrate)
        self.reader = P.FrameReader()
        self._seq = random.randrange(256)
        # counters (for monitor / tests)
        self.sent = 0
        self.resent = 0
        self.bad_frames = 0
        self.stale_frames = 0
        self.replies = 0

    # ---- life cycle ----
    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- I/O ----
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _write(self, data: bytes) -> None:
        import serial
        try:
            self.ser.write(data)
            self.ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise MotError(f"lost the connection to {self.port} ({_first_line(exc)})") from None

    def _read_some(self, remaining: float) -> bytes:
        import serial
        try:
            self.ser.timeout = max(0.001, remaining)
            data = self.ser.read(1)
            if data:
                waiting = self.ser.in_waiting
                if waiting:
                    data += self.ser.read(min(waiting, 65536))
            return data
        except (serial.SerialException, OSError) as exc:
            raise MotError(f"lost the connection to {self.port} ({_first_line(exc)})") from None

    def request(self, type_: int, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send one request and return its reply's payload; DeviceError for an ERROR reply."""
        timeout = self.timeout if timeout is None else float(timeout)
        seq = self._next_seq()
        frame = b"\x00" + P.encode_frame(type_, seq, payload)   # the leading 0x00 ends any junk
        want = type_ | P.REPLY
        received = noise = naks = 0
        self.reader.reset()
        try:
            self.ser.reset_input_buffer()          # stale replies of earlier requests
        except Exception:
            pass
        for attempt in range(self.retries):
            if attempt:
                self.resent += 1
            self.sent += 1
            self._write(frame)
            deadline = time.monotonic() + timeout
            nak = False
            while not nak:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                data = self._read_some(remaining)
                received += len(data)
                dropped = self.reader.dropped
                for enc in self.reader.feed(data):
                    try:
                        f = P.decode_frame(enc)
                    except P.FrameError:
                        noise += 1
                        self.bad_frames += 1
                        continue
                    if f.seq != seq:
                        self.stale_frames += 1
                        continue
                    if f.type == P.ERROR:
                        code, req, msg = P.parse_error(f.payload)
                        if code == P.ERR_CORRUPT:
                            naks += 1
                            nak = True            # our frame arrived damaged: resend now
                            break
                        if req == type_:
                            self.replies += 1
                            raise DeviceError(code, req, msg, self.port)
                        self.stale_frames += 1
                        continue
                    if f.type == want:
                        self.replies += 1
                        return f.payload
                    self.stale_frames += 1
                noise += self.reader.dropped - dropped
        name = P.NAMES.get(type_, f"0x{type_:02x}")
        tries = f"{self.retries} tr{'y' if self.retries == 1 else 'ies'}"
        if received == 0:
            hint = ("it answered before: did it reset or hang?" if self.replies
                    else "is the board running mcu_mot firmware?")
            raise MotError(f"no reply from {self.port} after {tries} ({timeout:g} s each): {hint}")
        if naks:
            raise MotError(f"no valid reply to {name} from {self.port} after {tries}: the device received "
                           f"{naks} damaged cop{'y' if naks == 1 else 'ies'} of it; the line is too noisy")
        raise MotError(f"no valid reply to {name} from {self.port} after {tries}: "
                       f"{received} bytes of noise ({noise} corrupt frames); check the port and baud rate")


def _first_line(exc) -> str:
    s = str(exc).strip()
    return s.splitlines()[0] if s else type(exc).__name__
