"""Run a firmware image on an emulated board: qemu-system-arm with the UART on a TCP port.

    with QemuInstance("qemu-mps2-an386", "build/firmware.elf") as q:
        with DeviceClient(q.url) as dev: ...

The emulator counts instructions (`-icount shift=0`: one instruction per virtual ns), the UART
is a TCP server on a free port of 127.0.0.1 (`socket://127.0.0.1:PORT` for pyserial). Teardown
is reliable: terminate, kill after a grace period, also at interpreter exit and (Linux) when
this process dies.
"""
from __future__ import annotations

import atexit
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

from mcu_mot.errors import MotError

QEMU = "qemu-system-arm"


def qemu_binary() -> str:
    exe = os.environ.get("MCU_MOT_QEMU", QEMU)
    path = shutil.which(exe)
    if path is None:
        raise MotError(f"{exe} not found: install it (Debian/Ubuntu: apt-get install qemu-system-arm) "
                       f"or set MCU_MOT_QEMU")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_argv(board, elf, serial: str) -> list[str]:
    """qemu-system-arm command line for `board` (a Board, a board name, or a dict with a
    'qemu' table: machine, cpu, extra_args)."""
    if isinstance(board, dict):
        q = board.get("qemu") or {}
        if "machine" not in q:
            raise MotError(f"board '{board.get('name', '?')}' is not emulated (no [qemu] machine)")
        argv = [QEMU, "-M", q["machine"]]
        if q.get("cpu") or board.get("cpu"):
            argv += ["-cpu", q.get("cpu") or board["cpu"]]
        argv += ["-kernel", str(elf), "-nographic", "-monitor", "none", "-icount", "shift=0", "-serial", serial]
        return argv + [str(a) for a in q.get("extra_args", q.get("extra", []))]
    from mcu_mot.boards import load_board
    return load_board(board).qemu_argv(elf, serial)


def _die_with_parent():  # runs in the child before exec
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live: "weakref.WeakSet[QemuInstance]" = weakref.WeakSet()


class QemuInstance:
    """One emulator process running `elf` on `board`; `url` is its UART for pyserial."""

    def __init__(self, board, elf, *, port: int | None = None, start_timeout: float = 20.0,
                 extra_args=(), log_path=None):
        self.board = board
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
        b = self.board
        return b.get("name", "?") if isinstance(b, dict) else getattr(b, "name", str(b))

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
        exe = qemu_binary()
        if not self.elf.is_file():
            raise MotError(f"firmware image not found: {self.elf} (run mcu-mot build first)")
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or free_port()
            argv = qemu_argv(self.board, self.elf, f"tcp:127.0.0.1:{port},server=on,wait=off,nodelay=on")
            argv[0] = exe
            self.argv = argv + self.extra_args
            if self.log_path:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = open(self.log_path, "w+b")
            else:
                self._log = tempfile.NamedTemporaryFile(prefix="mm-qemu-", suffix=".log", delete=False)
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only from the main thread
            orphan_guard = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent if orphan_guard else None)
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
            self.stop()
        except Exception:
            pass


@atexit.register
def _stop_all() -> None:
    for q in list(_live):
        q.stop()
