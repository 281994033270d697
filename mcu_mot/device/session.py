"""What a build folder tells the device side, and only when it can be trusted: its report.json
(checked), the firmware.elf that report describes (hash-checked), and the emulator `mcu-mot flash`
left running for it (BUILD_DIR/device.json: a pid and a port, trusted only if that pid is this
user's emulator running that image). Which device a command talks to is mcu_mot.device.target."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write
from mcu_mot.safedirs import ensure_build_dir

STATE = "device.json"


def _trusted_dir(build_dir) -> Path:
    """The build folder, if only this user can write it: its report.json names the image to run
    and its device.json the process to stop, so a folder another user can write is refused."""
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
        if hashlib.sha256(elf.read_bytes()).hexdigest() != want:
            raise MotError(
                f"{elf} is not the image {Path(build_dir) / 'report.json'} describes "
                f"(an interrupted or foreign build?): run mcu-mot build again"
            )
    return elf


def _is_our_emulator(pid: int, elf: str) -> bool:
    """pid is this user's emulator running `elf` (a recycled or planted pid is never killed)."""
    try:
        st = os.stat(f"/proc/{pid}")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc/self").exists() and _alive(pid)  # no /proc: trust the pid
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
        path.unlink(missing_ok=True)  # damaged: nothing to trust, nothing to stop
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


def save_emulator(build_dir, state: dict) -> None:
    """Record the detached emulator running this build (pid, port, board, elf) in device.json."""
    atomic_write(_trusted_dir(build_dir) / STATE, json.dumps(state).encode())
