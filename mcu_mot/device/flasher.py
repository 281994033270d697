"""Flash a built image onto a real board with the tool its board file names
(openocd, pyocd, picotool). Emulated boards are "flashed" by starting QEMU
(device/session.py).

Every tool runs from an argument vector, never through a shell. openocd is the one tool that
parses a path as code: `-c "program FILE ..."` is a Tcl script, and several openocd versions
`eval` the file name a second time inside their `program` proc. A path holding anything but
plain file-name characters is therefore never put into that script: flash_hardware flashes a
copy under a fresh temporary folder instead (and refuses, in one line, if even that is unsafe)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from mcu_mot.errors import MotError

PACKAGES = {
    "openocd": "openocd (apt-get install openocd)",
    "pyocd": "pyocd (pip install pyocd)",
    "picotool": "picotool (apt-get install picotool)",
}

# characters that mean nothing to Tcl (or Jim Tcl) however often the word is parsed
_TCL_SAFE = re.compile(r"[A-Za-z0-9_./+,:@%=-]+")


def tcl_safe(path) -> bool:
    return bool(_TCL_SAFE.fullmatch(str(path)))


def tcl_path(path) -> str:
    """`path` as one Tcl word, or a one-line MotError if it holds Tcl-special characters."""
    text = str(path)
    if not tcl_safe(text):
        bad = sorted({c for c in text if not _TCL_SAFE.fullmatch(c)})
        raise MotError(
            f"cannot hand {text!r} to openocd: its Tcl would interpret the characters "
            f"{''.join(bad)!r} (use a path of letters, digits and ._-/+,:@%=)"
        )
    return "{" + text + "}"


def flash_command(board, elf: Path) -> list[str]:
    """The command line that programs `elf` onto `board` and resets it."""
    f = board.flash
    method = f.get("method")
    elf = Path(elf).absolute()  # never a relative name a tool could take for an option
    if method == "openocd":
        argv = ["openocd"]
        for cfg in f.get("config", []):
            argv += ["-f", cfg]
        return argv + ["-c", f"program {tcl_path(elf)} verify reset exit"]
    if method == "pyocd":
        return ["pyocd", "flash", "--target", f["target"], str(elf)]
    if method == "picotool":
        return ["picotool", "load", "--execute", str(elf)]
    raise MotError(f"board '{board.name}' has no flash method this tool can run ({method})")


def flash_hardware(board, elf: Path, timeout: float = 120.0) -> str:
    elf = Path(elf).absolute()
    if not elf.is_file():
        raise MotError(f"no firmware to flash: {elf} does not exist (run mcu-mot build first)")
    if board.flash.get("method") == "openocd" and not tcl_safe(elf):
        with tempfile.TemporaryDirectory(prefix="mm-flash-") as tmp:
            copy = Path(tmp) / "firmware.elf"
            shutil.copyfile(elf, copy)
            return _flash(board, copy, timeout)
    return _flash(board, elf, timeout)


def _flash(board, elf: Path, timeout: float) -> str:
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
