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

from mcu_mot.errors import MotError

STATE = "device.json"


def _trusted_dir(build_dir) -> Path:
    """The build folder, if only this user can write it: its report.json names the image to run
    and its device.json the process to stop, so a folder another user can write is refused."""
    from mcu_mot.safedirs import ensure_build_dir
    path = Path(build_dir)
    if not path.is_dir():
        raise MotError(f"{build_dir}: no such build folder (run mcu-mot build first)")
    return ensure_build_dir(path)


def build_report(build_dir) -> dict:
    path = _trusted_dir(build_dir) / "report.json"
    if not path.is_file():
        raise MotError(f"{build_dir}: no report.json (run mcu-mot build first)")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise MotError(f"{path}: unreadable report ({type(exc).__name__}); rebuild") from None
    if not isinstance(report, dict) or not isinstance(report.get("board"), str):
        raise MotError(f"{path}: not a report of mcu-mot build; rebuild")
    return report


def firmware_image(build_dir, report: dict) -> Path:
    """BUILD_DIR/firmware.elf, checked against the report that describes it (elf_sha256), so a
    device never runs an image other than the one whose layers and model the report lists."""
    elf = Path(build_dir) / "firmware.elf"
    if not elf.is_file():
        raise MotError(f"firmware image not found: {elf} (run mcu-mot build first)")
    want = report.get("elf_sha256")
    if want is not None:
        import hashlib
        if hashlib.sha256(elf.read_bytes()).hexdigest() != want:
            raise MotError(f"{elf} is not the image {Path(build_dir) / 'report.json'} describes "
                           f"(an interrupted or foreign build?): run mcu-mot build again")
    return elf


def _is_our_emulator(pid: int, elf: str) -> bool:
    """pid is this user's emulator running `elf` (a recycled or planted pid is never killed)."""
    try:
        st = os.stat(f"/proc/{pid}")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists() and _alive(pid)   # no /proc: trust the pid
    return st.st_uid == os.geteuid() and b"-kernel" in argv and os.fsencode(str(elf)) in argv


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def running_emulator(build_dir) -> dict | None:
    """The state of an emulator started by `flash` for this build dir, if it still runs."""
    path = _trusted_dir(build_dir) / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        pid, elf = int(state["pid"]), str(state["elf"])
        str(state["port"])
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        path.unlink(missing_ok=True)          # damaged: nothing to trust, nothing to stop
        return None
    if pid <= 1 or not _alive(pid) or not _is_our_emulator(pid, elf):
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
    from mcu_mot.boards import load_board
    from mcu_mot.device.qemu import free_port, qemu_binary
    report = build_report(build_dir)
    board = load_board(report["board"])
    elf = firmware_image(build_dir, report).resolve()
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
    from mcu_mot.fileio import atomic_write
    atomic_write(Path(build_dir) / STATE, json.dumps(state).encode())
    return state


@contextlib.contextmanager
def open_device(build_dir=None, port: str | None = None, timeout: float = 1.0):
    """A DeviceClient for `port`, or for the build dir's running emulator, or a temporary one."""
    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.qemu import QemuInstance
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
    from mcu_mot.boards import load_board
    board = load_board(report["board"])
    if not board.emulated:
        raise MotError(f"board '{board.name}' is real hardware: flash it and pass --port")
    with QemuInstance(board, firmware_image(build_dir, report)) as q:
        with DeviceClient(q.url, timeout=timeout) as dev:
            yield dev
