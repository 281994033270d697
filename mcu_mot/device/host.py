"""The firmware's device side built for this machine: the generated model, the kernels, the
protocol and firmware/host/ (a HAL whose UART is a TCP server socket) compiled with the system
C compiler into one executable. It speaks the real protocol on 127.0.0.1, so the host side, the
transport's retries and fault injection are tested in seconds without QEMU.

    with HostDevice("model.tflite") as dev:          # builds (cached), starts, stops
        with DeviceClient(dev.url) as c: ...
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

from mcu_mot.codegen.compile import codegen_fingerprint, generate, model_digest
from mcu_mot.device.simulator import host_compiler
from mcu_mot.errors import MotError
from mcu_mot.fwbuild.sanitize import cache_tag, host_cflags
from mcu_mot.resources import HOST_FIRMWARE, KERNELS
from mcu_mot.resources import RUNTIME as RUNTIME_DIR
from mcu_mot.safedirs import cache_subdir, load_entry, store_entry

RUNTIME = RUNTIME_DIR
HOST_DIR = HOST_FIRMWARE
RUNTIME_SOURCES = ("mm_protocol.c", "mm_cobs.c", "mm_crc32.c")
HOST_SOURCES = ("mm_hal_host.c", "main_host.c")
HOST_CFLAGS = [
    "-O2",
    "-std=gnu99",
    "-Wtrigraphs",
    "-D_POSIX_C_SOURCE=200809L",
    "-ffp-contract=off",
    "-fwrapv",
    "-Wall",
    "-Wextra",
    "-Werror",
]


def _fingerprint() -> str:
    h = hashlib.sha256(codegen_fingerprint().encode())
    for p in [RUNTIME / s for s in RUNTIME_SOURCES] + sorted(RUNTIME.glob("*.h")) + sorted(HOST_DIR.glob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_host_firmware(model_path, out: Path | None = None) -> Path:
    """Compile the host firmware for `model_path`; returns the executable (cached by model and sources)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MotError(f"model file not found: {model_path}")
    key = model_digest(model_path.read_bytes())[:24] + "-" + _fingerprint() + cache_tag()
    if out is None:  # cache_dir()/hostfw/KEY.bin, run only when KEY.json is whole and the file hashes to it
        cdir = cache_subdir("hostfw")
        found = load_entry(cdir, key, ".bin")
        if found is not None:
            return found[0]
    compiled = generate(model_path, "portable", "host")
    with tempfile.TemporaryDirectory(prefix="mm-hostfw-") as tmp:
        tmp = Path(tmp)
        for name, text in compiled.files.items():
            (tmp / name).write_text(text)
        target = tmp / "fw"
        cmd = [
            host_compiler(),
            *host_cflags(HOST_CFLAGS),
            f"-I{tmp}",
            f"-I{KERNELS}",
            f"-I{RUNTIME}",
            f"-I{HOST_DIR}",
            "-include",
            str(RUNTIME / "mm_profile_hooks.h"),
            str(tmp / "model.c"),
            *map(str, compiled.kernel_sources),
            *(str(RUNTIME / s) for s in RUNTIME_SOURCES),
            *(str(HOST_DIR / s) for s in HOST_SOURCES),
            "-lm",
            "-o",
            str(target),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
            raise MotError(f"host firmware build failed: {first}")
        if out is None:
            return store_entry(cdir, key, ".bin", target.read_bytes(), mode=0o700)
        exe = Path(out)
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp_exe = exe.with_name(exe.name + f".{os.getpid()}.tmp")
        shutil.copy2(target, tmp_exe)
        os.replace(tmp_exe, exe)
    return exe


_live: "weakref.WeakSet[HostDevice]" = weakref.WeakSet()


class HostDevice:
    """Run the host firmware (built from a model, or an existing executable) on a free port."""

    def __init__(self, model_or_exe, *, port: int = 0):
        p = Path(model_or_exe)
        self.exe = p if p.suffix != ".tflite" else build_host_firmware(p)
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> "HostDevice":
        # stdin stays a pipe: the firmware exits when it closes, so it never outlives us
        self.proc = subprocess.Popen(
            [str(self.exe), str(self.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        _live.add(self)
        line = self.proc.stdout.readline().decode(errors="replace").split()
        if len(line) != 2 or line[0] != "PORT":
            err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.poll() is not None else ""
            self.stop()
            raise MotError(f"host firmware did not start: {err or 'no port announced'}")
        self.port = int(line[1])
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@atexit.register
def _stop_all() -> None:
    for dev in list(_live):
        dev.stop()
