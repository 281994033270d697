"""Opt-in sanitizers for the C compiled on the host (the simulator's shared library and the
host firmware executable): MCU_MOT_SANITIZE=undefined,address (or one of them).

- undefined: -fsanitize=undefined -fno-sanitize-recover=all, so undefined behaviour aborts the
  run instead of printing and going on. -fwrapv is dropped in this mode: it defines signed
  overflow (and GCC then does not check it), and the kernels must not depend on it.
- address: -fsanitize=address. In a library loaded by ctypes the ASan runtime must come first
  in the process (LD_PRELOAD=$(cc -print-file-name=libasan.so)); without that preload the
  simulator's library is built without it (executables always get it).

Unset or empty: no change to any flag.
"""

from __future__ import annotations

import os

from mcu_mot.errors import MotError

KINDS = ("undefined", "address")


def requested() -> list[str]:
    raw = os.environ.get("MCU_MOT_SANITIZE", "")
    kinds = [k.strip() for k in raw.replace(";", ",").split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise MotError(f"MCU_MOT_SANITIZE: unknown sanitizer {bad[0]!r} (use {', '.join(KINDS)})")
    return kinds


def _asan_preloaded() -> bool:
    return "libasan" in os.environ.get("LD_PRELOAD", "")


def cache_tag(shared: bool = False) -> str:
    """Cache-key part: an instrumented build and a plain one are different entries."""
    flags = host_cflags([], shared)
    return "" if not flags else "-san-" + flags[-2].split("=", 1)[1].replace(",", "+")


def host_cflags(flags, shared: bool = False) -> list[str]:
    """`flags` plus what MCU_MOT_SANITIZE asks for (for a shared library when `shared`)."""
    kinds = requested()
    flags = list(flags)
    if not kinds:
        return flags
    if shared and "address" in kinds and not _asan_preloaded():
        kinds = [k for k in kinds if k != "address"]
    if not kinds:
        return flags
    if "undefined" in kinds:
        flags = [f for f in flags if f != "-fwrapv"]
    return flags + ["-g", "-fno-omit-frame-pointer", "-fsanitize=" + ",".join(kinds), "-fno-sanitize-recover=all"]
