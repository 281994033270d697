"""Packaging hook; everything else is in pyproject.toml.

The repository keeps templates/, firmware/, boards/ and SConstruct at its top level (a documented
layout). A wheel (and so `pip install .`) carries them inside the package as mcu_mot/_data/, where
mcu_mot/resources.py looks first; an editable install (`pip install -e .`, scripts/setup.sh) copies
nothing and uses the checkout's folders live. MANIFEST.in puts the same folders in the sdist.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: the top-level folders and files shipped as mcu_mot/_data/ (mcu_mot/resources.py names their parts)
DATA = ("templates", "firmware", "boards", "SConstruct")
IGNORE = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.o", "*.so", "*.elf", ".sconsign*", ".*.swp")


class build_py_with_data(build_py):
    """build_py, then copy DATA into BUILD_LIB/mcu_mot/_data (afresh: no file of an earlier build stays)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "mcu_mot" / "_data"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for name in DATA:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=IGNORE)
            elif src.is_file():
                shutil.copy2(src, dest / name)
            else:
                raise SystemExit(f"setup.py: {src} is missing (an sdist without it? see MANIFEST.in)")

    def get_outputs(self, include_bytecode=1):
        dest = Path(self.build_lib) / "mcu_mot" / "_data"
        extra = [str(p) for p in dest.rglob("*") if p.is_file()] if dest.is_dir() else []
        return super().get_outputs(include_bytecode) + extra


setup(cmdclass={"build_py": build_py_with_data})
