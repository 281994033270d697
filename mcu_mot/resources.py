"""Where the non-Python parts of mcu_mot live: templates, firmware sources, board files, SConstruct.

Every module asks here instead of computing paths from its own location, so that the
same code runs from a checkout and from an installed wheel."""
from __future__ import annotations

from pathlib import Path

#: the folder holding templates/, firmware/, boards/ and SConstruct
PACKAGE = Path(__file__).resolve().parent
DATA_ROOT = PACKAGE.parent

TEMPLATES = DATA_ROOT / "templates"
FIRMWARE = DATA_ROOT / "firmware"
KERNELS = FIRMWARE / "kernels"
RUNTIME = FIRMWARE / "runtime"
HOST_FIRMWARE = FIRMWARE / "host"
BOOT2 = RUNTIME / "boot2"
BOARDS = DATA_ROOT / "boards"
SCONSTRUCT = DATA_ROOT / "SConstruct"
