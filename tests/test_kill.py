"""Killed builds (issue 23): `mcu-mot build` and `mcu-mot compile` killed (SIGKILL, SIGTERM) at
random moments must leave their output folder either without a trusted result or with a result
that belongs together (ELF and report.json of the same model), nothing of the build may keep
running, and the next build must succeed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BOARD = "qemu-mps2-an386"
needs_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi)"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny int8 models with the same layers and different weights (so different hashes)."""
    from harness import convert, keras_model, save
    from keras import layers as L

    d = tmp_path_factory.mktemp("kill-models")
    body = lambda x: L.Dense(4)(L.Flatten()(L.Conv2D(4, 3, activation="relu")(x)))  # noqa: E731
    return [save(convert(keras_model(body, (8, 8, 1), seed=s), "int8"), d, f"m{s}") for s in (0, 1)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "mcu_mot", *map(str, args)]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _running_in(folder: Path) -> list[str]:
    """Processes (other than us) working in `folder` or naming it on their command line."""
    found = []
    key = str(folder)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if key in cmd or cwd == key or cwd.startswith(key + "/"):
            found.append(f"{pid}: {cmd[:120]}")
    return found


def _settle(folder: Path, grace: float) -> list[str]:
    """Wait up to `grace` s for everything working in `folder` to end; what still runs then."""
    deadline = time.monotonic() + grace
    while True:
        left = _running_in(folder)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _kill_at_random(argv, rng, longest: float, sig) -> int:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    time.sleep(float(rng.uniform(0.0, longest)))
    proc.send_signal(sig)
    return proc.wait()


def _model_hash_u32(model: Path) -> bytes:
    return struct.pack("<I", int(_sha(model)[:8], 16))


def _check_build_dir(out: Path, models) -> str:
    """Nothing trusted (no report.json), or firmware.elf and report.json of one and the same model."""
    report = out / "report.json"
    if not report.is_file():
        return "untrusted"
    rep = json.loads(report.read_text())
    elf = out / "firmware.elf"
    assert elf.is_file(), "report.json without firmware.elf"
    data = elf.read_bytes()
    model = next(m for m in models if _sha(m) == rep["model_sha256"])
    other = next(m for m in models if m != model)
    assert _model_hash_u32(model) in data and _model_hash_u32(other) not in data, (
        f"report.json is from {model.name}, firmware.elf is not"
    )
    assert rep.get("elf_sha256") == hashlib.sha256(data).hexdigest(), "report.json does not describe firmware.elf"
    return model.name


# 12 kills in the fast suite (both signals, 3 rebuilds after a kill); MCU_MOT_KILLS=40 for a longer hunt
KILLS = int(os.environ.get("MCU_MOT_KILLS", "12"))


@needs_gcc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_build_leaves_a_matching_pair(tmp_path, models):
    out = tmp_path / "fw"
    t0 = time.monotonic()
    r = subprocess.run(
        _cli("build", models[0], "-b", BOARD, "--backend", "portable", "-o", out),
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    full = time.monotonic() - t0
    assert _check_build_dir(out, models) == models[0].name
    rng = np.random.default_rng(23)
    seen = set()
    for i in range(KILLS):
        model = models[(i + 1) % 2]  # every build changes the firmware
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        _kill_at_random(_cli("build", model, "-b", BOARD, "--backend", "portable", "-o", out), rng, full, sig)
        left = _settle(out, 3.0)
        assert not left, f"kill {i} ({sig.name}): still running after mcu-mot build died: {left}"
        seen.add(_check_build_dir(out, models))
        if i % 4 == 3:  # and the next build succeeds
            r = subprocess.run(
                _cli("build", model, "-b", BOARD, "--backend", "portable", "-o", out),
                capture_output=True,
                text=True,
                env=_env(),
            )
            assert r.returncode == 0, f"build after kill {i}: {r.stdout + r.stderr}"
            assert _check_build_dir(out, models) == model.name
    assert len(seen) >= 2, f"the kills never landed inside a build: {seen}"


def _check_compile_dir(out: Path, models) -> str:
    if not out.exists():
        return "absent"
    rep = json.loads((out / "report.json").read_text())
    model = next(m for m in models if _sha(m) == rep["model_sha256"])
    header = (out / "model.h").read_text()
    assert f"#define MODEL_HASH 0x{rep['model_sha256'][:8]}u" in header, "model.h is from another model"
    assert (out / "model.c").stat().st_size > 0 and any((out / "kernels").glob("*.c"))
    return model.name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_compile_leaves_old_or_new_output(tmp_path, models):
    out = tmp_path / "gen"
    t0 = time.monotonic()
    r = subprocess.run(
        _cli("compile", models[0], "--backend", "portable", "-o", out), capture_output=True, text=True, env=_env()
    )
    assert r.returncode == 0, r.stdout + r.stderr
    full = time.monotonic() - t0
    rng = np.random.default_rng(230)
    for i in range(20):
        model = models[(i + 1) % 2]
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        _kill_at_random(_cli("compile", model, "--backend", "portable", "-o", out), rng, full, sig)
        _check_compile_dir(out, models)
    r = subprocess.run(
        _cli("compile", models[1], "--backend", "portable", "-o", out), capture_output=True, text=True, env=_env()
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _check_compile_dir(out, models) == models[1].name
