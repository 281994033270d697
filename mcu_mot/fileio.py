"""Files a command reads and writes: atomic output files (every file appears whole or not
at all) and the one safe loader of user-supplied .npy / .npz arrays."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from mcu_mot.errors import MotError
from mcu_mot.safetext import one_line


def atomic_write(path, data: bytes, mode: int | None = None, fsync: bool = False) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, then rename.

    The file gets ordinary permissions (umask applied), not mkstemp's 0600, unless `mode` is
    given (then exactly that: cache files). fsync: flush the data to disk before the rename, so
    even a crash of the machine leaves the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_arrays(path, what: str = "array file"):
    """The arrays of a user's .npy or .npz file: an ndarray (.npy) or a dict of member name ->
    ndarray in file order (.npz), every member read and the file closed.

    Never unpickles (allow_pickle=False): an object array is refused like any unreadable
    file, with a one-line MotError naming the file (and the member); a missing file is
    "<what> not found: <path>"."""
    path = Path(path)
    if not path.is_file():
        raise MotError(f"{what} not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise MotError(one_line(f"{path}: not a readable .npy/.npz file ({type(exc).__name__}: {exc})", 300)) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    arrays = {}
    with loaded:
        for k in loaded.files:
            try:
                arrays[k] = loaded[k]
            except Exception as exc:  # an object array (pickles are refused, never loaded), a corrupt member
                raise MotError(
                    one_line(
                        f"{path}: member {one_line(k, 60)!r} is not a plain array ({type(exc).__name__}: {exc})", 300
                    )
                ) from None
    return arrays
