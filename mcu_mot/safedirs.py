"""Per-user folders nobody else can write, and cache files that are trusted only when whole.

The cache holds code this process loads or runs (the host simulator's shared libraries, the
host firmware) and a build folder holds what SCons unpickles (.sconsign.dblite): another local
user who can write into either runs code as you. So, the way ssh treats ~/.ssh and XDG treats
$XDG_RUNTIME_DIR, a folder is used only when

- it is owned by you and not writable by group or others, and
- every existing folder above it is owned by you or root and not writable by group or others,
  unless that folder has the sticky bit (like /tmp: others cannot rename or remove what you own).

Folders created here are 0700. Anything else is refused with one line (MotError) naming the
folder and why. The cache root is $MCU_MOT_CACHE, else $XDG_CACHE_HOME/mcu_mot, else
~/.cache/mcu_mot, under the same checks.

Cache entries (store_entry / load_entry) are a file and a meta JSON beside it, both written
atomically (temp file, fsync, rename), the meta last: it records the cache key, the file's name,
size and sha256, and a digest of itself. An entry is trusted only when all of that matches, so a
truncated, foreign or mismatched entry reads as absent and gets rebuilt; nothing here raises on
a damaged file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import stat
import time
from pathlib import Path

from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write

_CACHE_ADVICE = "another user could plant code that mcu-mot would load; use a folder only you can write"
_BUILD_ADVICE = (
    "SCons would load its .sconsign.dblite, which another user could plant; use a build folder only you can write"
)


def _who(uid: int) -> str:
    try:
        import pwd  # noqa: PLC0415  (POSIX only: the message works without it)

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _problem(st: os.stat_result, leaf: bool, path: Path) -> str | None:
    """Why a folder (leaf: the one we use; else a folder above it) is unsafe, or None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    me = os.geteuid()
    if st.st_uid != me and (leaf or st.st_uid != 0):
        return f"is owned by {_who(st.st_uid)}, not by you ({_who(me)})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022 and (leaf or not mode & stat.S_ISVTX):
        who = {0o020: "group", 0o002: "others", 0o022: "group and others"}[mode & 0o022]
        fix = f"; chmod go-w {path} if it is yours" if st.st_uid == os.geteuid() else ""
        return f"is writable by {who} (mode {mode:04o}{fix})"
    return None


def _secure_dir(path, what: str, advice: str, note: str = "") -> Path:
    """Create `path` (missing folders 0700) and check it and every folder above it; return it resolved."""
    try:
        path = Path(os.path.expanduser(str(path))).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
        raise MotError(f"cannot use {what} {path}{note}: {exc}") from None
    if not hasattr(os, "geteuid"):  # no POSIX owners (Windows): nothing to check
        path.mkdir(parents=True, exist_ok=True)
        return path
    cur = Path(path.anchor)
    for part in (None, *path.parts[1:]):
        if part is not None:
            cur = cur / part
        leaf = cur == path
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            try:
                os.mkdir(cur, 0o700)
                os.chmod(cur, 0o700)  # exactly 0700 whatever the umask
            except FileExistsError:
                pass  # made meanwhile (another of our processes?): checked below
            except OSError as exc:
                raise MotError(f"cannot create {what} {path}{note}: {exc.strerror or exc}") from None
            try:
                st = os.lstat(cur)
            except OSError as exc:
                raise MotError(f"cannot use {what} {path}{note}: {cur}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise MotError(f"cannot use {what} {path}: {cur}: {exc.strerror or exc}") from None
        why = _problem(st, leaf, cur)
        if why:
            where = f"{what} {path}{note}" if leaf else f"folder {cur} (above {what} {path}{note})"
            raise MotError(f"{where} {why}: {advice}")
    return path


def private_dir(path, what: str = "cache folder", note: str = "") -> Path:
    """A folder for this user only: created 0700, refused when another user could write it."""
    return _secure_dir(path, what, _CACHE_ADVICE, note)


def ensure_build_dir(path) -> Path:
    """A firmware build folder (given by the user or derived): created 0700 when missing, refused
    with one line when another user owns it or could write it (or a folder above it)."""
    return _secure_dir(path, "build folder", _BUILD_ADVICE)


def cache_root() -> Path:
    """$MCU_MOT_CACHE, else $XDG_CACHE_HOME/mcu_mot (an absolute one, as XDG says), else
    ~/.cache/mcu_mot: created 0700, checked like every folder here."""
    env = os.environ.get("MCU_MOT_CACHE")
    if env:
        return private_dir(env, "cache folder", " ($MCU_MOT_CACHE)")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    else:
        try:
            base = Path.home() / ".cache"
        except (RuntimeError, KeyError):
            raise MotError("cannot find your home folder for the cache: set MCU_MOT_CACHE") from None
    return private_dir(base / "mcu_mot", "cache folder")


def cache_subdir(*names: str) -> Path:
    """cache_root()/name/...: each part sanitized, created 0700 and checked."""
    return private_dir(cache_root().joinpath(*(safe_name(n) for n in names)))


def safe_name(text, limit: int = 48) -> str:
    """A file-name part made only of letters, digits, '.', '_' and '-' (never leading '.' or '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip("._-")[:limit]
    return name or "x"


def default_build_dir(kind: str, model_path, *parts: str) -> Path:
    """The build folder a command uses when the user names none: in the per-user cache
    (cache_root()/build/KIND/<model stem>-<hash of the model's path>-<parts>), 0700."""
    model = Path(model_path)
    tag = hashlib.sha256(os.path.abspath(str(model)).encode()).hexdigest()[:8]
    name = "-".join([safe_name(model.stem), tag, *(safe_name(p) for p in parts)])
    return ensure_build_dir(cache_root() / "build" / safe_name(kind) / name)


# ---------------------------------------------------------------- cache files


def write_cache_file(path, data: bytes, mode: int = 0o600) -> Path:
    """Write a cache file atomically (temp file in the same folder, fsync, rename) with `mode`."""
    return atomic_write(path, data, mode=mode, fsync=True)


def read_own_file(path) -> bytes | None:
    """The bytes of a regular file owned by us that nobody else can write (no symlink); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            return None
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def store_entry(folder: Path, key: str, suffix: str, data: bytes, info=None, mode: int = 0o600) -> Path:
    """Write cache entry `key`: folder/KEY+SUFFIX holding `data`, then folder/KEY.json describing it
    (the meta goes last, so a kill in between leaves an entry that reads as absent)."""
    key = safe_name(key, 200)
    name = key + suffix
    path = write_cache_file(Path(folder) / name, data, mode)
    body = json.loads(
        json.dumps(
            {
                "format": 1,
                "key": key,
                "file": name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "info": info,
            }
        )
    )
    body["digest"] = _digest(body)
    write_cache_file(Path(folder) / f"{key}.json", (json.dumps(body, indent=1) + "\n").encode())
    _sweep(Path(folder), (name, f"{key}.json"))
    return path


def load_entry(folder: Path, key: str, suffix: str):
    """(path, info) of cache entry `key` when its meta is whole and the file matches it, else None."""
    key = safe_name(key, 200)
    name = key + suffix
    raw = read_own_file(Path(folder) / f"{key}.json")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            return None
        body = {k: v for k, v in meta.items() if k != "digest"}
        if (
            meta.get("digest") != _digest(body)
            or meta.get("format") != 1
            or meta.get("key") != key
            or meta.get("file") != name
        ):
            return None
    except (ValueError, RecursionError):  # truncated, empty, not UTF-8, not JSON, absurdly nested
        return None
    path = Path(folder) / name
    data = read_own_file(path)
    if data is None or len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None
    return path, meta.get("info")


def _sweep(folder: Path, names, age: float = 3600.0) -> None:
    """Remove temp files of these names that a killed writer left behind (older than `age` s)."""
    now = time.time()
    for name in names:
        for p in folder.glob(f".{glob.escape(name)}.*"):
            try:
                if now - p.lstat().st_mtime > age:
                    p.unlink()
            except OSError:
                pass
