"""Which device a command talks to: a port the user names, or the emulator that
`mcu-mot flash` left running for a build directory (state in BUILD_DIR/device.json),
or a fresh emulator for the length of one command."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .. import MotError

STATE = "device.json"


def build_report(build_dir) -> dict:
    path = Path(build_dir) / "report.json"
    if not path.is_file():
        raise MotError(f"{build_dir}: no report.json (run mcu-mot build first)")
    return json.loads(path.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def running_emulator(build_dir) -> dict | None:
    """The state of an emulator started by `flash` for this build dir, if it still runs."""
    path = Path(build_dir) / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None
    if not _alive(int(state.get("pid", -1))):
        path.unlink(missing_ok=True)
        return None
    return state


def stop_emulator(build_dir) -> bool:
    state = running_emulator(build_dir)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    (Path(build_dir) / STATE).unlink(missing_ok=True)
    return True


def start_detached(build_dir) -> dict:
    """Start the emulator for a build in the background (it outlives this command)."""
    from ..build.boards import load_board
    from .qemu import free_port, qemu_binary
    report = build_report(build_dir)
    board = load_board(report["board"])
    elf = Path(report.get("elf") or Path(build_dir) / "firmware.elf")
    if not elf.is_file():
        raise MotError(f"firmware image not found: {elf} (run mcu-mot build first)")
    stop_emulator(build_dir)
    port = free_port()
    argv = board.qemu_argv(elf, f"tcp:127.0.0.1:{port},server=on,wait=off")
    argv[0] = qemu_binary()
    log = open(Path(build_dir) / "qemu.log", "wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = (Path(build_dir) / "qemu.log").read_text(errors="replace").strip().splitlines()
            raise MotError(f"qemu ({board.name}) did not start: {text[-1] if text else proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise MotError(f"qemu ({board.name}) did not open its UART port within 20 s")
    state = {"pid": proc.pid, "port": f"socket://127.0.0.1:{port}", "board": board.name, "elf": str(elf)}
    (Path(build_dir) / STATE).write_text(json.dumps(state))
    return state


@contextlib.contextmanager
def open_device(build_dir=None, port: str | None = None, timeout: float = 1.0):
    """A DeviceClient for `port`, or for the build dir's running emulator, or a temporary one."""
    from .client import DeviceClient
    from .qemu import QemuInstance
    if port:
        with DeviceClient(port, timeout=timeout) as dev:
            yield dev
        return
    if build_dir is None:
        raise MotError("name a --port, or a build directory whose board is emulated")
    state = running_emulator(build_dir)
    if state is not None:
        with DeviceClient(state["port"], timeout=timeout) as dev:
            yield dev
        return
    report = build_report(build_dir)
    from ..build.boards import load_board
    board = load_board(report["board"])
    if not board.emulated:
        raise MotError(f"board '{board.name}' is real hardware: flash it and pass --port")
    with QemuInstance(board, report.get("elf") or Path(build_dir) / "firmware.elf") as q:
        with DeviceClient(q.url, timeout=timeout) as dev:
            yield dev
