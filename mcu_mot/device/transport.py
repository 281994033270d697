"""Serial transport: one request, one reply, retried until it gets through or a deadline passes.

The port is anything pyserial opens: a device name (/dev/ttyACM0, COM3) for hardware,
`socket://127.0.0.1:PORT` for QEMU's UART (or the host build of the firmware). A retry
resends the very same frame (same seq), so the device answers it from its reply cache
instead of running it twice.

How hard it tries:
- A device that has never answered on this transport (a wrong port, no firmware) gets
  `retries` attempts of `timeout` seconds each, so a wrong port fails fast.
- Once the device has answered, a request is resent until it gets through or `deadline`
  seconds have passed. The wait for each attempt adapts to the round trips measured per
  request type (retransmission timeout, doubled after each timeout up to `timeout`); a NAK
  (the device saw a damaged copy) is answered by an immediate resend.
- When the connection breaks (the emulator closed its socket, a USB port re-enumerated), the
  port is reopened (with backoff, until the deadline) and the same frame resent.
- A socket:// connection is closed with a TCP reset, so an emulator drops whatever it still had
  queued from us (QEMU reads its UART socket at some 35 kB/s and accepts no new connection until
  it has read the old one to its end).
Every failure is a one-line MotError (LinkError when the link, not the device, failed).
"""

from __future__ import annotations

import random
import re
import socket
import struct
import time

import serial

from mcu_mot.device import protocol as P
from mcu_mot.errors import MotError

#: shortest retransmission timeout (s). Damaged frames and NAKs trigger a resend at once, so a
#: timeout only covers frames lost whole; a shorter one makes needless resends on a clean but
#: busy machine (harmless, the reply cache answers them, but noise in the device's counters; a
#: test run on two loaded cores saw a 200 ms floor fire on a clean line). The first fault switches
#: to MIN_RTO_LOSSY, so this costs at most one long wait when a line turns bad.
MIN_RTO = 1.0
#: ... and on a line that is losing frames (where waiting costs more than a needless resend)
MIN_RTO_LOSSY = 0.02
#: the first wait for an INVOKE reply before its duration is known
FIRST_INVOKE_WAIT = 2.0


class DeviceError(MotError):
    """The device answered with an ERROR frame."""

    def __init__(self, code: int, request: int, message: str, port: str = ""):
        self.code, self.request, self.detail = code, request, message
        what = P.NAMES.get(request, f"request 0x{request:02x}")
        super().__init__(
            f"device{' on ' + port if port else ''} refused {what}: "
            f"{P.ERROR_NAMES.get(code, f'error {code}')} ({message})"
        )


class LinkError(MotError):
    """No valid reply to one request (timeouts, damaged frames, a connection that broke)."""

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 0,
        naks: int = 0,
        timeouts: int = 0,
        received: int = 0,
        answered: bool = False,
    ):
        super().__init__(message)
        self.attempts, self.naks, self.timeouts, self.received = attempts, naks, timeouts, received
        self.answered = answered


def normalize_port(port: str) -> str:
    """'127.0.0.1:4321', 'tcp:127.0.0.1:4321' and 'socket://...' all mean a TCP port."""
    port = str(port).strip()
    if port.startswith("tcp:"):
        port = port[4:]
    if re.fullmatch(r"[A-Za-z0-9_.\-]+:\d+", port) and not port.lower().startswith("com"):
        return "socket://" + port
    return port


def open_serial(port: str, timeout: float = 1.0, baudrate: int = 115200):
    try:
        ser = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, write_timeout=max(timeout, 5.0))
    except (serial.SerialException, ValueError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MotError(f"cannot open port {port}: {msg}") from None
    sock = getattr(ser, "_socket", None)  # socket://: no Nagle delay on small frames
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
    return ser


def close_serial(ser) -> None:
    """Close a port; a socket:// one with a TCP reset (the peer drops what it has not read yet)."""
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except (OSError, AttributeError):
            pass
        try:
            ser._socket = None  # pyserial's close would send a FIN and sleep 0.3 s
            ser.is_open = False
        except Exception:
            pass
        return
    try:
        ser.close()
    except Exception:
        pass


class _Rtt:
    """Smoothed round trip and its variation (RFC 6298 style), one per request type."""

    def __init__(self):
        self.srtt: float | None = None
        self.var = 0.0

    def add(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.var = rtt, rtt / 2
        else:
            self.var = 0.75 * self.var + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def rto(self) -> float:
        return 1.5 * self.srtt + max(4 * self.var, 0.01)


class Transport:
    """Request/reply over a serial line.

    `timeout`: the longest wait for one attempt's reply; `retries`: attempts for a device that has
    not answered yet; `deadline`: seconds one request may take in all once it has."""

    def __init__(
        self,
        port,
        *,
        timeout: float = 1.0,
        retries: int = 5,
        deadline: float = 30.0,
        baudrate: int = 115200,
        serial_obj=None,
        reconnect: bool = True,
    ):
        self.port = normalize_port(port) if serial_obj is None else str(port)
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        self.deadline = max(float(deadline), self.timeout)
        self.baudrate = baudrate
        self.can_reconnect = reconnect and serial_obj is None
        self.ser = serial_obj if serial_obj is not None else open_serial(self.port, self.timeout, baudrate)
        self.reader = P.FrameReader()
        self._seq = random.randrange(256)
        self._rtt: dict[int, _Rtt] = {}
        self.last_seq: int | None = None  # seq of the last request sent (for INVOKE recovery)
        # counters (for monitor / tests / benchmarks)
        self.sent = 0
        self.resent = 0
        self.bad_frames = 0
        self.stale_frames = 0
        self.replies = 0
        self.naks = 0
        self.timeouts = 0
        self.reconnects = 0
        self.damaged_replies = 0  # attempts cut short by a damaged frame (resent at once)
        self.alive = False  # a valid frame (reply or NAK) came from the device
        self.lossy = 0.0  # moving average: attempts that met a fault

    # ---- life cycle ----
    def close(self) -> None:
        if self.ser is not None:
            close_serial(self.ser)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- timing ----
    def rto(self, type_: int, cap: float | None = None) -> float:
        """The first wait for a reply to a request of this type."""
        cap = self.timeout if cap is None else cap
        floor = MIN_RTO_LOSSY if self.lossy > 0.02 else MIN_RTO
        est = self._rtt.get(type_)
        if est is not None and est.srtt is not None:
            return min(cap, max(floor, est.rto()))
        known = [e.rto() for e in self._rtt.values() if e.srtt is not None]
        if not known:
            return cap  # nothing measured yet: the full timeout
        first = FIRST_INVOKE_WAIT if type_ == P.INVOKE else floor
        return min(cap, max(first, 4 * max(known)))  # a new type: backoff finds its time

    # ---- I/O ----
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the line (tests and benchmarks: floods, garbage)."""
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.ser.write(data)
            self.ser.flush()
        except (serial.SerialException, OSError, AttributeError) as exc:
            raise _Broken(_first_line(exc)) from None

    def _read_some(self, remaining: float) -> bytes:
        try:
            self.ser.timeout = max(0.001, remaining)
            data = self.ser.read(1)
            if data:
                waiting = self.ser.in_waiting
                if waiting:
                    data += self.ser.read(min(waiting, 65536))
            return data
        except (serial.SerialException, OSError, AttributeError, TypeError) as exc:
            raise _Broken(_first_line(exc)) from None

    def reopen(self, until: float, why: str = "") -> None:
        """Close the port and open it again (with backoff) before time `until`; MotError if it stays shut."""
        if not self.can_reconnect:
            raise MotError(f"lost the connection to {self.port} ({why or 'closed'})")
        close_serial(self.ser)
        self.reader.reset()
        pause, last = 0.02, why
        while True:
            try:
                self.ser = open_serial(self.port, self.timeout, self.baudrate)
                self.reconnects += 1
                return
            except MotError as exc:
                last = str(exc)
            if time.monotonic() + pause >= until:
                raise MotError(
                    f"lost the connection to {self.port} ({why or 'closed'}) and could not reopen it: {last}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _drain_input(self) -> None:
        try:
            self.ser.reset_input_buffer()  # stale replies of earlier requests
        except Exception:
            pass

    def request(
        self,
        type_: int,
        payload: bytes = b"",
        *,
        timeout: float | None = None,
        deadline: float | None = None,
        attempts: int | None = None,
        seq: int | None = None,
    ) -> bytes:
        """Send one request and return its reply's payload; DeviceError for an ERROR reply,
        LinkError when no valid reply came.

        `timeout`: longest wait per attempt (default the transport's); `deadline`: absolute
        time.monotonic() to give up at (default now + the transport's deadline); `attempts`: give
        up after that many (callers that can retry in a smaller way, e.g. a shorter chunk);
        `seq`: reuse a seq (the resend of a request whose earlier copies may have run)."""
        cap = self.timeout if timeout is None else float(timeout)
        start = time.monotonic()
        until = start + self.deadline if deadline is None else deadline
        seq = self._next_seq() if seq is None else seq & 0xFF
        self.last_seq = seq
        frame = b"\x00" + P.encode_frame(type_, seq, payload)  # the leading 0x00 ends any junk
        want = type_ | P.REPLY
        received = noise = naks = timeouts = broken = silent = 0
        why_broken = ""
        self.reader.reset()
        self._drain_input()
        wait = base = self.rto(type_, cap)
        # a line that drops frames at random is not congested: back off, but only to 3 timeouts
        # (the deadline, not the wait, ends a request; a device that stopped answering gets the cap)
        longest = cap if base >= cap else min(cap, 3 * base)
        attempt = 0
        while True:
            answered = self.replies > 0 or self.alive
            if attempts is not None and attempt >= attempts:
                break
            if not answered and attempt >= self.retries:
                break
            if answered and attempt > 0 and time.monotonic() >= until:
                break
            if attempt:
                self.resent += 1
            self.sent += 1
            attempt += 1
            sent_at = time.monotonic()
            got_before = received
            try:
                self._write(frame)
                limit = sent_at + wait
                if answered:
                    limit = min(limit, max(until, sent_at + MIN_RTO))
                nak = damaged = False
                while not (nak or damaged):
                    remaining = limit - time.monotonic()
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
                            if answered:
                                damaged = True  # likely our reply, damaged: resend now
                            continue
                        self.alive = True
                        if f.seq != seq:
                            self.stale_frames += 1
                            continue
                        if f.type == P.ERROR:
                            code, req, msg = P.parse_error(f.payload)
                            if code == P.ERR_CORRUPT:
                                naks += 1
                                self.naks += 1
                                self._sample(type_, time.monotonic() - sent_at)  # a round trip too
                                nak = True  # our frame arrived damaged: resend now
                                break
                            if req == type_:
                                self._measured(type_, attempt, sent_at)
                                raise DeviceError(code, req, msg, self.port)
                            self.stale_frames += 1
                            continue
                        if f.type == want:
                            self._measured(type_, attempt, sent_at)
                            return f.payload
                        self.stale_frames += 1
                    noise += self.reader.dropped - dropped
                self.lossy = 0.95 * self.lossy + 0.05  # this attempt met a fault
                if damaged and not nak:
                    self.damaged_replies += 1
                elif not nak:
                    timeouts += 1
                    self.timeouts += 1
                    wait = min(longest, wait * 1.5)  # back off
                    silent = silent + 1 if received == got_before else 0
                    if silent >= 4:
                        longest = cap  # not a byte for 4 tries: busy, or reset
            except _Broken as exc:
                broken += 1
                why_broken = str(exc)
                self.reopen(until if answered else time.monotonic() + max(cap, 1.0), why_broken)
                self._drain_input()
        raise self._failure(type_, attempt, received, noise, naks, timeouts, broken, why_broken, cap, start)

    def _measured(self, type_: int, attempt: int, sent_at: float) -> None:
        self.replies += 1
        self.lossy *= 0.95
        est = self._rtt.get(type_)
        # Karn: only unambiguous round trips, unless there is nothing better (a reply to an earlier
        # copy makes the sample too short: at worst a resend the cache answers)
        if attempt == 1 or est is None or est.srtt is None:
            self._sample(type_, time.monotonic() - sent_at)

    def _sample(self, type_: int, rtt: float) -> None:
        self._rtt.setdefault(type_, _Rtt()).add(rtt)

    def _failure(self, type_, attempt, received, noise, naks, timeouts, broken, why, cap, start) -> LinkError:
        name = P.NAMES.get(type_, f"0x{type_:02x}")
        tries = f"{attempt} tr{'y' if attempt == 1 else 'ies'}"
        spent = time.monotonic() - start
        detail = dict(attempts=attempt, naks=naks, timeouts=timeouts, received=received, answered=self.replies > 0)
        if received == 0 and not naks:
            if self.replies:
                hint = "it answered before: did it reset or hang?"
                if broken:
                    hint = f"the connection broke {broken} time{'s' if broken > 1 else ''} ({why})"
                return LinkError(
                    f"no reply to {name} from {self.port} after {tries} in {spent:.1f} s: {hint}", **detail
                )
            return LinkError(
                f"no reply from {self.port} after {tries} ({cap:g} s each): is the board running mcu_mot firmware?",
                **detail,
            )
        if naks:
            return LinkError(
                f"no valid reply to {name} from {self.port} after {tries} in {spent:.1f} s: the "
                f"device received {naks} damaged cop{'y' if naks == 1 else 'ies'} of it and "
                f"{timeouts} repl{'y was' if timeouts == 1 else 'ies were'} lost; the line is "
                f"too noisy",
                **detail,
            )
        if self.replies:
            return LinkError(
                f"no valid reply to {name} from {self.port} after {tries} in {spent:.1f} s: "
                f"{noise} damaged frame{'s' if noise != 1 else ''} and {timeouts} timeout"
                f"{'s' if timeouts != 1 else ''}; the line is too noisy",
                **detail,
            )
        return LinkError(
            f"no valid reply to {name} from {self.port} after {tries} in {spent:.1f} s: "
            f"{received} bytes of noise ({noise} corrupt frames); check the port and baud rate",
            **detail,
        )


class _Broken(Exception):
    """The port failed under us (closed socket, vanished device): reopen and resend."""


def _first_line(exc) -> str:
    s = str(exc).strip()
    return s.splitlines()[0] if s else type(exc).__name__
