"""Atomic output files: every file a command writes appears whole or not at all."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
