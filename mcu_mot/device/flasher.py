"""Flash a built image onto a real board with the tool its board file names
(openocd, pyocd, picotool). Emulated boards are "flashed" by starting QEMU
(device/session.py)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .. import MotError

PACKAGES = {"openocd": "openocd (apt-get install openocd)", "pyocd": "pyocd (pip install pyocd)",
            "picotool": "picotool (apt-get install picotool)"}


def flash_command(board, elf: Path) -> list[str]:
    """The command line that programs `elf` onto `board` and resets it."""
    f = board.flash
    method = f.get("method")
    if method == "openocd":
        argv = ["openocd"]
        for cfg in f.get("config", []):
            argv += ["-f", cfg]
        return argv + ["-c", f"program {elf} verify reset exit"]
    if method == "pyocd":
        return ["pyocd", "flash", "--target", f["target"], str(elf)]
    if method == "picotool":
        return ["picotool", "load", "--execute", str(elf)]
    raise MotError(f"board '{board.name}' has no flash method this tool can run ({method})")


def flash_hardware(board, elf: Path, timeout: float = 120.0) -> str:
    argv = flash_command(board, elf)
    exe = shutil.which(argv[0])
    if exe is None:
        raise MotError(f"{argv[0]} not found: install {PACKAGES.get(argv[0], argv[0])} to flash {board.name}")
    try:
        proc = subprocess.run([exe] + argv[1:], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MotError(f"{argv[0]} did not finish flashing {board.name} within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise MotError(f"{argv[0]} failed to flash {board.name}: {lines[-1].strip() if lines else proc.returncode}")
    return " ".join(argv)
