"""Caches and build folders nobody else can write, and cache entries that are never trusted half-written.

What these tests attack (each one passes only with the checks of mcu_mot/safedirs.py in place):
- the host simulator's cache (<cache>/host/KEY.so + KEY.json): a truncated meta, a truncated .so,
  another model's .so, a planted library whose constructor writes a marker file;
- a cache folder or build folder owned by another user (simulated: chown to 65534, we run as root)
  or writable by group/others, with a library or a .sconsign.dblite pickle planted in it;
- `mcu-mot simulate` killed (SIGKILL) at random moments, then run again;
- the host-firmware cache, the autotune cost cache and build folders, the bench model cache, and the
  default build folders of `run` and `bench` (formerly fixed names under the shared /tmp).
"""

import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from harness import assert_one_line_error, convert, keras_model, save

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="simulating another user's folder needs root (chown)")
needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="qemu-system-arm / arm-none-eabi-gcc not installed",
)


def mm(*args, cache=None, env=None, timeout=300):
    e = dict(os.environ, **(env or {}))
    e.pop("MCU_MOT_DEBUG", None)
    if cache is not None:
        e["MCU_MOT_CACHE"] = str(cache)
    proc = subprocess.run(
        [sys.executable, "-m", "mcu_mot", *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def assert_refused(rc, err, *words):
    """Exit code 1 and exactly one line naming the problem."""
    assert_one_line_error(rc, err, *words, code=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("safety")
    out = {}
    for name, seed in (("a", 0), ("b", 7)):
        m = keras_model(lambda x: keras.layers.Dense(4)(keras.layers.Dense(6, activation="relu")(x)), (10,), seed=seed)
        out[name] = save(convert(m, "int8", seed=seed), d, name)
    x = np.random.default_rng(0).integers(-128, 128, (5, 10)).astype(np.int8)
    np.save(d / "x.npy", x)
    out["x"] = d / "x.npy"
    out["dir"] = d
    return out


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory):
    """Each model's simulated outputs from a clean cache, to compare every later run with."""
    d = tmp_path_factory.mktemp("ref")
    ref = {}
    for name in ("a", "b"):
        rc, _, err = mm("simulate", models[name], "--input", models["x"], "--output", d / f"{name}.npy", cache=d / name)
        assert rc == 0, err
        ref[name] = np.load(d / f"{name}.npy")
        ref[f"cache-{name}"] = d / name
    assert not np.array_equal(ref["a"], ref["b"])
    return ref


def warm_cache(models, reference, tmp_path, name="a") -> Path:
    """A cache holding one complete entry of model `name`, made now (not copied: the key covers
    mcu_mot's own sources, which may change while the tests run)."""
    cache = tmp_path / f"cache-{name}"
    simulate_ok(models, reference, cache, tmp_path, name)
    return cache


def simulate_ok(models, reference, cache, tmp_path, name="a"):
    """Run `mcu-mot simulate` on model `name` and assert its outputs are the reference, bit for bit."""
    y = tmp_path / f"y-{name}-{time.monotonic_ns()}.npy"
    rc, _, err = mm("simulate", models[name], "--input", models["x"], "--output", y, cache=cache)
    assert rc == 0, err
    assert "Traceback" not in err
    assert np.array_equal(np.load(y), reference[name])


def entry(cache) -> tuple[Path, Path]:
    """The one host-simulator cache entry in `cache` (the .so and its meta)."""
    libs = sorted((Path(cache) / "host").glob("*.so"))
    assert len(libs) == 1, libs
    return libs[0], libs[0].with_suffix(".json")


def marker_library(tmp_path, marker: Path) -> Path:
    """A shared library whose constructor creates `marker` the moment it is loaded."""
    src = tmp_path / "evil.c"
    src.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'    FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("loaded", f); fclose(f); }}\n'
        "}\n"
        "int model_invoke(void) { return 0; }\n"
    )
    lib = tmp_path / "evil.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


class Planted:
    """Unpickling this creates the marker file (what a planted .sconsign.dblite could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_sconsign(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".sconsign.dblite").write_bytes(pickle.dumps(Planted(marker)))


# ----------------------------------------------------------- the host simulator's cache


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "list", "wrong-key", "old-format"])
def test_damaged_meta_is_rebuilt(models, reference, tmp_path, damage):
    cache = warm_cache(models, reference, tmp_path)
    lib, meta = entry(cache)
    text = meta.read_text()
    meta.write_text(
        {
            "truncate": text[: len(text) // 2],
            "empty": "",
            "garbage": "\x00\xff{{",
            "list": "[1, 2]",
            "wrong-key": text.replace(lib.stem, "0" * 8 + lib.stem[8:]),
            "old-format": json.dumps(json.loads(text).get("report", json.loads(text))),
        }[damage]
    )
    simulate_ok(models, reference, cache, tmp_path)
    assert json.loads(meta.read_text())["key"] == lib.stem  # rewritten whole


@pytest.mark.parametrize("damage", ["truncate", "empty", "other-model"])
def test_damaged_library_is_rebuilt(models, reference, tmp_path, damage):
    cache = warm_cache(models, reference, tmp_path)
    lib, _ = entry(cache)
    if damage == "other-model":  # a valid library of another model under this model's name
        shutil.copy(entry(reference["cache-b"])[0], lib)
    else:
        data = lib.read_bytes()
        lib.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
    simulate_ok(models, reference, cache, tmp_path)
    from mcu_mot.safedirs import load_entry

    assert load_entry(lib.parent, lib.stem, ".so")  # a whole entry again, trusted next time


def test_planted_library_is_never_loaded(models, reference, tmp_path):
    cache = warm_cache(models, reference, tmp_path)
    lib, _ = entry(cache)
    marker = tmp_path / "LOADED"
    shutil.copy(marker_library(tmp_path, marker), lib)  # same name, other content, meta left as it was
    simulate_ok(models, reference, cache, tmp_path)
    assert not marker.exists(), "a planted library in the cache was loaded"
    assert lib.read_bytes() != (tmp_path / "evil.so").read_bytes()


@as_root
def test_foreign_cache_folder_is_refused_and_nothing_in_it_is_loaded(models, reference, tmp_path):
    cache = warm_cache(models, reference, tmp_path)
    lib, _ = entry(cache)
    marker = tmp_path / "LOADED"
    shutil.copy(marker_library(tmp_path, marker), lib)
    for p in [cache, *cache.rglob("*")]:
        os.chown(p, NOBODY, NOBODY)
    rc, _, err = mm("simulate", models["a"], "--input", models["x"], "--output", tmp_path / "y.npy", cache=cache)
    assert_refused(rc, err, str(cache), "owned by")
    assert not marker.exists() and not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("bits", [stat.S_IWOTH, stat.S_IWGRP])
def test_cache_folder_writable_by_others_is_refused(models, tmp_path, bits):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o700 | bits)
    rc, _, err = mm("simulate", models["a"], "--input", models["x"], "--output", tmp_path / "y.npy", cache=cache)
    assert_refused(rc, err, str(cache), "writable")


@as_root
def test_foreign_subfolder_or_ancestor_of_the_cache_is_refused(models, tmp_path):
    cache = tmp_path / "cache"
    (cache / "host").mkdir(parents=True)
    cache.chmod(0o700)
    os.chown(cache / "host", NOBODY, NOBODY)
    rc, _, err = mm("simulate", models["a"], "--input", models["x"], "--output", tmp_path / "y.npy", cache=cache)
    assert_refused(rc, err, str(cache / "host"), "owned by")
    shared = tmp_path / "shared"  # not sticky and world-writable: anyone can swap the folder below it
    shared.mkdir()
    shared.chmod(0o777)
    rc, _, err = mm(
        "simulate", models["a"], "--input", models["x"], "--output", tmp_path / "y.npy", cache=shared / "cache"
    )
    assert_refused(rc, err, str(shared), "writable")


def test_new_cache_folders_are_private(models, reference, tmp_path):
    sticky = tmp_path / "sticky"  # like /tmp: world-writable with the sticky bit is a fine parent
    sticky.mkdir()
    sticky.chmod(0o1777)
    cache = sticky / "me" / "cache"
    simulate_ok(models, reference, cache, tmp_path)
    for d in (sticky / "me", cache, cache / "host"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    lib, meta = entry(cache)
    for f in (lib, meta):
        assert not f.stat().st_mode & 0o022


def test_xdg_cache_home_is_used_and_checked(models, reference, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MCU_MOT_CACHE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    y = tmp_path / "y.npy"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcu_mot",
            "simulate",
            str(models["a"]),
            "--input",
            str(models["x"]),
            "--output",
            str(y),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(y), reference["a"])
    assert list((tmp_path / "xdg" / "mcu_mot" / "host").glob("*.so"))
    (tmp_path / "xdg" / "mcu_mot").chmod(0o777)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcu_mot",
            "simulate",
            str(models["a"]),
            "--input",
            str(models["x"]),
            "--output",
            str(y),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert_refused(proc.returncode, proc.stderr, str(tmp_path / "xdg" / "mcu_mot"), "writable")


def test_simulate_killed_at_random_moments_never_leaves_a_trusted_half_entry(models, reference, tmp_path):
    """SIGKILL `mcu-mot simulate` 20 times at seeded random moments of a cold run (cache emptied each
    time, so the kill lands anywhere in compile + cache writes); the next run must be right."""
    import random

    rng = random.Random(1234)
    cache = tmp_path / "cache"
    y = tmp_path / "y.npy"
    env = dict(os.environ, MCU_MOT_CACHE=str(cache))
    env.pop("MCU_MOT_DEBUG", None)
    cmd = [
        sys.executable,
        "-m",
        "mcu_mot",
        "simulate",
        str(models["a"]),
        "--input",
        str(models["x"]),
        "--output",
        str(y),
    ]
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    cold = time.monotonic() - t0
    for i in range(int(os.environ.get("MCU_MOT_KILLS", "12"))):  # MCU_MOT_KILLS=40: a longer hunt
        shutil.rmtree(cache / "host", ignore_errors=True)
        if i % 4 == 3:  # an entry damaged earlier: this kill lands on its repair
            shutil.copytree(reference["cache-a"] / "host", cache / "host")
            lib, _ = entry(cache)
            lib.write_bytes(lib.read_bytes()[:1000])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 1.1 * cold))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        y.unlink(missing_ok=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (i, proc.stderr)
        assert np.array_equal(np.load(y), reference["a"]), i
    left = [p.name for p in (cache / "host").iterdir() if not p.name.startswith(".")]
    assert {Path(n).suffix for n in left} == {".json", ".so"}, left  # temp files are dot files


# ----------------------------------------------------------- build folders


def _build(models, out, cache):
    return mm("build", models["a"], "-b", "qemu-mps2-an385", "-o", out, cache=cache)


@as_root
@needs_arm
def test_foreign_build_folder_is_refused_and_its_sconsign_never_unpickled(models, tmp_path):
    out = tmp_path / "fw"
    marker = tmp_path / "UNPICKLED"
    plant_sconsign(out, marker)
    for p in (out, out / ".sconsign.dblite"):
        os.chown(p, NOBODY, NOBODY)
    rc, _, err = _build(models, out, tmp_path / "cache")
    assert_refused(rc, err, str(out), "owned by")
    assert not marker.exists(), "a planted .sconsign.dblite was unpickled"
    assert not (out / "build.json").exists()


@needs_arm
@pytest.mark.parametrize("bits", [stat.S_IWOTH, stat.S_IWGRP])
def test_build_folder_writable_by_others_is_refused(models, tmp_path, bits):
    out = tmp_path / "fw"
    marker = tmp_path / "UNPICKLED"
    plant_sconsign(out, marker)
    out.chmod(0o755 | bits)
    rc, _, err = _build(models, out, tmp_path / "cache")
    assert_refused(rc, err, str(out), "writable")
    assert not marker.exists()


@needs_arm
def test_build_folder_below_a_folder_others_can_write_is_refused(models, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    rc, _, err = _build(models, shared / "fw", tmp_path / "cache")
    assert_refused(rc, err, str(shared), "writable")
    assert not (shared / "fw" / ".sconsign.dblite").exists()


@needs_arm
def test_own_build_folder_under_a_sticky_folder_builds(models, tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    rc, _, err = _build(models, sticky / "fw", tmp_path / "cache")
    assert rc == 0, err
    assert (sticky / "fw" / "firmware.elf").is_file()
    assert not (sticky / "fw").stat().st_mode & 0o077


def test_derived_folder_names_are_sanitized(tmp_path, monkeypatch):
    from mcu_mot.safedirs import default_build_dir, safe_name

    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    for nasty in ("a;rm -rf ~|b", "$(touch x)", "`id`", "-rf", "..", "a b\nc", "x'\"*?<>&"):
        name = safe_name(nasty)
        assert name and all(c.isalnum() or c in "._-" for c in name), name
        assert not name.startswith(("-", ".")), name
    d = default_build_dir("run", tmp_path / "m;$(id) `x`.tflite", "qemu-mps2-an386")
    assert all(c.isalnum() or c in "._-" for c in d.name), d.name
    assert (tmp_path / "cache").resolve() in d.parents
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # two models whose stems sanitize alike still get folders of their own
    one, two = (default_build_dir("run", tmp_path / f"m{c}x.tflite", "b") for c in ";|")
    assert one != two


@needs_qemu
@pytest.mark.qemu
def test_run_default_build_folder_is_private_not_in_shared_tmp(models, tmp_path):
    """The old default, $TMPDIR/mcu-mot-run/<stem>-<board>, could be planted by anyone; it is not used."""
    tmp = tmp_path / "tmp"
    marker = tmp_path / "UNPICKLED"
    planted = tmp / "mcu-mot-run" / "a-qemu-mps2-an385"
    plant_sconsign(planted, marker)
    tmp.chmod(0o1777)
    rc, _, err = mm(
        "run",
        models["a"],
        "-b",
        "qemu-mps2-an385",
        "--input",
        models["x"],
        "--output",
        tmp_path / "y.npy",
        cache=tmp_path / "cache",
        env={"TMPDIR": str(tmp)},
    )
    assert rc == 0, err
    assert not marker.exists(), "run used the planted build folder"
    assert not (planted / "firmware.elf").exists()
    built = [p for p in (tmp_path / "cache").rglob("firmware.elf") if p.parent.name != "obj"]
    assert len(built) == 1 and not built[0].parent.stat().st_mode & 0o077


@needs_qemu
@pytest.mark.qemu
def test_bench_default_build_folder_is_private_not_in_shared_tmp(models, tmp_path):
    tmp = tmp_path / "tmp"
    marker = tmp_path / "UNPICKLED"
    planted = tmp / "mcu-mot-bench" / "a-qemu-mps2-an385-portable"
    plant_sconsign(planted, marker)
    rc, _, err = mm(
        "bench",
        models["a"],
        "-b",
        "qemu-mps2-an385",
        "--backend",
        "portable",
        "--no-check",
        cache=tmp_path / "cache",
        env={"TMPDIR": str(tmp)},
    )
    assert rc == 0, err
    assert not marker.exists(), "bench used the planted build folder"
    built = [p for p in (tmp_path / "cache").rglob("firmware.elf") if p.parent.name != "obj"]
    assert len(built) == 1 and not built[0].parent.stat().st_mode & 0o077


# ----------------------------------------------------------- the other caches


def test_host_firmware_cache_rebuilds_a_damaged_or_planted_executable(models, tmp_path, monkeypatch):
    from mcu_mot.device.host import build_host_firmware

    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    exe = build_host_firmware(models["a"])
    good = exe.read_bytes()
    assert (tmp_path / "cache").resolve() in exe.resolve().parents
    exe.write_bytes(good[: len(good) // 2])  # a kill mid-copy
    assert build_host_firmware(models["a"]).read_bytes() == good
    marker = tmp_path / "RAN"
    exe.write_text(f"#!/bin/sh\ntouch {marker}\n")  # a planted program, same name
    exe2 = build_host_firmware(models["a"])
    assert exe2.read_bytes() == good and not marker.exists()
    for meta in exe.parent.glob("*.json"):
        meta.write_text("{")
    assert build_host_firmware(models["a"]).read_bytes() == good


def test_autotune_cost_cache_and_build_folders(models, tmp_path, monkeypatch):
    import tempfile

    from mcu_mot.flows import autotune

    cache = tmp_path / "cache"
    monkeypatch.setenv("MCU_MOT_CACHE", str(cache))
    seen = []

    def fake_profile(model_path, board, backend, build_dir, progress=None):
        seen.append(Path(build_dir))
        return {"total": 10, "unit": "instructions", "layers": {0: (10 if backend == "portable" else 5, backend)}}

    monkeypatch.setattr(autotune, "profile_layers", fake_profile)
    root = tmp_path / "cmsis"
    data = autotune.measure_costs(models["a"], "qemu-mps2-an386", root)
    assert data["cached"] is False and len(seen) == 2
    for d in seen:
        assert cache.resolve() in d.resolve().parents, d
        assert Path(tempfile.gettempdir()).resolve() / "mcu-mot-autotune" not in d.resolve().parents
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert autotune.measure_costs(models["a"], "qemu-mps2-an386", root)["cached"] is True and len(seen) == 2
    path = autotune.cost_cache_path(models["a"], "qemu-mps2-an386", root)
    assert not path.stat().st_mode & 0o022
    for bad in ("", "{", "[]", "null", '{"costs": 5}', '{"costs": {"x": 1}}', json.dumps({"costs": {}})):
        path.write_text(bad)
        before = len(seen)
        again = autotune.measure_costs(models["a"], "qemu-mps2-an386", root)
        assert again["cached"] is False and len(seen) == before + 2, bad
        assert again["costs"] == {0: {"portable": 10, "cmsis-nn": 5}}


def test_bench_model_cache_rebuilds_a_truncated_model(tmp_path, monkeypatch, models):
    import mcu_mot.optimize.tfquiet as tfquiet
    from mcu_mot.flows.bench import bench
    from mcu_mot.flows.bench import models as bench_models

    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    good = models["a"].read_bytes()
    calls = []

    def fake_build(name, mode, out_dir, seed=0):
        calls.append(Path(out_dir))
        out = Path(out_dir) / f"{name}_{mode}.tflite"
        out.write_bytes(good)
        return out

    monkeypatch.setattr(bench_models, "build_tflite", fake_build)
    monkeypatch.setattr(tfquiet, "import_tensorflow", lambda: None)
    ((_, _, path),) = bench.resolve_models(["ds_cnn"], ["int8"])
    assert path.read_bytes() == good and len(calls) == 1
    assert bench.resolve_models(["ds_cnn"], ["int8"])[0][2].read_bytes() == good and len(calls) == 1
    path.write_bytes(good[:100])  # a kill mid-write
    assert bench.resolve_models(["ds_cnn"], ["int8"])[0][2].read_bytes() == good and len(calls) == 2
    assert not bench.model_cache().stat().st_mode & 0o077
