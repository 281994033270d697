"""Where the non-Python parts of mcu_mot live: templates, firmware sources, board files, SConstruct.

Every module asks here instead of computing paths from its own location, so that the
same code runs from a checkout and from an installed wheel:

- installed (`pip install .`, a wheel): setup.py ships the repository's top-level templates/,
  firmware/, boards/ and SConstruct inside the package as mcu_mot/_data/;
- a checkout or an editable install (`pip install -e .`, scripts/setup.sh): the repository root,
  so edits to those folders take effect at once."""

from __future__ import annotations

from pathlib import Path

#: the mcu_mot package folder
PACKAGE = Path(__file__).resolve().parent
#: the folder on sys.path that holds this mcu_mot (site-packages, or the checkout root)
IMPORT_ROOT = PACKAGE.parent
_SHIPPED = PACKAGE / "_data"
#: True when the data files come from the installed package, not from a checkout
INSTALLED = (_SHIPPED / "SConstruct").is_file()
#: the folder holding templates/, firmware/, boards/ and SConstruct
DATA_ROOT = _SHIPPED if INSTALLED else IMPORT_ROOT

TEMPLATES = DATA_ROOT / "templates"
FIRMWARE = DATA_ROOT / "firmware"
KERNELS = FIRMWARE / "kernels"
RUNTIME = FIRMWARE / "runtime"
HOST_FIRMWARE = FIRMWARE / "host"
BOOT2 = RUNTIME / "boot2"
BOARDS = DATA_ROOT / "boards"
SCONSTRUCT = DATA_ROOT / "SConstruct"
