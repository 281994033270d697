"""Run a firmware image on an emulated board: qemu-system-arm with the UART on a TCP port.

    with QemuInstance("qemu-mps2-an386", "build/firmware.elf") as q:
        with DeviceClient(q.url) as dev: ...

(The commands and flows get their device from mcu_mot.device.target: QemuTarget wraps this.)

The emulator counts instructions (`-icount shift=0`: one instruction per virtual ns), the UART
is a TCP server on a free port of 127.0.0.1 (`socket://127.0.0.1:PORT` for pyserial). Teardown
is reliable: terminate, kill after a grace period, also at interpreter exit and (Linux) when
this process dies.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from mcu_mot.boards import load_board
from mcu_mot.errors import MotError

QEMU = "qemu-system-arm"


def qemu_binary() -> str:
    exe = os.environ.get("MCU_MOT_QEMU", QEMU)
    path = shutil.which(exe)
    if path is None:
        raise MotError(
            f"{exe} not found: install it (Debian/Ubuntu: apt-get install qemu-system-arm) or set MCU_MOT_QEMU"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uart_server(port: int) -> str:
    """QEMU's -serial argument for a UART that is a TCP server on 127.0.0.1:`port`."""
    return f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on"


def qemu_command(board, elf, port: int, extra_args=()) -> list[str]:
    """The one command line every emulator is started with: the board file's (Board.qemu_argv,
    counting instructions), the installed binary (MCU_MOT_QEMU) and the UART on `port`."""
    argv = load_board(board).qemu_argv(elf, uart_server(port))
    return [qemu_binary()] + argv[1:] + [str(a) for a in extra_args]


def _die_with_parent():  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live: "weakref.WeakSet[QemuInstance]" = weakref.WeakSet()


class QemuInstance:
    """One emulator process running `elf` on `board`; `url` is its UART for pyserial."""

    def __init__(
        self,
        board,
        elf,
        *,
        port: int | None = None,
        start_timeout: float = 20.0,
        extra_args=(),
        log_path=None,
        detached: bool = False,
    ):
        """detached: the emulator outlives this process (its own session, no stop at exit or
        when this object goes away; `mcu-mot flash`); stop it by pid (session.stop_emulator)."""
        self.board = board
        self.detached = detached
        self.elf = Path(elf)
        self.port = port
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.argv: list[str] = []

    @property
    def board_name(self) -> str:
        return getattr(self.board, "name", str(self.board))

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        if self._log is None:
            return ""
        try:
            self._log.flush()
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> "QemuInstance":
        qemu_binary()
        if not self.elf.is_file():
            raise MotError(f"firmware image not found: {self.elf} (run mcu-mot build first)")
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or free_port()
            self.argv = qemu_command(self.board, self.elf, port, self.extra_args)
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_path, "w+b")
            else:
                self._log = tempfile.NamedTemporaryFile(prefix="mm-qemu-", suffix=".log", delete=False)
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only from the main thread
            orphan_guard = (
                not self.detached
                and sys.platform.startswith("linux")
                and threading.current_thread() is threading.main_thread()
            )
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
                preexec_fn=_die_with_parent if orphan_guard else None,
            )
            if not self.detached:
                _live.add(self)
            self.port = port
            err = self._wait_listening()
            if err is None:
                return self
            self.stop()
            if "in use" not in err or attempt == attempts - 1:
                raise MotError(f"qemu ({self.board_name}) did not start: {err}")
            self.port = None
        raise AssertionError("unreachable")

    def _wait_listening(self) -> str | None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = [ln for ln in self.log_text().splitlines() if ln.strip()]
                return lines[-1].strip() if lines else f"exited with status {self.proc.returncode}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return None
            except OSError:
                time.sleep(0.05)
        return f"its UART port {self.port} did not open within {self.start_timeout:g} s"

    def release(self) -> None:
        """Leave a detached emulator running and forget it (its log file stays)."""
        self.proc = None
        if self._log is not None:
            try:
                self._log.close()
            except Exception:
                pass
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            name = self._log.name
            try:
                self._log.close()
            except Exception:
                pass
            if self.log_path is None:
                Path(name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        try:
            self.release() if self.detached else self.stop()
        except Exception:
            pass


@atexit.register
def _stop_all() -> None:
    for q in list(_live):
        q.stop()
