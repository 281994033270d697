"""The host C under sanitizers (issue 23): MCU_MOT_SANITIZE=undefined,address compiles the
simulator's library and the host firmware with -fsanitize=... -fno-sanitize-recover=all (and
without -fwrapv, so signed overflow is checked). Random models of the held-out kind and int16x8
models whose biases are fuzzed to huge values must run with no sanitizer report and stay bit
exact with the TFLite Micro reference.

UB aborts the process, so the simulations run in a child Python. AddressSanitizer in a library
that ctypes loads needs its runtime first in the process: the child gets LD_PRELOAD=libasan.
The host firmware is an executable and gets ASan directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).parent
HELD_OUT_SEEDS = (1001, 1002)  # random_model seeds no other test uses
needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no host C compiler")

DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from harness import random_inputs, tflm_run, _assert_same
from mcu_mot.device.simulator import simulate
for path, isa in json.loads(sys.argv[2]):
    x = random_inputs(path, 3, 0)
    ours = simulate(path, x, isa=isa)
    _assert_same(ours, tflm_run(path, x))
    print("bit-exact", path, isa, flush=True)
"""


def _runtime(name: str) -> str | None:
    cc = os.environ.get("CC", "cc")
    try:
        out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return out if os.path.isabs(out) and os.path.exists(out) else None


def _sanitized_env(tmp_path, kinds: str) -> dict:
    env = {
        **os.environ,
        "MCU_MOT_SANITIZE": kinds,
        "MCU_MOT_CACHE": str(tmp_path / f"cache-{kinds}"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "UBSAN_OPTIONS": "print_stacktrace=1",
        "ASAN_OPTIONS": "detect_leaks=0",
    }  # (the Python interpreter's own allocations)
    if "address" in kinds:
        env["LD_PRELOAD"] = _runtime("libasan.so")
    return env


def _run_sanitized(tmp_path, jobs, kinds: str):
    r = subprocess.run(
        [sys.executable, "-c", DRIVER, str(TESTS), json.dumps([[str(p), isa] for p, isa in jobs])],
        capture_output=True,
        text=True,
        env=_sanitized_env(tmp_path, kinds),
        timeout=1200,
    )
    report = r.stdout + r.stderr
    assert "runtime error" not in report and "AddressSanitizer" not in report, report[-4000:]
    assert r.returncode == 0, report[-4000:]
    assert r.stdout.count("bit-exact") == len(jobs), report[-4000:]
    lib = next((tmp_path / f"cache-{kinds}" / "host").glob("*.so"))  # it really was instrumented
    symbols = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    for kind, marker in (("undefined", "__ubsan_handle"), ("address", "__asan_")):
        if kind in kinds:
            assert marker in symbols, f"{lib} has no {kind} sanitizer calls"


def huge_biases(data: bytes, seed: int, magnitude: float) -> bytes:
    """Every int64 bias of an int16x8 model rewritten in place with values up to `magnitude`."""
    import tflite
    from test_validate import Patch

    p = Patch(data)
    rng = np.random.default_rng(seed)
    for i, t in enumerate(p.tensors()):
        if t.Type() == tflite.TensorType.INT64 and t.Buffer() and p.model.Buffers(t.Buffer()).DataLength():
            d = p.data(i).view(np.int64)
            d[:] = (rng.uniform(-1, 1, d.size) * magnitude).astype(np.int64)
    return bytes(p.buf)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from harness import convert, save
    from randmodels import random_model

    d = tmp_path_factory.mktemp("sanitize-models")
    out = {}
    for seed in HELD_OUT_SEEDS:
        for mode in ("int8", "int16"):
            out[(seed, mode)] = save(convert(random_model(seed), mode, seed=seed), d, f"held{seed}_{mode}")
    return out


def _fuzzed(models, tmp_path, magnitudes):
    paths = []
    for (seed, mode), path in sorted(models.items()):
        if mode != "int16":
            continue
        for k, mag in enumerate(magnitudes):
            p = tmp_path / f"huge{seed}_{k}.tflite"
            p.write_bytes(huge_biases(path.read_bytes(), seed * 10 + k, mag))
            paths.append(p)
    return paths


@needs_cc
def test_undefined_behaviour_sanitizer(models, tmp_path):
    """Held-out random models (int8, int16x8; plain C and the emulated DSP paths) and int16x8
    models with biases up to 2^62 (the int64 requantization's product overflows past 2^48)."""
    assert _runtime("libubsan.so"), "the compiler has no UBSan runtime"
    jobs = [(p, "plain") for p in models.values()] + [(models[(HELD_OUT_SEEDS[0], "int16")], "dsp")]
    jobs += [(p, "plain") for p in _fuzzed(models, tmp_path, [2.0**50, 2.0**61])]
    _run_sanitized(tmp_path, jobs, "undefined")


@needs_cc
@pytest.mark.slow
def test_undefined_and_address_sanitizers_more(models, tmp_path):
    if _runtime("libasan.so") is None:
        pytest.skip("the compiler has no ASan runtime")
    jobs = [(p, isa) for p in models.values() for isa in ("plain", "dsp")]
    jobs += [
        (p, isa) for p in _fuzzed(models, tmp_path, [2.0**40, 2.0**48, 2.0**55, 2.0**62]) for isa in ("plain", "dsp")
    ]
    _run_sanitized(tmp_path, jobs, "undefined,address")


@needs_cc
def test_host_firmware_under_address_and_undefined_sanitizers(models, tmp_path, monkeypatch):
    """The host firmware executable (protocol, runtime, kernels) under ASan+UBSan, driven over
    its TCP UART; its stderr must stay free of sanitizer reports."""
    if _runtime("libasan.so") is None:
        pytest.skip("the compiler has no ASan runtime")
    from harness import _assert_same, random_inputs, tflm_run

    from mcu_mot.device.client import DeviceClient
    from mcu_mot.device.host import build_host_firmware

    monkeypatch.setenv("MCU_MOT_SANITIZE", "address,undefined")
    monkeypatch.setenv("MCU_MOT_CACHE", str(tmp_path / "cache"))
    for k, path in enumerate([models[(HELD_OUT_SEEDS[0], "int8")], _fuzzed(models, tmp_path, [2.0**58])[0]]):
        exe = build_host_firmware(path, tmp_path / f"fw{k}")
        symbols = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
        assert "__asan_" in symbols and "__ubsan_handle" in symbols
        err = tmp_path / f"fw{k}.stderr"
        with open(err, "wb") as ferr:
            proc = subprocess.Popen(
                [str(exe), "0"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=ferr,
                env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"},
            )
            try:
                line = proc.stdout.readline().decode().split()
                assert line and line[0] == "PORT", err.read_text()
                x = random_inputs(path, 2, k)
                with DeviceClient(f"socket://127.0.0.1:{line[1]}", timeout=10.0, retries=2) as dev:
                    ours = dev.run(*x)
                _assert_same(ours, tflm_run(path, x))
            finally:
                proc.stdin.close()
                proc.stdout.close()
                rc = proc.wait(timeout=30)
        text = err.read_text(errors="replace")
        assert "AddressSanitizer" not in text and "runtime error" not in text and "LeakSanitizer" not in text, text
        assert rc == 0, text
